/*
 * vu_backend.c - see vu_backend.h.
 */
#include "vu_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SOCKET_TOKEN "@SOCKET@"

/* ARG with every SOCKET_TOKEN replaced by PATH (malloc'd). */
static char *substitute(const char *arg, const char *path)
{
    size_t n = 0;
    for (const char *p = strstr(arg, SOCKET_TOKEN); p; p = strstr(p + 1, SOCKET_TOKEN))
        n++;
    char *out = malloc(strlen(arg) + n * strlen(path) + 1);
    if (!out)
        return NULL;
    char *w = out;
    for (const char *p = arg; *p;) {
        if (strncmp(p, SOCKET_TOKEN, strlen(SOCKET_TOKEN)) == 0) {
            w = stpcpy(w, path);
            p += strlen(SOCKET_TOKEN);
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    return out;
}

static void exec_child(char *const argv[], const char *socket_path, int log_fd)
{
    size_t argc = 0;
    while (argv[argc])
        argc++;
    char **args = calloc(argc + 1, sizeof(*args));
    for (size_t i = 0; args && i < argc; i++)
        args[i] = substitute(argv[i], socket_path);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
        dup2(devnull, STDIN_FILENO);
    setsid();
    if (args)
        execvp(args[0], args);
    fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int vu_backend_start(struct vu_backend *b, char *const argv[], const char *socket_path,
                     const char *log_path)
{
    memset(b, 0, sizeof(*b));
    if (strlen(socket_path) >= sizeof(b->socket_path) || strlen(log_path) >= sizeof(b->log_path))
        return -ENAMETOOLONG;
    strcpy(b->socket_path, socket_path);
    strcpy(b->log_path, log_path);
    unlink(socket_path);
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0)
        return -errno;
    b->pid = fork();
    if (b->pid < 0) {
        int err = -errno;
        close(log_fd);
        return err;
    }
    if (b->pid == 0)
        exec_child(argv, socket_path, log_fd);
    close(log_fd);
    return 0;
}

bool vu_backend_wait(struct vu_backend *b, int timeout_ms)
{
    for (int waited = 0; !b->reaped; waited += 5) {
        pid_t r = waitpid(b->pid, &b->status, WNOHANG);
        if (r == b->pid) {
            b->reaped = true;
            break;
        }
        if (r < 0 || waited >= timeout_ms)
            return false;
        struct timespec t = { 0, 5 * 1000 * 1000 };
        nanosleep(&t, NULL);
    }
    return true;
}

void vu_backend_kill(struct vu_backend *b)
{
    if (b->pid <= 0 || b->reaped)
        return;
    kill(b->pid, SIGKILL);
    if (waitpid(b->pid, &b->status, 0) == b->pid)
        b->reaped = true;
}

const char *vu_backend_describe(const struct vu_backend *b, char *buf, size_t len)
{
    if (!b->reaped)
        snprintf(buf, len, "running");
    else if (WIFEXITED(b->status))
        snprintf(buf, len, "exit %d", WEXITSTATUS(b->status));
    else if (WIFSIGNALED(b->status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(b->status),
                 strsignal(WTERMSIG(b->status)));
    else
        snprintf(buf, len, "status %#x", b->status);
    return buf;
}

/* The first line of the log that contains NEEDLE, or false. */
static bool log_line_with(const char *path, const char *needle, char *line, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool found = false;
    while (!found && fgets(line, (int)len, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    if (found)
        line[strcspn(line, "\n")] = '\0';
    return found;
}

bool vu_backend_crashed(const struct vu_backend *b, char *msg, size_t len)
{
    static const char *const reports[] = { "ERROR: AddressSanitizer", "runtime error:",
                                           "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer" };
    char line[512];
    for (size_t i = 0; i < sizeof(reports) / sizeof(reports[0]); i++) {
        if (log_line_with(b->log_path, reports[i], line, sizeof(line))) {
            snprintf(msg, len, "sanitizer report: %s", line);
            return true;
        }
    }
    if (b->reaped && WIFSIGNALED(b->status)) {
        char what[128];
        snprintf(msg, len, "%s", vu_backend_describe(b, what, sizeof(what)));
        return true;
    }
    return false;
}

int vu_process_cpu(pid_t pid, double *seconds)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the command name, which may hold spaces: "(...)" ends
     * at the last ')'.  utime and stime are fields 14 and 15. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -EINVAL;
    unsigned long long utime, stime;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -EINVAL;
    *seconds = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

/*
 * vu_backend.c - see vu_backend.h.
 */
#include "vu_backend.h"

#include <dirent.h>
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
    /* Sanitizers, and glibc's fortify and stack protector ("*** ... ***:
     * terminated"), which abort a child the backend may have forked. */
    static const char *const reports[] = { "ERROR: AddressSanitizer", "runtime error:",
                                           "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
                                           "***: terminated" };
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

struct proc_times {
    pid_t pid, ppid;
    unsigned long long ticks;
};

/* pid, ppid and utime + stime from /proc/PID/stat. */
static int read_stat(pid_t pid, struct proc_times *t)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces: "(...)" ends at the last ')'.
     * Then state, ppid, ...; utime and stime are fields 14 and 15. */
    char *p = strrchr(buf, ')');
    int ppid;
    unsigned long long utime, stime;
    if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ppid, &utime,
                     &stime) != 3)
        return -EINVAL;
    *t = (struct proc_times){ .pid = pid, .ppid = ppid, .ticks = utime + stime };
    return 0;
}

static double ticks_to_seconds(unsigned long long ticks)
{
    return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

int vu_process_cpu(pid_t pid, double *seconds)
{
    struct proc_times t;
    int r = read_stat(pid, &t);
    if (r == 0)
        *seconds = ticks_to_seconds(t.ticks);
    return r;
}

/* Every process's times (at most MAX). */
static size_t all_processes(struct proc_times *out, size_t max)
{
    DIR *d = opendir("/proc");
    size_t n = 0;
    for (struct dirent *de; d && n < max && (de = readdir(d));) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end == '\0' && pid > 0 && read_stat((pid_t)pid, &out[n]) == 0)
            n++;
    }
    if (d)
        closedir(d);
    return n;
}

int vu_process_tree_cpu(pid_t root, double *seconds)
{
    enum { MAX_PROCS = 65536 };
    struct proc_times *procs = malloc(MAX_PROCS * sizeof(*procs));
    bool *in_tree = calloc(MAX_PROCS, sizeof(*in_tree));
    if (!procs || !in_tree) {
        free(procs);
        free(in_tree);
        return -ENOMEM;
    }
    size_t n = all_processes(procs, MAX_PROCS);
    unsigned long long ticks = 0;
    bool found = false;
    for (bool grew = true; grew;) {
        grew = false;
        for (size_t i = 0; i < n; i++) {
            if (in_tree[i])
                continue;
            bool member = procs[i].pid == root;
            for (size_t j = 0; !member && j < n; j++)
                member = in_tree[j] && procs[j].pid == procs[i].ppid;
            if (member) {
                in_tree[i] = grew = found = true;
                ticks += procs[i].ticks;
            }
        }
    }
    free(procs);
    free(in_tree);
    if (!found)
        return -ESRCH;
    *seconds = ticks_to_seconds(ticks);
    return 0;
}

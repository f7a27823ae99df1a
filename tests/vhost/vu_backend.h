/*
 * vu_backend.h - runs the backend under test as a child process, so that
 * its end (exit status, signal, sanitizer report) and its CPU time can be
 * read.  The command is given as argv; every "@SOCKET@" inside an argument
 * is replaced by the socket path, e.g.
 *
 *   fsbridged --socket-path=@SOCKET@ --shared-dir=/srv/x
 *   /usr/lib/qemu/virtiofsd --socket-path=@SOCKET@ -o source=/srv/x
 */
#ifndef VU_BACKEND_H
#define VU_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct vu_backend {
    pid_t pid;
    char socket_path[108];
    char log_path[4096];
    bool reaped;
    int status;          /* waitpid status once reaped */
};

/* Starts ARGV (NULL-terminated) with stdout and stderr to LOG_PATH, after
 * removing a stale SOCKET_PATH.  Returns 0 or -errno. */
int vu_backend_start(struct vu_backend *b, char *const argv[], const char *socket_path,
                     const char *log_path);
/* Waits up to TIMEOUT_MS for the backend to exit; true when it has. */
bool vu_backend_wait(struct vu_backend *b, int timeout_ms);
/* SIGKILL (if still running) and reap. */
void vu_backend_kill(struct vu_backend *b);
/* "exit 0", "killed by signal 11 (Segmentation fault)", "running"... */
const char *vu_backend_describe(const struct vu_backend *b, char *buf, size_t len);
/* True when the backend ended by a signal or its log holds a sanitizer or
 * glibc fortify report; MSG says which. */
bool vu_backend_crashed(const struct vu_backend *b, char *msg, size_t len);

/* User + system CPU time of process PID (all its threads), in seconds. */
int vu_process_cpu(pid_t pid, double *seconds);
/* The same summed over ROOT and all its descendants (a backend that forks
 * into a sandbox, as the legacy virtiofsd does, works in a child). */
int vu_process_tree_cpu(pid_t root, double *seconds);

#endif

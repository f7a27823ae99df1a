/*
 * log.c - see log.h.  A line is formatted into one buffer and written with a
 * single write(2), so lines from concurrent threads never interleave.
 */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

enum fsb_log_level fsb_log_level = FSB_LOG_INFO;

static const char *log_program = "fsbridge";
static bool log_to_syslog;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void fsb_log_init(const char *program, bool use_syslog)
{
    log_program = program;
    log_to_syslog = use_syslog;
    if (use_syslog)
        openlog(program, LOG_PID | LOG_NDELAY, LOG_DAEMON); /* before the sandbox hides /dev/log */
}

int fsb_log_parse_level(const char *name)
{
    for (int i = 0; i <= FSB_LOG_DEBUG; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void fsb_log(enum fsb_log_level level, const char *fmt, ...)
{
    static const int syslog_prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
    char line[1024];
    va_list ap;

    if (level > fsb_log_level)
        return;
    va_start(ap, fmt);
    if (log_to_syslog) {
        vsyslog(syslog_prio[level], fmt, ap);
        va_end(ap);
        return;
    }
    int n = snprintf(line, sizeof(line), "%s: ", log_program);
    if (level != FSB_LOG_INFO)
        n += snprintf(line + n, sizeof(line) - n, "%s: ", level_names[level]);
    n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, n);
    (void)ignored;
}

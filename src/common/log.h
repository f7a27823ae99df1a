/*
 * log.h - one-line logging to stderr or syslog, with levels.
 *
 * Every event is one line prefixed with the program name.  Messages above
 * the current level cost one integer comparison, so debug logging may sit
 * near (not in) hot paths.
 */
#ifndef FSB_LOG_H
#define FSB_LOG_H

#include <stdbool.h>

enum fsb_log_level { FSB_LOG_ERROR, FSB_LOG_WARN, FSB_LOG_INFO, FSB_LOG_DEBUG };

extern enum fsb_log_level fsb_log_level;

void fsb_log_init(const char *program, bool use_syslog);
/* Parses "error", "warn", "info" or "debug"; returns -1 if unknown. */
int fsb_log_parse_level(const char *name);
void fsb_log(enum fsb_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) fsb_log(FSB_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) fsb_log(FSB_LOG_WARN, __VA_ARGS__)
#define log_info(...)                                                          \
    do {                                                                       \
        if (fsb_log_level >= FSB_LOG_INFO)                                     \
            fsb_log(FSB_LOG_INFO, __VA_ARGS__);                                \
    } while (0)
#define log_debug(...)                                                         \
    do {                                                                       \
        if (fsb_log_level >= FSB_LOG_DEBUG)                                    \
            fsb_log(FSB_LOG_DEBUG, __VA_ARGS__);                               \
    } while (0)

#endif

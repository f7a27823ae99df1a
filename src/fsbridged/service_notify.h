/*
 * service_notify.h - telling systemd (Type=notify) that fsbridged is ready.
 */
#ifndef FSB_SERVICE_NOTIFY_H
#define FSB_SERVICE_NOTIFY_H

/* Connects to $NOTIFY_SOCKET, before the sandbox hides its path.  Returns
 * the socket, or -1 when the variable is unset (not run by systemd) or
 * unusable (logged: readiness is then never reported, and systemd's start
 * timeout says so). */
int service_notify_open(void);

/* Sends one state ("READY=1", "STOPPING=1"); nothing when fd is -1. */
void service_notify(int fd, const char *state);

#endif

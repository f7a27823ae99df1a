/*
 * address.h - the transport addresses both programs accept on the command
 * line, and opening them.
 *
 *   unix:PATH        Unix stream socket (also Firecracker / Cloud Hypervisor
 *                    hybrid vsock: the host listens on <uds_path>_<port>)
 *   vsock:PORT       host side: listen on AF_VSOCK, any CID
 *   vsock:CID:PORT   guest side: connect to CID:PORT
 *   fd:N             an already open socket (listening or connected)
 *   serial:DEVICE    guest side: a virtio-serial port or other character device
 */
#ifndef FSB_ADDRESS_H
#define FSB_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum fsb_address_kind { FSB_ADDR_UNIX, FSB_ADDR_VSOCK, FSB_ADDR_FD, FSB_ADDR_SERIAL };

struct fsb_address {
    enum fsb_address_kind kind;
    char path[108]; /* unix socket path or serial device */
    uint32_t cid;
    uint32_t port;
    int fd;
    const char *text; /* as given, for messages */
};

#define FSB_DEFAULT_VSOCK_CID 2 /* VMADDR_CID_HOST */
#define FSB_DEFAULT_VSOCK_PORT 5001

/*
 * Parses TEXT.  For_client selects which forms are valid (vsock:CID:PORT and
 * serial: only for clients, vsock:PORT only for servers).  On error returns
 * -1 and writes a one-line reason to ERR.
 */
int fsb_address_parse(const char *text, bool for_client, struct fsb_address *out,
                      char *err, size_t errlen);

/*
 * Who may connect to a Unix socket the daemon creates: the permission bits
 * and the group of its file.  Both are in place before listen(), so no
 * connection is ever accepted under wider ones.
 */
struct fsb_socket_access {
    mode_t mode;           /* exactly these bits (umask does not apply) */
    gid_t gid;             /* (gid_t)-1: the daemon's own group */
};

#define FSB_SOCKET_MODE_DEFAULT 0600      /* the daemon's user only */
#define FSB_SOCKET_MODE_GROUP_DEFAULT 0660 /* with a --socket-group */

/* Listens (servers).  Returns the fd, or -errno.  Stale Unix sockets are
 * replaced; a socket some process still accepts on gives -EADDRINUSE.  A
 * Unix socket file gets ACCESS. */
int fsb_address_listen(const struct fsb_address *addr, const struct fsb_socket_access *access);

/*
 * A Unix socket file we created, removable even after the daemon lost
 * sight of its path (the sandbox's empty root): the directory as an fd,
 * and the name in it.
 */
struct fsb_socket_file {
    int dirfd; /* -1: nothing to remove */
    char name[108];
};

/* Remembers PATH's directory; returns 0 or -errno. */
int fsb_socket_file_open(const char *path, struct fsb_socket_file *f);
/* Removes the file (once) and closes the directory fd. */
void fsb_socket_file_remove(struct fsb_socket_file *f);

/* Connects or opens (clients).  Returns the fd, or -errno. */
int fsb_address_connect(const struct fsb_address *addr);

#endif

/*
 * stream_hello.h - the handshake that opens a native stream session.
 *
 * A client (fsbridge-mount) connects and sends a HELLO; the server answers
 * with a HELLO reply.  After that, each message on the stream is exactly one
 * FUSE message framed by its own header length (docs/stream-protocol.md).
 * All HELLO fields are little-endian, whatever the peers' byte order.
 *
 *   HELLO (client to server), 16 bytes + export name
 *     0  u8[4] magic "FSBR" (first byte non-zero: matchlock frames start
 *              with a zero byte, so one listener tells the two apart)
 *     4  u16   version (FSB_STREAM_VERSION)
 *     6  u8    byte order of the FUSE messages that follow (1 LE, 2 BE)
 *     7  u8    flags (version 2; must be 0 in a version-1 HELLO):
 *              bit 0 FSB_HELLO_JOIN, bit 1 FSB_HELLO_CPU (version 3),
 *              every other bit must be 0
 *     8  u32   largest frame the client accepts
 *     12 u16   export name length (0: the server's default export)
 *     14 u16   with FSB_HELLO_CPU: the CPU the client's queue of this
 *              connection runs on (a scheduling hint); else reserved, 0
 *     16       export name, not NUL-terminated
 *     then, with FSB_HELLO_JOIN only: the 16-byte session token
 *
 *   HELLO reply (server to client), 16 bytes
 *     0  u8[4] magic "FSBR"
 *     4  u16   version the session will speak (min of both)
 *     6  u16   reserved, 0
 *     8  u32   status: 0, or a Linux errno (ENOENT: no such export,
 *              EPROTO: unsupported version or byte order, ESTALE: no
 *              session to join with that token, EMFILE: the session has
 *              all the connections it may have)
 *     12 u32   largest frame of the session (min of both sides)
 *     then, when status is 0 and version >= 2: the 16-byte session token
 *     then, when status is 0 and version >= 4: the session's terms, 8 bytes
 *     0  u32   features: FSB_TERMS_* bits, every other bit 0
 *     4  u32   open_flags: the FOPEN_* flags the server answers a
 *              read-only OPEN of a file with (FOPEN_KEEP_CACHE,
 *              FOPEN_DIRECT_IO or 0), for a client that answers it itself
 *
 * Version 2 lets one FUSE session span many connections (one per queue of
 * the client): the first connection's reply carries the token, and a
 * HELLO with FSB_HELLO_JOIN and that token adds a connection to it.
 * Version 3 adds FSB_HELLO_CPU: a client on the server's own kernel (a
 * Unix socket) names the CPU its queue runs on, so that the server can
 * serve the connection on that CPU too.  It is a hint for scheduling and
 * nothing else: the server may ignore it, and bounds it to its own CPUs.
 * Version 4 adds the session's terms to the reply: what the client may
 * do in the server's stead, because the server says what the answer
 * would have been (docs/stream-protocol.md, "Session terms").
 */
#ifndef FSB_STREAM_HELLO_H
#define FSB_STREAM_HELLO_H

#include <linux/fuse.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FSB_STREAM_MAGIC "FSBR"
#define FSB_STREAM_VERSION 7
/* The first version whose HELLO has flags and whose reply has a token. */
#define FSB_STREAM_VERSION_JOIN 2
/* The first version whose HELLO may carry a CPU hint. */
#define FSB_STREAM_VERSION_CPU 3
/* The first version whose reply carries the session's terms. */
#define FSB_STREAM_VERSION_TERMS 4
/* The first version whose terms may carry FSB_TERMS_NO_OPEN. */
#define FSB_STREAM_VERSION_NO_OPEN 5
/* The first version that may carry empty-directory notes. */
#define FSB_STREAM_VERSION_EMPTY_DIRS 6
/* The first version whose empty-directory notes may be bounded
 * (FSB_EMPTY_DIR_BOUNDED). */
#define FSB_STREAM_VERSION_BOUNDED_DIRS 7
/* The first version whose INIT offers FUSE_NO_OPEN_SUPPORT only when the
 * client answers OPEN with ENOSYS (engine/created_handles.h). */
#define FSB_STREAM_VERSION_CREATED_IDS 7
#define FSB_HELLO_JOIN 0x01
#define FSB_HELLO_CPU 0x02
#define FSB_SESSION_TOKEN_SIZE 16
#define FSB_HELLO_SIZE 16
#define FSB_HELLO_REPLY_SIZE 16
#define FSB_SESSION_TERMS_SIZE 8

/* Session terms, features (version 4). */
/* The server pushes host changes to this session (cache=coherent is in
 * force): its caches stay true without timeouts. */
#define FSB_TERMS_PUSHES 0x1u
/* The client may answer a read-only OPEN itself, with a handle that has
 * FSB_LAZY_FH set: the server opens the file when a request first uses
 * that handle (docs/stream-protocol.md). */
#define FSB_TERMS_LAZY_OPEN 0x2u
/* A FLUSH on this export drops the lock owner's record locks and does
 * nothing else: the host filesystem reports no error at close. */
#define FSB_TERMS_QUIET_CLOSE 0x4u
/* (Version 5.)  The client may send fh 0 for a file it opened without an
 * OPEN: the server opens the request's node for that request alone, and
 * gives out no handle 0 itself (docs/stream-protocol.md). */
#define FSB_TERMS_NO_OPEN 0x8u
#define FSB_TERMS_KNOWN                                                                    \
    (FSB_TERMS_PUSHES | FSB_TERMS_LAZY_OPEN | FSB_TERMS_QUIET_CLOSE | FSB_TERMS_NO_OPEN)
/* The bit of a lazy handle; the server's own handles never have it. */
#define FSB_LAZY_FH (1ull << 63)

/*
 * Attribute notes (version 4): a FUSE notification (unique 0) that only
 * the client sees, never the kernel, sent right before the reply of a
 * request that changed the entries of a directory (CREATE, MKNOD, MKDIR,
 * SYMLINK, LINK, UNLINK, RMDIR, RENAME, RENAME2) or listed it (READDIR,
 * READDIRPLUS: the kernel then forgets its atime).  The guest kernel
 * drops all it knows of a directory's attributes when its entries change
 * (fs/fuse/dir.c, fuse_dir_changed), and its next path walk through the
 * directory asks for them again (a GETATTR per file an untar creates or
 * an rm -rf removes); the note says what that GETATTR would be answered,
 * so the client may answer it itself (docs/stream-protocol.md).  Body, in
 * the session's FUSE byte order: the directory's node id, the unique of
 * the request that changed it, and the fuse_attr_out of a GETATTR.
 */
#define FSB_NOTIFY_ATTRS 0x4642
struct fsb_attr_note {
    uint64_t nodeid;
    uint64_t unique;
    struct fuse_attr_out attr;
};
#define FSB_ATTR_NOTE_MSG_SIZE (sizeof(struct fuse_out_header) + sizeof(struct fsb_attr_note))

/*
 * Empty-directory notes (version 6; bounded ones from version 7, see
 * FSB_EMPTY_DIR_BOUNDED below): a notification only the client sees,
 * sent right before the reply of a MKDIR whose new directory the server
 * knows to be empty now, and of which the server will push to this
 * session every later change of entries that the session does not make
 * itself (a filesystem-wide change watch is in force: fanotify).  The
 * client may then answer the kernel's LOOKUP of a name in it that the
 * session has not itself created there with a negative entry, as the
 * server would (an untar's LOOKUP before each CREATE), until a
 * notification names the directory (docs/stream-protocol.md).  Body, in
 * the session's FUSE byte order: the directory's node id, the unique of
 * the MKDIR, and the timeout of a negative entry in it.
 */
#define FSB_NOTIFY_EMPTY_DIR 0x4643
struct fsb_empty_dir_note {
    uint64_t nodeid;
    uint64_t unique;
    uint64_t entry_valid;
    uint32_t entry_valid_nsec;
    uint32_t flags; /* FSB_EMPTY_DIR_BOUNDED, from version 7; 0 before */
};
/* Version 7: nothing pushes the directory's later changes (no cache=
 * coherent watch).  The client may answer for it only until the note's
 * timeout has run out, counted from the MKDIR's forwarding: a name
 * another made there then shows within the timeout, as the mode's
 * negative entries promise. */
#define FSB_EMPTY_DIR_BOUNDED 0x1
#define FSB_EMPTY_DIR_NOTE_MSG_SIZE                                                        \
    (sizeof(struct fuse_out_header) + sizeof(struct fsb_empty_dir_note))
#define FSB_EXPORT_NAME_MAX 255
#define FSB_BYTE_ORDER_LE 1
#define FSB_BYTE_ORDER_BE 2

/* Smallest frame a peer may announce: the guest kernel reads /dev/fuse
 * with at least an 8 KiB buffer and writes at least one page per WRITE, so
 * a frame must hold a 4 KiB WRITE with its headers, with room to spare. */
#define FSB_MIN_FRAME 16384
/* Default largest frame: a 1 MiB WRITE or READ plus its headers. */
#define FSB_DEFAULT_MAX_FRAME (1024 * 1024 + 4096)

struct fsb_hello {
    uint16_t version;
    uint8_t byte_order;
    uint8_t flags;         /* FSB_HELLO_JOIN, FSB_HELLO_CPU or 0 */
    uint32_t max_frame;
    uint16_t name_len;
    uint16_t cpu;          /* with FSB_HELLO_CPU: any value (a hint), else 0 */
    char name[FSB_EXPORT_NAME_MAX + 1]; /* NUL-terminated after decoding */
    uint8_t token[FSB_SESSION_TOKEN_SIZE]; /* with FSB_HELLO_JOIN: read after the name */
};

struct fsb_hello_reply {
    uint16_t version;
    uint32_t status;
    uint32_t max_frame;
};

/* What a version-4 session lets its client do (all 0 before version 4). */
struct fsb_session_terms {
    uint32_t features;   /* FSB_TERMS_* */
    uint32_t open_flags; /* FOPEN_* of a read-only file OPEN's reply */
};

/* The byte order of this machine, as a HELLO byte_order value. */
uint8_t fsb_native_byte_order(void);

/* Encodes the fixed part of a HELLO into buf (FSB_HELLO_SIZE bytes). */
void fsb_hello_encode(const struct fsb_hello *h, uint8_t buf[FSB_HELLO_SIZE]);

/*
 * Decodes the fixed part.  Returns 0, or -EPROTO for a wrong magic,
 * reserved bits (byte 14 without FSB_HELLO_CPU), flags in a version-1
 * HELLO or flags its version does not define,
 * -ENAMETOOLONG for a name over FSB_EXPORT_NAME_MAX.  The name itself
 * (name_len bytes) follows and is checked by fsb_hello_check_name(); then,
 * with FSB_HELLO_JOIN, the token (fsb_hello_tail_size() counts both).
 */
int fsb_hello_decode(const uint8_t buf[FSB_HELLO_SIZE], struct fsb_hello *h);

/* Export names are printable ASCII without '/' or ','.  Returns 0 or -EINVAL;
 * on success h->name is NUL-terminated. */
int fsb_hello_check_name(struct fsb_hello *h);

/* The CPU a decoded HELLO names (FSB_HELLO_CPU) if it is in ALLOWED (the
 * server's own CPUs), else -1.  A hint is guest input: good for choosing
 * where one of the server's threads runs among its CPUs, nothing else. */
int fsb_hello_cpu_hint(const struct fsb_hello *h, const cpu_set_t *allowed);

/* Bytes that follow the fixed part of a decoded HELLO: name and token. */
size_t fsb_hello_tail_size(const struct fsb_hello *h);

void fsb_hello_reply_encode(const struct fsb_hello_reply *r, uint8_t buf[FSB_HELLO_REPLY_SIZE]);
int fsb_hello_reply_decode(const uint8_t buf[FSB_HELLO_REPLY_SIZE], struct fsb_hello_reply *r);

void fsb_session_terms_encode(const struct fsb_session_terms *t,
                              uint8_t buf[FSB_SESSION_TERMS_SIZE]);
/* The feature bits a reply of VERSION (4 or later) may carry. */
uint32_t fsb_session_terms_known(uint16_t version);
/* Terms of a reply of VERSION.  Returns 0, or -EPROTO for a feature bit
 * that version does not know or open flags other than FOPEN_KEEP_CACHE and
 * FOPEN_DIRECT_IO (the host is not trusted to be sane either). */
int fsb_session_terms_decode(const uint8_t buf[FSB_SESSION_TERMS_SIZE], uint16_t version,
                             struct fsb_session_terms *t);

void fsb_attr_note_encode(const struct fsb_attr_note *n, unsigned char msg[FSB_ATTR_NOTE_MSG_SIZE]);
/* Whether MSG (LEN bytes from the host, unique 0) is an attribute note;
 * with a wrong length it is not (and the relay drops it as unknown). */
bool fsb_attr_note_decode(const void *msg, size_t len, struct fsb_attr_note *n);

void fsb_empty_dir_note_encode(const struct fsb_empty_dir_note *n,
                               unsigned char msg[FSB_EMPTY_DIR_NOTE_MSG_SIZE]);
/* Whether MSG (LEN bytes from the host, unique 0) is an empty-directory
 * note, as fsb_attr_note_decode. */
bool fsb_empty_dir_note_decode(const void *msg, size_t len, struct fsb_empty_dir_note *n);

#endif

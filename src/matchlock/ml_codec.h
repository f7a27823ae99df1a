/*
 * ml_codec.h - matchlock's VFS messages: framing, CBOR encoding, decoding.
 *
 * matchlock (github.com/jingkaihe/matchlock) connects a guest FUSE daemon
 * to a host VFS server with path-based requests, each a CBOR map framed by a
 * 4-byte big-endian length (docs/matchlock.md, and the shared contract
 * matchlock-protocol.md).  This module is the one place where those bytes
 * are parsed, on both sides: the host (fsbridged's matchlock frontend)
 * decodes requests and encodes responses, the guest (fsbridge-mount
 * --protocol=matchlock) encodes requests and decodes responses.
 *
 * Decoding is strict: definite lengths only, every known key's CBOR type
 * and integer range checked, text keys only, a known key twice or bytes
 * after the map are errors, nesting is bounded; unknown keys are skipped
 * and missing keys read as zero.  Decoding allocates nothing: byte strings
 * point into the caller's buffer, paths and names are copied out
 * NUL-terminated (a NUL inside one is an error).
 *
 * Encoding is what matchlock's Go encoder (fxamacker/cbor) writes for the
 * same message: keys in matchlock's struct order, integers and lengths in
 * their shortest form, keys whose value is zero left out where matchlock
 * leaves them out (`op`, `err` and the stat/entry fields always present).
 */
#ifndef FSB_ML_CODEC_H
#define FSB_ML_CODEC_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Framing: a 4-byte big-endian length, then that many bytes of CBOR. */
#define ML_FRAME_HEADER_SIZE 4u
/* Largest read size served and largest write payload accepted. */
#define ML_DATA_MAX (1024u * 1024u)
/*
 * Paths.  A guest path is a prefix (an export's on the host: "/" and a name
 * of at most 255 bytes, see fsbridged's options.c; the guest's prefix=)
 * followed by the path below it.  The path below may be as long as a
 * local filesystem allows one path to be (PATH_MAX - 1 bytes), so the
 * prefix is measured out of the limit: the longest path on the wire is
 * the longest prefix, '/', and PATH_MAX - 1 bytes.  Lengths are in bytes
 * without the NUL; ML_PATH_SIZE is a buffer that holds one.
 */
#define ML_PREFIX_MAX 256u
#define ML_BELOW_PREFIX_MAX (PATH_MAX - 1u)
#define ML_PATH_MAX (ML_PREFIX_MAX + 1u + ML_BELOW_PREFIX_MAX)
#define ML_PATH_SIZE (ML_PATH_MAX + 1u)
/* Largest request body: a full write plus two paths and the keys (all
 * the known keys with their largest values take under 256 bytes). */
#define ML_REQUEST_MAX (ML_DATA_MAX + 2u * ML_PATH_SIZE + 256u)
/* Largest response body: a whole directory listing is one response. */
#define ML_RESPONSE_MAX (16u * 1024u * 1024u)
/* Containers nested deeper than this are refused (unknown keys included). */
#define ML_NESTING_MAX 8

/* Opcodes.  14-18 are declared by matchlock but never implemented there;
 * fsbridge defines their fields (see struct ml_request). */
enum ml_op {
    ML_OP_LOOKUP = 0,
    ML_OP_GETATTR = 1,
    ML_OP_SETATTR = 2,
    ML_OP_READ = 3,
    ML_OP_WRITE = 4,
    ML_OP_CREATE = 5,
    ML_OP_MKDIR = 6,
    ML_OP_UNLINK = 7,
    ML_OP_RMDIR = 8,
    ML_OP_RENAME = 9,
    ML_OP_OPEN = 10,
    ML_OP_RELEASE = 11,
    ML_OP_READDIR = 12,
    ML_OP_FSYNC = 13,
    ML_OP_MKDIR_ALL = 14,
    ML_OP_TRUNCATE = 15,
    ML_OP_SYMLINK = 16,
    ML_OP_READLINK = 17,
    ML_OP_LINK = 18,
    ML_OP_COUNT
};

/* The name of an opcode for log lines ("op 42" style names for others are
 * the caller's business: returns NULL for op >= ML_OP_COUNT). */
const char *ml_op_name(unsigned op);

/* Go os.FileMode bits (Go's io/fs), as matchlock puts them in `mode`. */
#define ML_GO_MODE_DIR 0x80000000u
#define ML_GO_MODE_SYMLINK 0x08000000u
#define ML_GO_MODE_DEVICE 0x04000000u
#define ML_GO_MODE_NAMED_PIPE 0x02000000u
#define ML_GO_MODE_SOCKET 0x01000000u
#define ML_GO_MODE_SETUID 0x00800000u
#define ML_GO_MODE_SETGID 0x00400000u
#define ML_GO_MODE_CHAR_DEVICE 0x00200000u
#define ML_GO_MODE_STICKY 0x00100000u
#define ML_GO_MODE_IRREGULAR 0x00080000u
#define ML_GO_MODE_PERM 0777u
/* Go's fs.ModeType: what a directory entry's `mode` carries. */
#define ML_GO_MODE_TYPE                                                        \
    (ML_GO_MODE_DIR | ML_GO_MODE_SYMLINK | ML_GO_MODE_NAMED_PIPE |             \
     ML_GO_MODE_SOCKET | ML_GO_MODE_DEVICE | ML_GO_MODE_CHAR_DEVICE |          \
     ML_GO_MODE_IRREGULAR)

/* Unix st_mode (S_IFMT, 07000 and 0777 bits) to Go os.FileMode and back.
 * Go has no type bit for a regular file; an unknown Unix type becomes
 * ModeIrregular, and ModeIrregular becomes S_IFREG. */
uint32_t ml_go_mode_from_unix(mode_t mode);
mode_t ml_unix_mode_from_go(uint32_t go_mode);

/*
 * A request.  Missing keys decode as zero / "" / no data.
 *
 *   op        opcode (0-255 on the wire; unknown ones are answered ENOSYS)
 *   path      absolute guest path (all ops but Read, Write, Release, Fsync)
 *   new_path  Rename: destination; Symlink: the link's target text;
 *             Link: the new name (path is the existing file)
 *   fh        handle from Open/Create (Read, Write, Release, Fsync;
 *             Truncate: used instead of path when non-zero)
 *   off       Read/Write: file offset; Truncate: the new size
 *   sz        Read: bytes wanted
 *   data      Write: payload
 *   flags     Open (and Create): the guest's open(2) flags
 *   mode      Create/Mkdir/MkdirAll/Setattr: Unix mode, S_IFMT may be set
 *   uid, gid  the caller
 *
 * fsbridge's Setattr extension (keys matchlock does not know; a guest may
 * send them only to a host that answered the probe of ops 15-18, since
 * matchlock's server would ignore `set` and chmod to `mode`):
 *   set                 ML_SET_* bits; 0 means matchlock's Setattr (chmod
 *                       to mode)
 *   owner_uid/gid       new owner (ML_SET_UID / ML_SET_GID)
 *   off                 new size (ML_SET_SIZE)
 *   atime, mtime (+ _nsec)  new times in Unix seconds and nanoseconds
 *                       (ML_SET_ATIME / ML_SET_MTIME; *_NOW: the host's now)
 */
enum {
    ML_SET_MODE = 1 << 0,
    ML_SET_UID = 1 << 1,
    ML_SET_GID = 1 << 2,
    ML_SET_SIZE = 1 << 3,
    ML_SET_ATIME = 1 << 4,
    ML_SET_MTIME = 1 << 5,
    ML_SET_ATIME_NOW = 1 << 6,
    ML_SET_MTIME_NOW = 1 << 7,
};

struct ml_request {
    uint32_t op;
    char path[ML_PATH_SIZE];
    char new_path[ML_PATH_SIZE];
    uint64_t fh;
    int64_t off;
    uint32_t sz;
    const void *data; /* into the decoded buffer, or the caller's */
    size_t data_len;
    uint32_t flags;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    /* fsbridge's Setattr extension */
    uint32_t set;
    uint32_t owner_uid;
    uint32_t owner_gid;
    int64_t atime;
    uint32_t atime_nsec;
    int64_t mtime;
    uint32_t mtime_nsec;
};

/* `stat`: size, Go FileMode, mtime in Unix seconds, is_dir, inode (0 means
 * absent), and (newer matchlock, omitted when 0) the owner.  fsbridge adds
 * (omitted when 0, so unknown to and ignored by matchlock's guest) the link
 * count, the other times, nanoseconds, 512-byte blocks and the device
 * number of device nodes. */
struct ml_stat {
    int64_t size;
    uint32_t mode;
    int64_t mtime;
    bool is_dir;
    uint64_t ino;
    uint32_t uid;
    uint32_t gid;
    /* fsbridge's additions */
    uint32_t nlink;
    int64_t atime;
    uint32_t atime_nsec;
    uint32_t mtime_nsec;
    int64_t ctime;
    uint32_t ctime_nsec;
    uint64_t blocks;
    uint64_t rdev;
};

/* One element of `entries`: mode holds Go type bits only (ML_GO_MODE_TYPE),
 * ino 0 means absent.  Decoded names are single path components: not
 * empty, not "." or "..", no '/' or NUL, at most NAME_MAX bytes. */
struct ml_dirent {
    char name[NAME_MAX + 1];
    bool is_dir;
    uint32_t mode;
    int64_t size;
    uint64_t ino;
};

/*
 * A response.  err is 0 or minus an errno.  `entries` travels as CBOR:
 * to encode, entries/entries_len hold entry_count entries written with
 * ml_encode_dirent(); after decoding they point at the (validated) array
 * elements inside the decoded buffer, read with ml_dirent_next().
 */
struct ml_response {
    int32_t err;
    bool has_stat;
    struct ml_stat stat;
    const void *data;
    size_t data_len;
    uint32_t written;
    uint64_t fh;
    size_t entry_count;
    const void *entries;
    size_t entries_len;
};

/* The body length announced by a frame header. */
uint32_t ml_frame_length(const uint8_t header[ML_FRAME_HEADER_SIZE]);

/*
 * Encode a whole frame (length header + CBOR) into buf.  Return the frame's
 * size, or -EMSGSIZE when it does not fit in cap, -EINVAL for a value that
 * cannot be sent (a path with a NUL is impossible here: paths are C strings;
 * a data length over ML_DATA_MAX is refused).
 */
ssize_t ml_encode_request(const struct ml_request *req, uint8_t *buf, size_t cap);
ssize_t ml_encode_response(const struct ml_response *resp, uint8_t *buf, size_t cap);

/* Upper bound of ml_encode_response()'s output for resp (to size a buffer). */
size_t ml_response_size_bound(const struct ml_response *resp);

/* Append one entry's CBOR at buf + *len (cap bytes in all); on success
 * advance *len and return 0, else -EMSGSIZE and *len is unchanged. */
int ml_encode_dirent(const struct ml_dirent *d, uint8_t *buf, size_t cap, size_t *len);

/*
 * Decode a frame body (the CBOR after the length header).  Return 0, or
 * -EBADMSG with *why (if why is not NULL) set to a short static reason
 * such as "key \"fh\": wrong type".  On error *out is unspecified.
 */
int ml_decode_request(const void *body, size_t len, struct ml_request *out, const char **why);

/*
 * The opcode of a request body, whatever its other fields hold: only the
 * "op" key is read (any unsigned integer), the rest is checked as CBOR and
 * skipped.  For a body ml_decode_request refused: an opcode the server does
 * not know is then answered ENOSYS, not EINVAL, as matchlock's server does
 * (clients probe for features by it, and a newer op may carry fields of
 * its own).  Returns 0 with *op (0 when there is no "op"), or -EBADMSG.
 */
int ml_request_opcode(const void *body, size_t len, uint64_t *op);
int ml_decode_response(const void *body, size_t len, struct ml_response *out, const char **why);

/* Walk the entries of a decoded response. */
struct ml_dirent_iter {
    const uint8_t *pos;
    const uint8_t *end;
    size_t left;
};
void ml_dirent_iter_init(struct ml_dirent_iter *it, const struct ml_response *resp);
/* Returns true and fills *out while entries remain. */
bool ml_dirent_next(struct ml_dirent_iter *it, struct ml_dirent *out);

#endif

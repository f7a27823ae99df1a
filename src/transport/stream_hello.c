/*
 * stream_hello.c - encoding and strict decoding of the HELLO handshake
 * (layout in stream_hello.h).  This is guest input: every field is checked
 * here and nowhere else.
 */
#include "transport/stream_hello.h"

#include <endian.h>
#include <errno.h>
#include <linux/fuse.h>
#include <string.h>

static void put_le16(uint8_t *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, 2);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static uint16_t get_le16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return le16toh(v);
}

static uint32_t get_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

uint8_t fsb_native_byte_order(void)
{
    return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? FSB_BYTE_ORDER_LE : FSB_BYTE_ORDER_BE;
}

void fsb_hello_encode(const struct fsb_hello *h, uint8_t buf[FSB_HELLO_SIZE])
{
    memset(buf, 0, FSB_HELLO_SIZE);
    memcpy(buf, FSB_STREAM_MAGIC, 4);
    put_le16(buf + 4, h->version);
    buf[6] = h->byte_order;
    buf[7] = h->flags;
    put_le32(buf + 8, h->max_frame);
    put_le16(buf + 12, h->name_len);
    put_le16(buf + 14, h->flags & FSB_HELLO_CPU ? h->cpu : 0);
}

/* The flags a HELLO of VERSION may carry: none before version 2. */
static uint8_t known_flags(uint16_t version)
{
    return (version >= FSB_STREAM_VERSION_JOIN ? FSB_HELLO_JOIN : 0) |
           (version >= FSB_STREAM_VERSION_CPU ? FSB_HELLO_CPU : 0);
}

int fsb_hello_decode(const uint8_t buf[FSB_HELLO_SIZE], struct fsb_hello *h)
{
    memset(h, 0, sizeof(*h));
    if (memcmp(buf, FSB_STREAM_MAGIC, 4) != 0)
        return -EPROTO;
    h->version = get_le16(buf + 4);
    h->byte_order = buf[6];
    h->flags = buf[7];
    /* Byte 7 was reserved in version 1, bytes 14-15 are unless the CPU
     * flag says otherwise.  Any CPU decodes: fsb_hello_cpu_hint() bounds
     * it to the server's CPUs. */
    if (h->flags & ~known_flags(h->version))
        return -EPROTO;
    h->cpu = get_le16(buf + 14);
    if (!(h->flags & FSB_HELLO_CPU) && h->cpu != 0)
        return -EPROTO;
    h->max_frame = get_le32(buf + 8);
    h->name_len = get_le16(buf + 12);
    if (h->name_len > FSB_EXPORT_NAME_MAX)
        return -ENAMETOOLONG;
    return 0;
}

int fsb_hello_check_name(struct fsb_hello *h)
{
    for (unsigned i = 0; i < h->name_len; i++) {
        unsigned char c = (unsigned char)h->name[i];
        if (c <= ' ' || c >= 0x7f || c == '/' || c == ',')
            return -EINVAL;
    }
    h->name[h->name_len] = 0;
    return 0;
}

int fsb_hello_cpu_hint(const struct fsb_hello *h, const cpu_set_t *allowed)
{
    if (!(h->flags & FSB_HELLO_CPU) || h->cpu >= CPU_SETSIZE || !CPU_ISSET(h->cpu, allowed))
        return -1;
    return h->cpu;
}

size_t fsb_hello_tail_size(const struct fsb_hello *h)
{
    return h->name_len + (h->flags & FSB_HELLO_JOIN ? FSB_SESSION_TOKEN_SIZE : 0);
}

void fsb_hello_reply_encode(const struct fsb_hello_reply *r, uint8_t buf[FSB_HELLO_REPLY_SIZE])
{
    memset(buf, 0, FSB_HELLO_REPLY_SIZE);
    memcpy(buf, FSB_STREAM_MAGIC, 4);
    put_le16(buf + 4, r->version);
    put_le32(buf + 8, r->status);
    put_le32(buf + 12, r->max_frame);
}

int fsb_hello_reply_decode(const uint8_t buf[FSB_HELLO_REPLY_SIZE], struct fsb_hello_reply *r)
{
    memset(r, 0, sizeof(*r));
    if (memcmp(buf, FSB_STREAM_MAGIC, 4) != 0)
        return -EPROTO;
    r->version = get_le16(buf + 4);
    r->status = get_le32(buf + 8);
    r->max_frame = get_le32(buf + 12);
    return 0;
}

void fsb_session_terms_encode(const struct fsb_session_terms *t,
                              uint8_t buf[FSB_SESSION_TERMS_SIZE])
{
    put_le32(buf, t->features);
    put_le32(buf + 4, t->open_flags);
}

uint32_t fsb_session_terms_known(uint16_t version)
{
    return version >= FSB_STREAM_VERSION_NO_OPEN ? FSB_TERMS_KNOWN
                                                 : FSB_TERMS_KNOWN & ~FSB_TERMS_NO_OPEN;
}

int fsb_session_terms_decode(const uint8_t buf[FSB_SESSION_TERMS_SIZE], uint16_t version,
                             struct fsb_session_terms *t)
{
    t->features = get_le32(buf);
    t->open_flags = get_le32(buf + 4);
    if (t->features & ~fsb_session_terms_known(version) ||
        t->open_flags & ~(uint32_t)(FOPEN_KEEP_CACHE | FOPEN_DIRECT_IO)) {
        *t = (struct fsb_session_terms){ 0 };
        return -EPROTO;
    }
    return 0;
}

/* A note: a header with unique 0 and the note's code, then BODY. */
static void note_encode(uint32_t code, const void *body, size_t size, unsigned char *msg)
{
    struct fuse_out_header h = { .len = (uint32_t)(sizeof(h) + size), .error = (int32_t)code };
    memcpy(msg, &h, sizeof(h));
    memcpy(msg + sizeof(h), body, size);
}

static bool note_decode(uint32_t code, const void *msg, size_t len, void *body, size_t size)
{
    struct fuse_out_header h;
    if (len != sizeof(h) + size)
        return false;
    memcpy(&h, msg, sizeof(h));
    if (h.unique != 0 || h.error != (int32_t)code)
        return false;
    memcpy(body, (const char *)msg + sizeof(h), size);
    return true;
}

void fsb_attr_note_encode(const struct fsb_attr_note *n, unsigned char msg[FSB_ATTR_NOTE_MSG_SIZE])
{
    note_encode(FSB_NOTIFY_ATTRS, n, sizeof(*n), msg);
}

bool fsb_attr_note_decode(const void *msg, size_t len, struct fsb_attr_note *n)
{
    return note_decode(FSB_NOTIFY_ATTRS, msg, len, n, sizeof(*n));
}

void fsb_empty_dir_note_encode(const struct fsb_empty_dir_note *n,
                               unsigned char msg[FSB_EMPTY_DIR_NOTE_MSG_SIZE])
{
    note_encode(FSB_NOTIFY_EMPTY_DIR, n, sizeof(*n), msg);
}

bool fsb_empty_dir_note_decode(const void *msg, size_t len, struct fsb_empty_dir_note *n)
{
    return note_decode(FSB_NOTIFY_EMPTY_DIR, msg, len, n, sizeof(*n)) &&
           !(n->flags & ~(uint32_t)FSB_EMPTY_DIR_BOUNDED);
}

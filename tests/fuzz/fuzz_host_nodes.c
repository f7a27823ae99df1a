/*
 * fuzz_host_nodes.c - fuzz target for fsbridge-mount's node table
 * (src/mount/host_nodes.c), the guest program's one parser of host bytes
 * beyond reply headers: the host's replies (entries, READDIRPLUS listings),
 * its notifications, and the kernel's requests and FORGETs they pair with.
 *
 * The input is a list of records, each one byte of kind, one byte of
 * unique (so that replies meet their requests), two bytes of length
 * (little endian) and that many bytes of message; the message's header gets
 * the record's length and unique, the rest is the fuzzer's.  Kinds: a
 * request, a reply, a FORGET/BATCH_FORGET, a notification, and queries of
 * the echo (path, child, lent, unbind, move) on node ids from the bytes.
 */
#include "mount/host_nodes.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { K_REQUEST, K_REPLY, K_FORGET, K_NOTIFY, K_QUERY, K_KINDS };

static uint64_t u64(const uint8_t *p, size_t len)
{
    uint64_t v = 0;
    memcpy(&v, p, len < sizeof(v) ? len : sizeof(v));
    return v;
}

static void request(struct host_nodes *h, uint8_t *msg, size_t len, uint8_t unique, bool echo)
{
    struct fuse_in_header ih;
    if (len < sizeof(ih))
        return;
    memcpy(&ih, msg, sizeof(ih));
    ih.len = (uint32_t)len;
    ih.unique = unique;
    memcpy(msg, &ih, sizeof(ih));
    /* in two parts, as a ring entry hands them over */
    size_t cut = len / 2;
    struct iovec iov[2] = { { msg, cut }, { msg + cut, len - cut } };
    host_nodes_request(h, &ih, iov, 2, echo);
    char name[256];
    if (host_nodes_request_name(&ih, iov, 2, name))
        host_nodes_valid_name(name, strlen(name));
}

static void reply(struct host_nodes *h, uint8_t *msg, size_t len, uint8_t unique)
{
    struct fuse_out_header oh;
    if (len < sizeof(oh))
        return;
    memcpy(&oh, msg, sizeof(oh));
    oh.len = (uint32_t)len;
    oh.unique = unique;
    memcpy(msg, &oh, sizeof(oh));
    host_nodes_wants(h, unique);
    host_nodes_reply(h, msg, len);
    struct hn_entry e;
    host_nodes_parse_entry(msg, len, &e);
}

static void notify(struct host_nodes *h, uint8_t *msg, size_t len)
{
    struct fuse_out_header oh;
    if (len < sizeof(oh))
        return;
    memcpy(&oh, msg, sizeof(oh));
    oh.len = (uint32_t)len;
    oh.unique = 0;
    memcpy(msg, &oh, sizeof(oh));
    struct hn_notify n;
    if (host_nodes_parse_notify(msg, len, &n))
        host_nodes_own_change(h, n.nodeid, n.kind == HN_INVAL_INODE ? NULL : n.name);
}

static void query(struct host_nodes *h, const uint8_t *msg, size_t len)
{
    uint64_t a = u64(msg, len), b = len > 8 ? u64(msg + 8, len - 8) : 1;
    char path[64], name[8] = "n";
    struct hn_entry e;
    if (host_nodes_path(h, a, path, sizeof(path)) == 0 && !memchr(path, '\0', sizeof(path)))
        abort(); /* a path that is not terminated inside its buffer */
    if (host_nodes_get(h, a, &e))
        host_nodes_lent(h, &e);
    if (len > 16)
        name[0] = (char)('a' + msg[16] % 4);
    if (host_nodes_child(h, b, name, &e))
        host_nodes_move(h, b, name, a, "m");
    if (len > 17 && msg[17] & 1)
        host_nodes_unbind(h, a, "m");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct host_nodes *h = host_nodes_new();
    if (!h)
        return 0;
    while (size >= 4) {
        uint8_t kind = data[0] % K_KINDS, unique = (uint8_t)(data[1] & ~1u);
        bool echo = data[1] & 1; /* a request of the echo's */
        size_t len = (size_t)data[2] | (size_t)data[3] << 8;
        data += 4;
        size -= 4;
        if (len > size)
            len = size;
        static uint8_t msg[0x10000]; /* a record's length is 16 bits */
        memcpy(msg, data, len);
        if (kind == K_REQUEST)
            request(h, msg, len, unique, echo);
        else if (kind == K_REPLY)
            reply(h, msg, len, unique);
        else if (kind == K_FORGET)
            host_nodes_forget(h, msg, len);
        else if (kind == K_NOTIFY)
            notify(h, msg, len);
        else
            query(h, msg, len);
        data += len;
        size -= len;
    }
    host_nodes_free(h);
    return 0;
}

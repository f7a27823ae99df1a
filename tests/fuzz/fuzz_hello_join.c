/*
 * fuzz_hello_join.c - fuzz target for the version-2 HELLO: the flags byte,
 * the JOIN flag and the token after the name, as the server reads them
 * (fixed part, then fsb_hello_tail_size() bytes), and the reply with its
 * token as the client reads it.  Besides "no crash", it checks what the
 * server relies on: a decoded JOIN is a version-2 HELLO with no other
 * flag, its tail is bounded, and decoding what was encoded gives it back.
 */
#include "transport/stream_hello.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

/* The server's view: fixed part, name, token. */
static void server_side(const uint8_t *data, size_t size)
{
    uint8_t fixed[FSB_HELLO_SIZE] = { 0 };
    struct fsb_hello h;
    memcpy(fixed, data, size < sizeof(fixed) ? size : sizeof(fixed));
    if (fsb_hello_decode(fixed, &h) != 0)
        return;
    check((h.flags & ~FSB_HELLO_JOIN) == 0);
    check(!(h.flags & FSB_HELLO_JOIN) || h.version >= FSB_STREAM_VERSION_JOIN);
    size_t tail = fsb_hello_tail_size(&h);
    check(tail <= FSB_EXPORT_NAME_MAX + FSB_SESSION_TOKEN_SIZE);
    size_t rest = size > sizeof(fixed) ? size - sizeof(fixed) : 0;
    if (rest < tail)
        return;
    memcpy(h.name, data + sizeof(fixed), h.name_len);
    if (h.flags & FSB_HELLO_JOIN)
        memcpy(h.token, data + sizeof(fixed) + h.name_len, FSB_SESSION_TOKEN_SIZE);
    if (fsb_hello_check_name(&h) != 0)
        return;
    /* Encoding what was decoded gives the same fixed part back. */
    uint8_t again[FSB_HELLO_SIZE];
    struct fsb_hello h2;
    fsb_hello_encode(&h, again);
    check(memcmp(again, fixed, sizeof(fixed)) == 0);
    check(fsb_hello_decode(again, &h2) == 0 && h2.flags == h.flags &&
          h2.name_len == h.name_len && h2.version == h.version);
}

/* The client's view of a reply: the token follows a version-2 success. */
static void client_side(const uint8_t *data, size_t size)
{
    uint8_t fixed[FSB_HELLO_REPLY_SIZE] = { 0 };
    struct fsb_hello_reply r;
    memcpy(fixed, data, size < sizeof(fixed) ? size : sizeof(fixed));
    if (fsb_hello_reply_decode(fixed, &r) != 0)
        return;
    uint8_t again[FSB_HELLO_REPLY_SIZE];
    fsb_hello_reply_encode(&r, again);
    struct fsb_hello_reply r2;
    check(fsb_hello_reply_decode(again, &r2) == 0 && r2.version == r.version &&
          r2.status == r.status && r2.max_frame == r.max_frame);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    server_side(data, size);
    client_side(data, size);
    return 0;
}

/*
 * fuzz_hello_join.c - fuzz target for the version-2 and -3 HELLO: the flags
 * byte, the JOIN flag and the token after the name, the CPU flag and its
 * hint, as the server reads them (fixed part, then fsb_hello_tail_size()
 * bytes), and the reply with its token as the client reads it.  Besides
 * "no crash", it checks what the server relies on: a decoded JOIN is a
 * version-2 HELLO or later, a CPU hint a version-3 one, no other flag
 * passes, a hint is 0 without its flag, the tail is bounded, and decoding
 * what was encoded gives it back.
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

/* The hint, against a CPU set made of the input's later bytes: -1, or a
 * CPU of the set that the HELLO named. */
static void hint_side(const struct fsb_hello *h, const uint8_t *data, size_t size)
{
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    for (size_t i = FSB_HELLO_SIZE; i + 1 < size; i += 2)
        CPU_SET((size_t)(data[i] | data[i + 1] << 8) % CPU_SETSIZE, &allowed);
    int cpu = fsb_hello_cpu_hint(h, &allowed);
    check(cpu == -1 || ((h->flags & FSB_HELLO_CPU) && cpu == h->cpu && cpu < CPU_SETSIZE &&
                        CPU_ISSET(cpu, &allowed)));
    cpu_set_t every;
    memset(&every, 0xff, sizeof(every));
    check(!(h->flags & FSB_HELLO_CPU) || h->cpu >= CPU_SETSIZE ||
          fsb_hello_cpu_hint(h, &every) == h->cpu);
}

/* The server's view: fixed part, name, token. */
static void server_side(const uint8_t *data, size_t size)
{
    uint8_t fixed[FSB_HELLO_SIZE] = { 0 };
    struct fsb_hello h;
    memcpy(fixed, data, size < sizeof(fixed) ? size : sizeof(fixed));
    if (fsb_hello_decode(fixed, &h) != 0)
        return;
    check((h.flags & ~(FSB_HELLO_JOIN | FSB_HELLO_CPU)) == 0);
    check(!(h.flags & FSB_HELLO_JOIN) || h.version >= FSB_STREAM_VERSION_JOIN);
    check(!(h.flags & FSB_HELLO_CPU) || h.version >= FSB_STREAM_VERSION_CPU);
    check((h.flags & FSB_HELLO_CPU) || h.cpu == 0);
    hint_side(&h, data, size);
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
          h2.name_len == h.name_len && h2.version == h.version && h2.cpu == h.cpu);
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

/*
 * fuzz_engine.c - fuzz target for the FUSE engine: the input is a stream
 * of FUSE requests as a guest would send them after FUSE_INIT, framed by
 * their own header lengths exactly as the stream transport frames them.
 * Runs the real passthrough backend on a scratch directory.
 */
#include "engine_harness.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One harness (one scratch directory) for the whole run, removed at exit:
 * libFuzzer and the corpus replay both end with exit().  A crash leaves
 * it, next to the input that caused it. */
static struct harness h;

static void close_harness(void)
{
    harness_close(&h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool opened;
    static uint8_t *frame;
    if (!opened) {
        if (harness_open(&h, FSB_CACHE_AUTO) != 0)
            abort();
        frame = malloc(HARNESS_FRAME);
        opened = true;
        atexit(close_harness);
    }
    /* A fresh session per input: inputs must not depend on each other.
     * An input of odd length runs with xattr=map, so that both ways of
     * reading guest xattr names are fuzzed; one with bit 1 of its length
     * set accepts lazy handles (a version-4 stream session), so that
     * both ways of taking an fh with FSB_LAZY_FH are; one with bit 2 set
     * runs without opens (a version-7 client whose kernel offers
     * FUSE_NO_OPEN_SUPPORT), so that fh 0 and created files' ids are. */
    int err;
    fsb_session_free(h.session);
    h.export.xattr_map = size & 1;
    h.session = fsb_session_new(&h.export, HARNESS_FRAME, NULL, &err);
    if (!h.session || ((size & 2) && fsb_session_accept_lazy(h.session) != 0))
        abort();
    h.session->no_open = h.session->created_ids = size & 4;
    if (harness_init_offer(&h, 38, (size & 4) ? FUSE_NO_OPEN_SUPPORT : 0) != 0)
        abort();
    while (size >= sizeof(struct fuse_in_header)) {
        struct fuse_in_header hdr;
        memcpy(&hdr, data, sizeof(hdr));
        size_t len = hdr.len;
        if (len < sizeof(hdr) || len > size || len > HARNESS_FRAME)
            break; /* the transport closes the session here */
        memcpy(frame, data, len); /* the engine reads from its own buffer */
        harness_run(&h, frame, len);
        data += len;
        size -= len;
    }
    return 0;
}

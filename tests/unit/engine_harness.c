/*
 * engine_harness.c - see engine_harness.h.
 */
#include "engine_harness.h"
#include "backend/passthrough/passthrough.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int harness_open(struct harness *h, enum fsb_cache_mode mode)
{
    static bool global_done;
    memset(h, 0, sizeof(*h));
    if (!global_done) {
        int err = passthrough_global_init();
        if (err)
            return err;
        global_done = true;
    }
    strcpy(h->dir, "/tmp/fsb-unit-XXXXXX");
    if (!mkdtemp(h->dir))
        return -errno;
    snprintf(h->export.name, sizeof(h->export.name), "unit");
    snprintf(h->export.path, sizeof(h->export.path), "%s", h->dir);
    h->export.cache = mode;
    h->export.root_fd = open(h->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    h->reply = malloc(HARNESS_FRAME);
    if (h->export.root_fd < 0 || !h->reply)
        return -ENOMEM;
    int err;
    h->session = fsb_session_new(&h->export, HARNESS_FRAME, NULL, &err);
    h->next_unique = 1;
    return h->session ? 0 : err;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void harness_close(struct harness *h)
{
    fsb_session_free(h->session);
    close(h->export.root_fd);
    free(h->reply);
    nftw(h->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void harness_run(struct harness *h, const void *req, size_t len)
{
    struct iovec in = { (void *)req, len };
    struct iovec out = { h->reply, HARNESS_FRAME };
    h->reply_len = fsb_engine_process(h->session, &in, 1, &out, 1);
}

size_t harness_build(struct harness *h, uint8_t *buf, uint32_t opcode, uint64_t nodeid,
                     const void *arg, size_t arglen, const char *s1, const char *s2)
{
    struct fuse_in_header hdr = { .opcode = opcode, .unique = h->next_unique++,
                                  .nodeid = nodeid };
    size_t len = sizeof(hdr);
    if (arglen)
        memcpy(buf + len, arg, arglen);
    len += arglen;
    for (const char *s = s1; s; s = s == s1 ? s2 : NULL) {
        memcpy(buf + len, s, strlen(s) + 1);
        len += strlen(s) + 1;
    }
    hdr.len = (uint32_t)len;
    memcpy(buf, &hdr, sizeof(hdr));
    return len;
}

int harness_init(struct harness *h, uint32_t minor)
{
    return harness_init_offer(h, minor, 0);
}

int harness_init_offer(struct harness *h, uint32_t minor, uint32_t flags)
{
    uint8_t buf[256];
    struct fuse_init_in in = { .major = 7, .minor = minor, .max_readahead = 65536,
                               .flags = FUSE_INIT_EXT | FUSE_MAX_PAGES | FUSE_POSIX_LOCKS | flags };
    size_t arglen = minor < 36 ? 16 : sizeof(in);
    harness_run(h, buf, harness_build(h, buf, FUSE_INIT, 0, &in, arglen, NULL, NULL));
    return harness_error(h);
}

int harness_error(const struct harness *h)
{
    if (h->reply_len == 0)
        return 1;
    const struct fuse_out_header *oh = (const void *)h->reply;
    return oh->error;
}

const void *harness_payload(const struct harness *h)
{
    return h->reply + sizeof(struct fuse_out_header);
}

/*
 * iov_cursor.c - see iov_cursor.h.
 */
#include "engine/iov_cursor.h"

#include <string.h>

size_t iov_length(const struct iovec *iov, int cnt)
{
    size_t len = 0;
    for (int i = 0; i < cnt; i++)
        len += iov[i].iov_len;
    return len;
}

void iov_cursor_init(struct iov_cursor *c, const struct iovec *iov, int cnt)
{
    c->iov = iov;
    c->cnt = cnt;
    c->idx = 0;
    c->off = 0;
    c->left = iov_length(iov, cnt);
}

void iov_cursor_limit(struct iov_cursor *c, size_t len)
{
    if (len < c->left)
        c->left = len;
}

/* Moves over LEN bytes, calling COPY for each contiguous piece. */
static bool advance(struct iov_cursor *c, size_t len,
                    void (*copy)(void *arg, char *piece, size_t n), void *arg)
{
    if (len > c->left)
        return false;
    c->left -= len;
    while (len > 0) {
        const struct iovec *v = &c->iov[c->idx];
        size_t n = v->iov_len - c->off;
        if (n > len)
            n = len;
        if (copy)
            copy(arg, (char *)v->iov_base + c->off, n);
        c->off += n;
        len -= n;
        if (c->off == v->iov_len) {
            c->idx++;
            c->off = 0;
        }
    }
    return true;
}

static void copy_out(void *arg, char *piece, size_t n)
{
    char **dst = arg;
    memcpy(*dst, piece, n);
    *dst += n;
}

static void copy_in(void *arg, char *piece, size_t n)
{
    const char **src = arg;
    memcpy(piece, *src, n);
    *src += n;
}

bool iov_cursor_read(struct iov_cursor *c, void *dst, size_t len)
{
    char *p = dst;
    return advance(c, len, copy_out, &p);
}

bool iov_cursor_write(struct iov_cursor *c, const void *src, size_t len)
{
    const char *p = src;
    return advance(c, len, copy_in, &p);
}

bool iov_cursor_skip(struct iov_cursor *c, size_t len)
{
    return advance(c, len, NULL, NULL);
}

int iov_cursor_slice(const struct iov_cursor *c, size_t len, struct iovec *out, int max)
{
    if (len > c->left)
        return -1;
    int n = 0, idx = c->idx;
    size_t off = c->off;
    while (len > 0) {
        /* Skip empty iovecs: they need no slot. */
        size_t avail = c->iov[idx].iov_len - off;
        if (avail == 0) {
            idx++;
            off = 0;
            continue;
        }
        if (n == max)
            return -1;
        size_t take = avail < len ? avail : len;
        out[n].iov_base = (char *)c->iov[idx].iov_base + off;
        out[n].iov_len = take;
        n++;
        len -= take;
        idx++;
        off = 0;
    }
    return n;
}

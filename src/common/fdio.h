/*
 * fdio.h - I/O on stream fds: whole-buffer reads and writes that retry
 * short transfers and EINTR, and a buffered reader of length-prefixed
 * frames.
 */
#ifndef FSB_FDIO_H
#define FSB_FDIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

struct fsb_halt_poll;

/* Reads exactly len bytes.  Returns 0, -EPIPE on end of stream (also after
 * a partial read), or -errno. */
int fsb_read_full(int fd, void *buf, size_t len);

/* The same, unless DEADLINE (CLOCK_MONOTONIC) passes first: then
 * -ETIMEDOUT.  The whole transfer has one time limit, so a peer trickling
 * a byte at a time waits no longer than a silent one.  DEADLINE NULL: no
 * limit. */
int fsb_read_full_by(int fd, void *buf, size_t len, const struct timespec *deadline);

/* Writes all bytes of iov (which it may modify).  Returns 0 or -errno. */
int fsb_writev_full(int fd, struct iovec *iov, int cnt);

/* Moves *IOV (*CNT parts) past the first N bytes written of it. */
void fsb_iov_advance(struct iovec **iov, int *cnt, size_t n);

int fsb_write_full(int fd, const void *buf, size_t len);

/*
 * A buffered reader of frames whose first four bytes are their whole
 * length in native byte order, as FUSE messages are (fuse_in_header and
 * fuse_out_header both start with len).  Each read takes whatever the
 * stream holds, up to the buffer's size, so a small frame costs one read
 * and a burst of them one read in all, where reading a header and then its
 * body costs two reads per frame.
 *
 * Use: fsb_frame_next_len() for the length of the next frame (the caller
 * checks it), then fsb_frame_take() (a frame that fits the buffer) or
 * fsb_frame_take_into() (any frame) to consume it.
 */
struct fsb_frame_reader {
    int fd;
    unsigned char *buf;
    size_t cap;   /* size of buf */
    size_t start; /* first byte not yet consumed */
    size_t end;   /* end of the bytes read */
    struct fsb_halt_poll *poll; /* spin before sleeping (halt_poll.h); NULL: never */
    /* A read that looks for the next frame takes at most this much (0:
     * the whole buffer), so that the body of a large frame stays in the
     * stream for fsb_frame_take_head's caller to splice; reads of a
     * frame's known rest are not limited. */
    size_t probe_max;
};

/* Returns 0, or -ENOMEM. */
int fsb_frame_reader_init(struct fsb_frame_reader *r, int fd, size_t cap);
void fsb_frame_reader_free(struct fsb_frame_reader *r);

/* Waits until the length of the next frame is buffered and stores it in
 * *len, without consuming anything.  Returns 0, -EPIPE when the stream
 * ends (also in the middle of the length), or -errno. */
int fsb_frame_next_len(struct fsb_frame_reader *r, uint32_t *len);

/* Waits until the first N bytes (at most r->cap) of the next frame are
 * buffered and points *head at them, without consuming anything.
 * Returns 0, -EPIPE or -errno as fsb_frame_next_len. */
int fsb_frame_peek(struct fsb_frame_reader *r, size_t n, const void **head);

/* Consumes the next frame, LEN bytes (at least 4, at most r->cap), and
 * points *frame at it in the buffer: valid, and writable, until the next
 * call on R.  Returns 0, -EPIPE if the stream ends inside the frame, or
 * -errno. */
int fsb_frame_take(struct fsb_frame_reader *r, size_t len, void **frame);

/* Consumes the next frame, LEN bytes (at least 4), into DST: the buffered
 * part is copied, the rest is read straight into DST, so a large frame is
 * not copied twice.  Returns 0, -EPIPE, or -errno. */
int fsb_frame_take_into(struct fsb_frame_reader *r, void *dst, size_t len);

/* Consumes the part of the next frame (LEN bytes) that is buffered, at
 * most LEN bytes, and points *head at it (valid until the next call on
 * R): the caller reads the rest of the frame from r->fd itself.  Returns
 * the bytes consumed. */
size_t fsb_frame_take_head(struct fsb_frame_reader *r, size_t len, void **head);

/* Reads what the stream holds now, without waiting (as a peek would,
 * at most probe_max).  Returns 0, -EAGAIN when it holds nothing, -EPIPE
 * at its end, or -errno. */
int fsb_frame_fill_now(struct fsb_frame_reader *r);

/* Bytes buffered after the frames consumed: more than 0 means that at
 * least the start of another frame has arrived. */
static inline size_t fsb_frame_buffered(const struct fsb_frame_reader *r)
{
    return r->end - r->start;
}

#endif

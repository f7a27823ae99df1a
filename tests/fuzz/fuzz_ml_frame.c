/*
 * fuzz_ml_frame.c - fuzz target for the matchlock frame decoder: one
 * frame (4-byte length + CBOR body) decoded as a request and as a
 * response.  Whatever decodes must survive a round trip: encoded again and
 * decoded, it is the same message (a decoder that accepted something the
 * encoder cannot reproduce would be a bug).  The opcode alone
 * (ml_request_opcode) is read from every frame, and agrees with the full
 * decoder wherever that accepts the frame.
 */
#include "matchlock/ml_codec.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t frame[ML_REQUEST_MAX + ML_FRAME_HEADER_SIZE];

static bool same_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static bool same_request(const struct ml_request *a, const struct ml_request *b)
{
    return a->op == b->op && strcmp(a->path, b->path) == 0 &&
           strcmp(a->new_path, b->new_path) == 0 && a->fh == b->fh && a->off == b->off &&
           a->sz == b->sz && same_bytes(a->data, a->data_len, b->data, b->data_len) &&
           a->flags == b->flags && a->mode == b->mode && a->uid == b->uid && a->gid == b->gid &&
           a->set == b->set && a->owner_uid == b->owner_uid && a->owner_gid == b->owner_gid &&
           a->atime == b->atime && a->atime_nsec == b->atime_nsec && a->mtime == b->mtime &&
           a->mtime_nsec == b->mtime_nsec;
}

static void request_round_trip(const struct ml_request *req)
{
    static struct ml_request again;
    ssize_t n = ml_encode_request(req, frame, sizeof(frame));
    if (n < 0 || ml_frame_length(frame) != (size_t)n - ML_FRAME_HEADER_SIZE ||
        ml_decode_request(frame + ML_FRAME_HEADER_SIZE, (size_t)n - ML_FRAME_HEADER_SIZE,
                          &again, NULL) != 0 ||
        !same_request(req, &again))
        abort();
}

static bool same_stat(const struct ml_stat *a, const struct ml_stat *b)
{
    return a->size == b->size && a->mode == b->mode && a->mtime == b->mtime &&
           a->is_dir == b->is_dir && a->ino == b->ino && a->uid == b->uid && a->gid == b->gid &&
           a->nlink == b->nlink && a->atime == b->atime && a->atime_nsec == b->atime_nsec &&
           a->mtime_nsec == b->mtime_nsec && a->ctime == b->ctime &&
           a->ctime_nsec == b->ctime_nsec && a->blocks == b->blocks && a->rdev == b->rdev;
}

static bool same_entries(const struct ml_response *a, const struct ml_response *b)
{
    struct ml_dirent_iter ia, ib;
    struct ml_dirent da, db;
    ml_dirent_iter_init(&ia, a);
    ml_dirent_iter_init(&ib, b);
    for (;;) {
        bool more_a = ml_dirent_next(&ia, &da), more_b = ml_dirent_next(&ib, &db);
        if (more_a != more_b)
            return false;
        if (!more_a)
            return true;
        if (strcmp(da.name, db.name) != 0 || da.is_dir != db.is_dir || da.mode != db.mode ||
            da.size != db.size || da.ino != db.ino)
            return false;
    }
}

static void response_round_trip(const struct ml_response *resp)
{
    static uint8_t *out;
    static size_t cap;
    size_t need = ml_response_size_bound(resp);
    if (need > cap) {
        free(out);
        out = malloc(need);
        cap = out ? need : 0;
        if (!out)
            return;
    }
    struct ml_response again;
    ssize_t n = ml_encode_response(resp, out, cap);
    if (n < 0 ||
        ml_decode_response(out + ML_FRAME_HEADER_SIZE, (size_t)n - ML_FRAME_HEADER_SIZE, &again,
                           NULL) != 0 ||
        again.err != resp->err || again.has_stat != resp->has_stat ||
        !same_stat(&again.stat, &resp->stat) ||
        !same_bytes(again.data, again.data_len, resp->data, resp->data_len) ||
        again.written != resp->written || again.fh != resp->fh ||
        again.entry_count != resp->entry_count || !same_entries(resp, &again))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ml_request req;
    struct ml_response resp;
    if (size < ML_FRAME_HEADER_SIZE)
        return 0;
    /* The framing as the server applies it: the length must fit and be
     * what follows. */
    uint32_t len = ml_frame_length(data);
    const uint8_t *body = data + ML_FRAME_HEADER_SIZE;
    size_t have = size - ML_FRAME_HEADER_SIZE;
    if (len > ML_REQUEST_MAX || len > have)
        return 0;
    uint64_t op;
    int op_err = ml_request_opcode(body, len, &op);
    if (ml_decode_request(body, len, &req, NULL) == 0) {
        /* what decodes as a request has its opcode found alone too */
        if (op_err != 0 || op != req.op)
            abort();
        request_round_trip(&req);
    }
    if (ml_decode_response(body, len, &resp, NULL) == 0)
        response_round_trip(&resp);
    return 0;
}

/*
 * ml_codec.c - matchlock's CBOR messages (see ml_codec.h for the rules).
 *
 * Decoding pulls one CBOR item head at a time from libcbor's streaming
 * decoder (cbor_stream_decode: no allocation, strings handed over as
 * pointers into the buffer) and matches map keys against a table of
 * fields per message kind: the table says each key's CBOR type, its range
 * and where it goes.  Encoding writes item heads with libcbor's encoders,
 * which always choose the shortest form, from a list of key/value pairs in
 * matchlock's order, leaving out the zero values matchlock leaves out.
 */
#include "matchlock/ml_codec.h"

#include <cbor.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------------- */
/* Names and modes                                                          */

static const char *const op_names[ML_OP_COUNT] = {
    "Lookup", "Getattr", "Setattr", "Read",    "Write",    "Create", "Mkdir",
    "Unlink", "Rmdir",   "Rename",  "Open",    "Release",  "Readdir", "Fsync",
    "MkdirAll", "Truncate", "Symlink", "Readlink", "Link",
};

const char *ml_op_name(unsigned op)
{
    return op < ML_OP_COUNT ? op_names[op] : NULL;
}

/* Unix file types and their Go FileMode type bits (regular files: none). */
static const struct {
    mode_t unix_type;
    uint32_t go_type;
} mode_types[] = {
    {S_IFDIR, ML_GO_MODE_DIR},
    {S_IFLNK, ML_GO_MODE_SYMLINK},
    {S_IFIFO, ML_GO_MODE_NAMED_PIPE},
    {S_IFSOCK, ML_GO_MODE_SOCKET},
    {S_IFCHR, ML_GO_MODE_DEVICE | ML_GO_MODE_CHAR_DEVICE},
    {S_IFBLK, ML_GO_MODE_DEVICE},
};

static const struct {
    mode_t unix_bit;
    uint32_t go_bit;
} mode_specials[] = {
    {S_ISUID, ML_GO_MODE_SETUID},
    {S_ISGID, ML_GO_MODE_SETGID},
    {S_ISVTX, ML_GO_MODE_STICKY},
};

uint32_t ml_go_mode_from_unix(mode_t mode)
{
    uint32_t go = mode & ML_GO_MODE_PERM;
    if (!S_ISREG(mode)) {
        uint32_t type = ML_GO_MODE_IRREGULAR;
        for (size_t i = 0; i < sizeof(mode_types) / sizeof(mode_types[0]); i++)
            if ((mode & S_IFMT) == mode_types[i].unix_type)
                type = mode_types[i].go_type;
        go |= type;
    }
    for (size_t i = 0; i < sizeof(mode_specials) / sizeof(mode_specials[0]); i++)
        if (mode & mode_specials[i].unix_bit)
            go |= mode_specials[i].go_bit;
    return go;
}

mode_t ml_unix_mode_from_go(uint32_t go_mode)
{
    /* Exact match on the type bits: a block device is DEVICE alone, a
     * character device DEVICE|CHAR_DEVICE; anything else is a file. */
    uint32_t type = go_mode & ML_GO_MODE_TYPE;
    mode_t mode = S_IFREG;
    for (size_t i = 0; i < sizeof(mode_types) / sizeof(mode_types[0]); i++)
        if (type == mode_types[i].go_type)
            mode = mode_types[i].unix_type;
    mode |= go_mode & ML_GO_MODE_PERM;
    for (size_t i = 0; i < sizeof(mode_specials) / sizeof(mode_specials[0]); i++)
        if (go_mode & mode_specials[i].go_bit)
            mode |= mode_specials[i].unix_bit;
    return mode;
}

uint32_t ml_frame_length(const uint8_t header[ML_FRAME_HEADER_SIZE])
{
    return (uint32_t)header[0] << 24 | (uint32_t)header[1] << 16 | (uint32_t)header[2] << 8 |
           header[3];
}

/* ---------------------------------------------------------------------- */
/* Decoding: a pull tokenizer over cbor_stream_decode                       */

enum tok_kind {
    TOK_UINT,
    TOK_NEGINT, /* value -1 - u */
    TOK_BYTES,
    TOK_TEXT,
    TOK_ARRAY,
    TOK_MAP,
    TOK_BOOL,
    TOK_SIMPLE, /* null, undefined, floats: only skipped (unknown keys) */
    TOK_REFUSED /* indefinite lengths, tags, break */
};

struct token {
    enum tok_kind kind;
    uint64_t u; /* integer value, or container size */
    const uint8_t *str;
    size_t len;
};

struct reader {
    const uint8_t *pos;
    const uint8_t *end;
    const char *why; /* first error */
};

static void on_uint8(void *t, uint8_t v) { *(struct token *)t = (struct token){TOK_UINT, v}; }
static void on_uint16(void *t, uint16_t v) { *(struct token *)t = (struct token){TOK_UINT, v}; }
static void on_uint32(void *t, uint32_t v) { *(struct token *)t = (struct token){TOK_UINT, v}; }
static void on_uint64(void *t, uint64_t v) { *(struct token *)t = (struct token){TOK_UINT, v}; }
static void on_neg8(void *t, uint8_t v) { *(struct token *)t = (struct token){TOK_NEGINT, v}; }
static void on_neg16(void *t, uint16_t v) { *(struct token *)t = (struct token){TOK_NEGINT, v}; }
static void on_neg32(void *t, uint32_t v) { *(struct token *)t = (struct token){TOK_NEGINT, v}; }
static void on_neg64(void *t, uint64_t v) { *(struct token *)t = (struct token){TOK_NEGINT, v}; }

static void on_bytes(void *t, cbor_data data, size_t len)
{
    *(struct token *)t = (struct token){TOK_BYTES, 0, data, len};
}

static void on_text(void *t, cbor_data data, size_t len)
{
    *(struct token *)t = (struct token){TOK_TEXT, 0, data, len};
}

static void on_array(void *t, size_t n) { *(struct token *)t = (struct token){TOK_ARRAY, n}; }
static void on_map(void *t, size_t n) { *(struct token *)t = (struct token){TOK_MAP, n}; }
static void on_bool(void *t, bool v) { *(struct token *)t = (struct token){TOK_BOOL, v}; }
static void on_simple(void *t) { *(struct token *)t = (struct token){TOK_SIMPLE}; }
static void on_float(void *t, float v) { (void)v; on_simple(t); }
static void on_double(void *t, double v) { (void)v; on_simple(t); }
static void on_refused(void *t) { *(struct token *)t = (struct token){TOK_REFUSED}; }
static void on_tag(void *t, uint64_t v) { (void)v; on_refused(t); }

static const struct cbor_callbacks token_callbacks = {
    .uint8 = on_uint8,
    .uint16 = on_uint16,
    .uint32 = on_uint32,
    .uint64 = on_uint64,
    .negint8 = on_neg8,
    .negint16 = on_neg16,
    .negint32 = on_neg32,
    .negint64 = on_neg64,
    .byte_string = on_bytes,
    .byte_string_start = on_refused,
    .string = on_text,
    .string_start = on_refused,
    .array_start = on_array,
    .indef_array_start = on_refused,
    .map_start = on_map,
    .indef_map_start = on_refused,
    .tag = on_tag,
    .float2 = on_float,
    .float4 = on_float,
    .float8 = on_double,
    .undefined = on_simple,
    .null = on_simple,
    .boolean = on_bool,
    .indef_break = on_refused,
};

static bool fail(struct reader *r, const char *why)
{
    if (!r->why)
        r->why = why;
    return false;
}

static bool next_token(struct reader *r, struct token *tok)
{
    if (r->pos >= r->end)
        return fail(r, "truncated");
    tok->kind = TOK_REFUSED;
    struct cbor_decoder_result res =
        cbor_stream_decode(r->pos, (size_t)(r->end - r->pos), &token_callbacks, tok);
    if (res.status == CBOR_DECODER_NEDATA)
        return fail(r, "truncated");
    if (res.status != CBOR_DECODER_FINISHED)
        return fail(r, "malformed CBOR");
    if (tok->kind == TOK_REFUSED)
        return fail(r, "indefinite length, tag or break");
    r->pos += res.read;
    return true;
}

/* Skip one whole item (the value of an unknown key). */
static bool skip_item(struct reader *r, int depth)
{
    struct token tok;
    if (!next_token(r, &tok))
        return false;
    if (tok.kind != TOK_ARRAY && tok.kind != TOK_MAP)
        return true;
    if (depth >= ML_NESTING_MAX)
        return fail(r, "nested too deeply");
    /* Every item takes at least one byte, so a huge count ends at the end
     * of the buffer ("truncated"), not in a long loop. */
    uint64_t items = tok.kind == TOK_MAP ? tok.u * 2 : tok.u;
    if (tok.kind == TOK_MAP && tok.u > (uint64_t)(r->end - r->pos))
        return fail(r, "truncated");
    for (uint64_t i = 0; i < items; i++)
        if (!skip_item(r, depth + 1))
            return false;
    return true;
}

/* ---------------------------------------------------------------------- */
/* Decoding: field tables                                                   */

enum field_type {
    F_U8,
    F_U32,
    F_U64,
    F_I32,
    F_I64,
    F_BOOL,
    F_PATH,    /* char[ML_PATH_SIZE], no NUL inside */
    F_NAME,    /* char[NAME_MAX + 1] (checked as a component by the caller) */
    F_BYTES,   /* const void * at off, size_t at len_off */
    F_STAT,    /* struct ml_stat at off, bool at len_off */
    F_ENTRIES, /* the entries of struct ml_response */
};

struct field {
    const char *key;
    enum field_type type;
    size_t off;
    size_t len_off;
};

#define FIELD(key, type, st, member) {key, type, offsetof(st, member), 0}

static const struct field request_fields[] = {
    FIELD("op", F_U8, struct ml_request, op),
    FIELD("path", F_PATH, struct ml_request, path),
    FIELD("new_path", F_PATH, struct ml_request, new_path),
    FIELD("fh", F_U64, struct ml_request, fh),
    FIELD("off", F_I64, struct ml_request, off),
    FIELD("sz", F_U32, struct ml_request, sz),
    {"data", F_BYTES, offsetof(struct ml_request, data), offsetof(struct ml_request, data_len)},
    FIELD("flags", F_U32, struct ml_request, flags),
    FIELD("mode", F_U32, struct ml_request, mode),
    FIELD("uid", F_U32, struct ml_request, uid),
    FIELD("gid", F_U32, struct ml_request, gid),
    FIELD("set", F_U32, struct ml_request, set),
    FIELD("owner_uid", F_U32, struct ml_request, owner_uid),
    FIELD("owner_gid", F_U32, struct ml_request, owner_gid),
    FIELD("atime", F_I64, struct ml_request, atime),
    FIELD("atime_nsec", F_U32, struct ml_request, atime_nsec),
    FIELD("mtime", F_I64, struct ml_request, mtime),
    FIELD("mtime_nsec", F_U32, struct ml_request, mtime_nsec),
};

static const struct field response_fields[] = {
    FIELD("err", F_I32, struct ml_response, err),
    {"stat", F_STAT, offsetof(struct ml_response, stat), offsetof(struct ml_response, has_stat)},
    {"data", F_BYTES, offsetof(struct ml_response, data), offsetof(struct ml_response, data_len)},
    FIELD("written", F_U32, struct ml_response, written),
    FIELD("fh", F_U64, struct ml_response, fh),
    {"entries", F_ENTRIES, 0, 0},
};

static const struct field stat_fields[] = {
    FIELD("size", F_I64, struct ml_stat, size),
    FIELD("mode", F_U32, struct ml_stat, mode),
    FIELD("mtime", F_I64, struct ml_stat, mtime),
    FIELD("is_dir", F_BOOL, struct ml_stat, is_dir),
    FIELD("ino", F_U64, struct ml_stat, ino),
    FIELD("uid", F_U32, struct ml_stat, uid),
    FIELD("gid", F_U32, struct ml_stat, gid),
    FIELD("nlink", F_U32, struct ml_stat, nlink),
    FIELD("atime", F_I64, struct ml_stat, atime),
    FIELD("atime_nsec", F_U32, struct ml_stat, atime_nsec),
    FIELD("mtime_nsec", F_U32, struct ml_stat, mtime_nsec),
    FIELD("ctime", F_I64, struct ml_stat, ctime),
    FIELD("ctime_nsec", F_U32, struct ml_stat, ctime_nsec),
    FIELD("blocks", F_U64, struct ml_stat, blocks),
    FIELD("rdev", F_U64, struct ml_stat, rdev),
};

static const struct field dirent_fields[] = {
    FIELD("name", F_NAME, struct ml_dirent, name),
    FIELD("is_dir", F_BOOL, struct ml_dirent, is_dir),
    FIELD("mode", F_U32, struct ml_dirent, mode),
    FIELD("size", F_I64, struct ml_dirent, size),
    FIELD("ino", F_U64, struct ml_dirent, ino),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static bool decode_map(struct reader *r, const struct field *fields, size_t nfields,
                       void *base, int depth);

/* An integer token in [min, max]; the value goes to *out. */
static bool read_int(struct reader *r, int64_t min, uint64_t max, uint64_t *out)
{
    struct token tok;
    if (!next_token(r, &tok))
        return false;
    if (tok.kind == TOK_UINT && tok.u <= max) {
        *out = tok.u;
        return true;
    }
    /* -1 - u >= min  <=>  u <= -(min + 1) */
    if (tok.kind == TOK_NEGINT && min < 0 && tok.u <= (uint64_t)(-(min + 1))) {
        *out = (uint64_t)(-1 - (int64_t)tok.u);
        return true;
    }
    return fail(r, tok.kind == TOK_UINT || tok.kind == TOK_NEGINT ? "integer out of range"
                                                                   : "wrong type");
}

/* A text string copied NUL-terminated into dst (cap bytes with the NUL). */
static bool read_text(struct reader *r, char *dst, size_t cap)
{
    struct token tok;
    if (!next_token(r, &tok))
        return false;
    if (tok.kind != TOK_TEXT)
        return fail(r, "wrong type");
    if (tok.len >= cap)
        return fail(r, "string too long");
    if (memchr(tok.str, '\0', tok.len))
        return fail(r, "NUL in string");
    memcpy(dst, tok.str, tok.len);
    dst[tok.len] = '\0';
    return true;
}

static bool is_component(const char *name)
{
    return name[0] && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && !strchr(name, '/');
}

static bool read_entries(struct reader *r, struct ml_response *resp, int depth)
{
    struct token tok;
    if (!next_token(r, &tok))
        return false;
    if (tok.kind != TOK_ARRAY)
        return fail(r, "wrong type");
    if (tok.u > (uint64_t)(r->end - r->pos))
        return fail(r, "truncated");
    resp->entries = r->pos;
    resp->entry_count = tok.u;
    for (uint64_t i = 0; i < tok.u; i++) {
        struct ml_dirent d = {0};
        if (!decode_map(r, dirent_fields, COUNT(dirent_fields), &d, depth + 1))
            return false;
        /* A missing name reads as "", which is no name either. */
        if (!is_component(d.name))
            return fail(r, "entry name is not a single component");
    }
    resp->entries_len = (size_t)(r->pos - (const uint8_t *)resp->entries);
    return true;
}

/* Range of each integer field type. */
static const struct {
    int64_t min;
    uint64_t max;
} int_ranges[] = {
    [F_U8] = {0, UINT8_MAX},
    [F_U32] = {0, UINT32_MAX},
    [F_U64] = {0, UINT64_MAX},
    [F_I32] = {INT32_MIN, INT32_MAX},
    [F_I64] = {INT64_MIN, INT64_MAX},
};

static bool read_int_field(struct reader *r, enum field_type type, void *at)
{
    uint64_t v;
    if (!read_int(r, int_ranges[type].min, int_ranges[type].max, &v))
        return false;
    switch (type) {
    case F_U8: /* op: held as uint32_t */
    case F_U32:
        *(uint32_t *)at = (uint32_t)v;
        break;
    case F_U64:
        *(uint64_t *)at = v;
        break;
    case F_I32:
        *(int32_t *)at = (int32_t)v;
        break;
    default:
        *(int64_t *)at = (int64_t)v;
        break;
    }
    return true;
}

static bool read_token_of(struct reader *r, enum tok_kind kind, struct token *tok)
{
    return next_token(r, tok) && (tok->kind == kind || fail(r, "wrong type"));
}

static bool read_field(struct reader *r, const struct field *f, void *base, int depth)
{
    char *at = (char *)base + f->off;
    struct token tok;
    switch (f->type) {
    case F_U8:
    case F_U32:
    case F_U64:
    case F_I32:
    case F_I64:
        return read_int_field(r, f->type, at);
    case F_BOOL:
        if (!read_token_of(r, TOK_BOOL, &tok))
            return false;
        *(bool *)at = tok.u != 0;
        return true;
    case F_PATH:
        return read_text(r, at, ML_PATH_SIZE);
    case F_NAME:
        return read_text(r, at, NAME_MAX + 1);
    case F_BYTES:
        if (!read_token_of(r, TOK_BYTES, &tok))
            return false;
        *(const void **)at = tok.str;
        *(size_t *)((char *)base + f->len_off) = tok.len;
        return true;
    case F_STAT:
        *(bool *)((char *)base + f->len_off) = true;
        return decode_map(r, stat_fields, COUNT(stat_fields), at, depth + 1);
    case F_ENTRIES:
        return read_entries(r, base, depth);
    }
    return fail(r, "internal: unknown field type");
}

static const struct field *find_field(const struct field *fields, size_t nfields,
                                      const struct token *key)
{
    for (size_t i = 0; i < nfields; i++)
        if (strlen(fields[i].key) == key->len && !memcmp(fields[i].key, key->str, key->len))
            return &fields[i];
    return NULL;
}

/* A map into *base (zeroed first): known keys by the table, others skipped. */
static bool decode_map(struct reader *r, const struct field *fields, size_t nfields,
                       void *base, int depth)
{
    struct token tok;
    if (depth >= ML_NESTING_MAX)
        return fail(r, "nested too deeply");
    if (!next_token(r, &tok))
        return false;
    if (tok.kind != TOK_MAP)
        return fail(r, "not a map");
    if (tok.u > (uint64_t)(r->end - r->pos))
        return fail(r, "truncated");
    uint32_t seen = 0;
    for (uint64_t i = 0; i < tok.u; i++) {
        struct token key;
        if (!next_token(r, &key))
            return false;
        if (key.kind != TOK_TEXT)
            return fail(r, "map key is not text");
        const struct field *f = find_field(fields, nfields, &key);
        if (!f) {
            if (!skip_item(r, depth + 1))
                return false;
            continue;
        }
        uint32_t bit = 1u << (f - fields);
        if (seen & bit)
            return fail(r, "duplicate key");
        seen |= bit;
        if (!read_field(r, f, base, depth))
            return false;
    }
    return true;
}

static int decode_message(const void *body, size_t len, const struct field *fields,
                          size_t nfields, void *out, size_t out_size, const char **why)
{
    struct reader r = {body, (const uint8_t *)body + len, NULL};
    memset(out, 0, out_size);
    if (decode_map(&r, fields, nfields, out, 0) && r.pos != r.end)
        fail(&r, "bytes after the message");
    if (why)
        *why = r.why;
    return r.why ? -EBADMSG : 0;
}

int ml_decode_request(const void *body, size_t len, struct ml_request *out, const char **why)
{
    int ret = decode_message(body, len, request_fields, COUNT(request_fields), out,
                             sizeof(*out), why);
    if (ret == 0 && out->data_len > ML_DATA_MAX) {
        if (why)
            *why = "data over the size limit";
        return -EBADMSG;
    }
    return ret;
}

int ml_request_opcode(const void *body, size_t len, uint64_t *op)
{
    struct opcode_only {
        uint64_t op;
    } out;
    static const struct field op_field[] = { FIELD("op", F_U64, struct opcode_only, op) };
    int ret = decode_message(body, len, op_field, COUNT(op_field), &out, sizeof(out), NULL);
    *op = out.op;
    return ret;
}

int ml_decode_response(const void *body, size_t len, struct ml_response *out, const char **why)
{
    return decode_message(body, len, response_fields, COUNT(response_fields), out,
                          sizeof(*out), why);
}

void ml_dirent_iter_init(struct ml_dirent_iter *it, const struct ml_response *resp)
{
    it->pos = resp->entries;
    it->end = it->pos ? it->pos + resp->entries_len : NULL;
    it->left = resp->entry_count;
}

bool ml_dirent_next(struct ml_dirent_iter *it, struct ml_dirent *out)
{
    if (it->left == 0)
        return false;
    /* The entries were validated by ml_decode_response(): this cannot
     * fail unless the caller changed the buffer since. */
    struct reader r = {it->pos, it->end, NULL};
    memset(out, 0, sizeof(*out));
    if (!decode_map(&r, dirent_fields, COUNT(dirent_fields), out, 1)) {
        it->left = 0;
        return false;
    }
    it->pos = r.pos;
    it->left--;
    return true;
}

/* ---------------------------------------------------------------------- */
/* Encoding                                                                 */

struct writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    bool full;
};

/* Each libcbor encoder returns the bytes written, 0 when they do not fit. */
static void advance(struct writer *w, size_t n)
{
    if (n == 0)
        w->full = true;
    w->len += n;
}

static uint8_t *room(struct writer *w) { return w->buf + w->len; }
static size_t left(const struct writer *w) { return w->full ? 0 : w->cap - w->len; }

static void put_raw(struct writer *w, const void *p, size_t n)
{
    if (n > left(w)) {
        w->full = true;
        return;
    }
    if (n)
        memcpy(room(w), p, n);
    w->len += n;
}

static void put_uint(struct writer *w, uint64_t v) { advance(w, cbor_encode_uint(v, room(w), left(w))); }

static void put_int(struct writer *w, int64_t v)
{
    if (v >= 0)
        put_uint(w, (uint64_t)v);
    else
        advance(w, cbor_encode_negint((uint64_t)(-1 - v), room(w), left(w)));
}

static void put_text(struct writer *w, const char *s, size_t n)
{
    advance(w, cbor_encode_string_start(n, room(w), left(w)));
    put_raw(w, s, n);
}

static void put_bytes(struct writer *w, const void *p, size_t n)
{
    advance(w, cbor_encode_bytestring_start(n, room(w), left(w)));
    put_raw(w, p, n);
}

/* A key/value pair of a map to encode. */
enum value_type { V_UINT, V_INT, V_TEXT, V_BYTES, V_BOOL, V_STAT, V_ENTRIES };

struct kv {
    const char *key;
    enum value_type type;
    bool always; /* written even when zero (no omitempty in matchlock) */
    uint64_t u;
    int64_t i;
    const void *p;
    size_t n;
};

static bool kv_is_zero(const struct kv *kv)
{
    switch (kv->type) {
    case V_UINT:
    case V_BOOL:
        return kv->u == 0;
    case V_INT:
        return kv->i == 0;
    case V_STAT:
        return kv->p == NULL;
    case V_ENTRIES:
        return kv->u == 0;
    case V_TEXT:
    case V_BYTES:
        return kv->n == 0;
    }
    return true;
}

static void put_map(struct writer *w, const struct kv *kvs, size_t n);

static void put_stat(struct writer *w, const struct ml_stat *st)
{
    const struct kv kvs[] = {
        {"size", V_INT, true, .i = st->size},
        {"mode", V_UINT, true, .u = st->mode},
        {"mtime", V_INT, true, .i = st->mtime},
        {"is_dir", V_BOOL, true, .u = st->is_dir},
        {"ino", V_UINT, false, .u = st->ino},
        {"uid", V_UINT, false, .u = st->uid},
        {"gid", V_UINT, false, .u = st->gid},
        {"nlink", V_UINT, false, .u = st->nlink},
        {"atime", V_INT, false, .i = st->atime},
        {"atime_nsec", V_UINT, false, .u = st->atime_nsec},
        {"mtime_nsec", V_UINT, false, .u = st->mtime_nsec},
        {"ctime", V_INT, false, .i = st->ctime},
        {"ctime_nsec", V_UINT, false, .u = st->ctime_nsec},
        {"blocks", V_UINT, false, .u = st->blocks},
        {"rdev", V_UINT, false, .u = st->rdev},
    };
    put_map(w, kvs, COUNT(kvs));
}

static void put_value(struct writer *w, const struct kv *kv)
{
    switch (kv->type) {
    case V_UINT:
        put_uint(w, kv->u);
        break;
    case V_INT:
        put_int(w, kv->i);
        break;
    case V_TEXT:
        put_text(w, kv->p, kv->n);
        break;
    case V_BYTES:
        put_bytes(w, kv->p, kv->n);
        break;
    case V_BOOL:
        advance(w, cbor_encode_bool(kv->u != 0, room(w), left(w)));
        break;
    case V_STAT:
        put_stat(w, kv->p);
        break;
    case V_ENTRIES: /* kv->u entries, already encoded */
        advance(w, cbor_encode_array_start(kv->u, room(w), left(w)));
        put_raw(w, kv->p, kv->n);
        break;
    }
}

static void put_map(struct writer *w, const struct kv *kvs, size_t n)
{
    size_t present = 0;
    for (size_t i = 0; i < n; i++)
        present += kvs[i].always || !kv_is_zero(&kvs[i]);
    advance(w, cbor_encode_map_start(present, room(w), left(w)));
    for (size_t i = 0; i < n; i++) {
        if (!kvs[i].always && kv_is_zero(&kvs[i]))
            continue;
        put_text(w, kvs[i].key, strlen(kvs[i].key));
        put_value(w, &kvs[i]);
    }
}

/* Encode kvs as a frame: the body after a 4-byte big-endian length. */
static ssize_t put_frame(const struct kv *kvs, size_t n, uint8_t *buf, size_t cap)
{
    if (cap < ML_FRAME_HEADER_SIZE)
        return -EMSGSIZE;
    struct writer w = {buf + ML_FRAME_HEADER_SIZE, cap - ML_FRAME_HEADER_SIZE, 0, false};
    put_map(&w, kvs, n);
    if (w.full || w.len > UINT32_MAX)
        return -EMSGSIZE;
    for (int i = 0; i < 4; i++)
        buf[i] = (uint8_t)(w.len >> (24 - 8 * i));
    return (ssize_t)(ML_FRAME_HEADER_SIZE + w.len);
}

static bool c_string_len(const char *s, size_t *len)
{
    *len = strnlen(s, ML_PATH_SIZE);
    return *len < ML_PATH_SIZE;
}

ssize_t ml_encode_request(const struct ml_request *req, uint8_t *buf, size_t cap)
{
    size_t path_len, new_path_len;
    if (!c_string_len(req->path, &path_len) || !c_string_len(req->new_path, &new_path_len) ||
        req->data_len > ML_DATA_MAX || req->op > UINT8_MAX)
        return -EINVAL;
    const struct kv kvs[] = {
        {"op", V_UINT, true, .u = req->op},
        {"path", V_TEXT, false, .p = req->path, .n = path_len},
        {"new_path", V_TEXT, false, .p = req->new_path, .n = new_path_len},
        {"fh", V_UINT, false, .u = req->fh},
        {"off", V_INT, false, .i = req->off},
        {"sz", V_UINT, false, .u = req->sz},
        {"data", V_BYTES, false, .p = req->data, .n = req->data_len},
        {"flags", V_UINT, false, .u = req->flags},
        {"mode", V_UINT, false, .u = req->mode},
        {"uid", V_UINT, false, .u = req->uid},
        {"gid", V_UINT, false, .u = req->gid},
        {"set", V_UINT, false, .u = req->set},
        {"owner_uid", V_UINT, false, .u = req->owner_uid},
        {"owner_gid", V_UINT, false, .u = req->owner_gid},
        {"atime", V_INT, false, .i = req->atime},
        {"atime_nsec", V_UINT, false, .u = req->atime_nsec},
        {"mtime", V_INT, false, .i = req->mtime},
        {"mtime_nsec", V_UINT, false, .u = req->mtime_nsec},
    };
    return put_frame(kvs, COUNT(kvs), buf, cap);
}

ssize_t ml_encode_response(const struct ml_response *resp, uint8_t *buf, size_t cap)
{
    const struct kv kvs[] = {
        {"err", V_INT, true, .i = resp->err},
        {"stat", V_STAT, false, .p = resp->has_stat ? &resp->stat : NULL},
        {"data", V_BYTES, false, .p = resp->data, .n = resp->data_len},
        {"written", V_UINT, false, .u = resp->written},
        {"fh", V_UINT, false, .u = resp->fh},
        {"entries", V_ENTRIES, false, .u = resp->entry_count, .p = resp->entries,
         .n = resp->entries_len},
    };
    return put_frame(kvs, COUNT(kvs), buf, cap);
}

size_t ml_response_size_bound(const struct ml_response *resp)
{
    /* Heads and keys take well under 256 bytes; a stat map under 256. */
    return ML_FRAME_HEADER_SIZE + 256 + 256 + resp->data_len + resp->entries_len;
}

int ml_encode_dirent(const struct ml_dirent *d, uint8_t *buf, size_t cap, size_t *len)
{
    const struct kv kvs[] = {
        {"name", V_TEXT, true, .p = d->name, .n = strnlen(d->name, sizeof(d->name))},
        {"is_dir", V_BOOL, true, .u = d->is_dir},
        {"mode", V_UINT, true, .u = d->mode},
        {"size", V_INT, true, .i = d->size},
        {"ino", V_UINT, false, .u = d->ino},
    };
    if (*len > cap)
        return -EMSGSIZE;
    struct writer w = {buf + *len, cap - *len, 0, false};
    put_map(&w, kvs, COUNT(kvs));
    if (w.full)
        return -EMSGSIZE;
    *len += w.len;
    return 0;
}

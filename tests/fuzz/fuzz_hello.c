/*
 * fuzz_hello.c - fuzz target for the stream HELLO decoder.
 */
#include "transport/stream_hello.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t fixed[FSB_HELLO_SIZE] = { 0 };
    struct fsb_hello h;
    struct fsb_session_terms terms; /* the reply's, which the guest side decodes */
    uint8_t terms_buf[FSB_SESSION_TERMS_SIZE] = { 0 };
    memcpy(terms_buf, data, size < sizeof(terms_buf) ? size : sizeof(terms_buf));
    fsb_session_terms_decode(terms_buf, size ? data[0] : FSB_STREAM_VERSION, &terms);
    struct fsb_attr_note note; /* the host's notes, which the guest's relay decodes */
    fsb_attr_note_decode(data, size, &note);
    memcpy(fixed, data, size < sizeof(fixed) ? size : sizeof(fixed));
    if (fsb_hello_decode(fixed, &h) != 0)
        return 0;
    size_t rest = size > sizeof(fixed) ? size - sizeof(fixed) : 0;
    if (rest < h.name_len)
        return 0;
    memcpy(h.name, data + sizeof(fixed), h.name_len);
    fsb_hello_check_name(&h);
    return 0;
}

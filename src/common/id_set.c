/*
 * id_set.c - see id_set.h.
 */
#include "common/id_set.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int add_one(struct fsb_id_set *set, const char *s, size_t len)
{
    char digits[16];
    if (len == 0 || len >= sizeof(digits) || set->n == FSB_ID_SET_MAX)
        return -1;
    memcpy(digits, s, len);
    digits[len] = 0;
    if (strspn(digits, "0123456789") != len)
        return -1;
    errno = 0;
    unsigned long v = strtoul(digits, NULL, 10);
    if (errno || v > UINT32_MAX)
        return -1;
    set->ids[set->n++] = (uint32_t)v;
    return 0;
}

int fsb_id_set_add(struct fsb_id_set *set, const char *text, char sep)
{
    for (const char *p = text;; p++) {
        const char *end = strchr(p, sep);
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (add_one(set, p, len) < 0)
            return -1;
        if (!end)
            return 0;
        p = end;
    }
}

bool fsb_id_set_has(const struct fsb_id_set *set, uint32_t id)
{
    for (unsigned i = 0; i < set->n; i++)
        if (set->ids[i] == id)
            return true;
    return false;
}

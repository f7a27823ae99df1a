/*
 * id_set.h - a short list of numeric ids (uids, vsock CIDs) from the
 * command line, and whether an id is in it.  Used by the rules that say
 * which peer may connect to a listener and use an export.
 */
#ifndef FSB_ID_SET_H
#define FSB_ID_SET_H

#include <stdbool.h>
#include <stdint.h>

#define FSB_ID_SET_MAX 32

struct fsb_id_set {
    unsigned n;                    /* 0: no list given */
    uint32_t ids[FSB_ID_SET_MAX];
};

/*
 * Appends the ids of TEXT, numbers separated by SEP (e.g. "3:4"), to SET.
 * Returns 0, or -1 for an empty or non-numeric id or too many ids.
 */
int fsb_id_set_add(struct fsb_id_set *set, const char *text, char sep);

/* Whether ID is in SET (false for an empty set). */
bool fsb_id_set_has(const struct fsb_id_set *set, uint32_t id);

#endif

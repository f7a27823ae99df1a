/*
 * u64_table.h - a fixed-size hash table from 64-bit keys to pointers:
 * linear probing in a power-of-two array the caller owns, deletion by
 * shifting later entries back (Knuth's algorithm R), so that it never
 * fills with tombstones.  No lock and no allocation: the relay's pending
 * set and its FLUSH shortcut (mount/) keep one each under their own lock.
 */
#ifndef FSB_U64_TABLE_H
#define FSB_U64_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fsb_u64_slot {
    uint64_t key;
    union {
        void *value;
        uint64_t number; /* for a table of numbers: 64 bits on every ABI */
    };
    bool used;
};

struct fsb_u64_table {
    struct fsb_u64_slot *slots;
    size_t mask;  /* slots - 1 */
    size_t count;
    size_t limit; /* most entries: half the slots, so probes stay short */
};

/* SLOTS: NSLOTS (a power of two) slots, zeroed here. */
void fsb_u64_table_init(struct fsb_u64_table *t, struct fsb_u64_slot *slots, size_t nslots);

/* KEY's slot, or NULL. */
struct fsb_u64_slot *fsb_u64_table_find(const struct fsb_u64_table *t, uint64_t key);

/* Adds KEY -> VALUE.  Returns 0, -EEXIST if KEY is in, or -ENOSPC when the
 * table holds its limit. */
int fsb_u64_table_add(struct fsb_u64_table *t, uint64_t key, void *value);

/* Removes KEY; true if it was in (its value then in *VALUE, if given). */
bool fsb_u64_table_remove(struct fsb_u64_table *t, uint64_t key, void **value);

/* Empties the table, calling FN (if given) on each entry first. */
void fsb_u64_table_clear(struct fsb_u64_table *t, void (*fn)(uint64_t key, void *value, void *arg),
                         void *arg);

#endif

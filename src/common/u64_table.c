/*
 * u64_table.c - see u64_table.h.
 */
#include "common/u64_table.h"

#include <errno.h>
#include <string.h>

/* Multiplicative hashing: the high bits of the product, which every key
 * bit reaches (the kernel's uniques step by 2, handles by 1). */
static size_t home_slot(const struct fsb_u64_table *t, uint64_t key)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 32) & t->mask;
}

void fsb_u64_table_init(struct fsb_u64_table *t, struct fsb_u64_slot *slots, size_t nslots)
{
    memset(slots, 0, nslots * sizeof(*slots));
    *t = (struct fsb_u64_table){ .slots = slots, .mask = nslots - 1, .limit = nslots / 2 };
}

struct fsb_u64_slot *fsb_u64_table_find(const struct fsb_u64_table *t, uint64_t key)
{
    for (size_t i = home_slot(t, key);; i = (i + 1) & t->mask) {
        if (!t->slots[i].used)
            return NULL;
        if (t->slots[i].key == key)
            return &t->slots[i];
    }
}

int fsb_u64_table_add(struct fsb_u64_table *t, uint64_t key, void *value)
{
    if (fsb_u64_table_find(t, key))
        return -EEXIST;
    if (t->count >= t->limit)
        return -ENOSPC;
    size_t i = home_slot(t, key);
    while (t->slots[i].used)
        i = (i + 1) & t->mask;
    t->slots[i] = (struct fsb_u64_slot){ .key = key, .value = value, .used = true };
    t->count++;
    return 0;
}

/* True if HOME lies cyclically in (hole, j]: the entry at j must then stay,
 * since moving it into the hole would put it before its home slot. */
static bool stays(size_t hole, size_t j, size_t home)
{
    return hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
}

/* Empties slot HOLE and moves back any later entry of the same probe run
 * that would otherwise become unreachable. */
static void remove_slot(struct fsb_u64_table *t, size_t hole)
{
    t->slots[hole].used = false;
    for (size_t j = (hole + 1) & t->mask; t->slots[j].used; j = (j + 1) & t->mask) {
        if (stays(hole, j, home_slot(t, t->slots[j].key)))
            continue;
        t->slots[hole] = t->slots[j];
        t->slots[j].used = false;
        hole = j;
    }
}

bool fsb_u64_table_remove(struct fsb_u64_table *t, uint64_t key, void **value)
{
    struct fsb_u64_slot *s = fsb_u64_table_find(t, key);
    if (!s)
        return false;
    if (value)
        *value = s->value;
    remove_slot(t, (size_t)(s - t->slots));
    t->count--;
    return true;
}

void fsb_u64_table_clear(struct fsb_u64_table *t, void (*fn)(uint64_t key, void *value, void *arg),
                         void *arg)
{
    for (size_t i = 0; i <= t->mask; i++) {
        if (t->slots[i].used && fn)
            fn(t->slots[i].key, t->slots[i].value, arg);
        t->slots[i].used = false;
    }
    t->count = 0;
}

/*
 * unit_check.h - the scaffolding every C unit test shares: CHECK counts a
 * failed condition (the test goes on, to report every failure), and
 * RUN_TESTS runs a table of TEST()s, one "ok"/"FAIL" line each and a
 * summary, and returns main's exit status.
 */
#ifndef FSB_UNIT_CHECK_H
#define FSB_UNIT_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

static int failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            printf("    %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
            failures++;                                                              \
        }                                                                            \
    } while (0)

struct unit_test {
    void (*fn)(void);
    const char *name;
};

#define TEST(fn) { fn, #fn }

static inline int run_tests(const struct unit_test *tests, size_t n)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        int before = failures;
        tests[i].fn();
        bool ok = failures == before;
        printf("%s %s\n", ok ? "ok  " : "FAIL", tests[i].name);
        ok ? passed++ : failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define RUN_TESTS(table) run_tests(table, sizeof(table) / sizeof(table[0]))

#endif

/*
 * check.h -- the assertion of the C unit tests.  A failed CHECK prints where
 * and why and the test goes on, so one run shows every failure it can (up to
 * 20, then it stops); main() returns non-zero when `failures` is.
 */
#ifndef KV_TEST_CHECK_H
#define KV_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int failures;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                              \
            if (++failures > 20)                                                \
                exit(1);                                                        \
        }                                                                       \
    } while (0)

#endif

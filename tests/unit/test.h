/* test.h - a minimal test harness: CHECK records a failure and goes on, the
 * summary at exit says how many checks failed. */
#ifndef LOSSD_TEST_H
#define LOSSD_TEST_H

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

extern int test_failures;
extern int test_checks;

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        test_checks++;                                                               \
        if (!(cond)) {                                                               \
            test_failures++;                                                         \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
        }                                                                            \
    } while (0)

/* Prints the summary; returns the process exit status. */
int test_report(const char *name);

#endif

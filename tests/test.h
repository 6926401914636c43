/*
 * test.h - the project's small test framework.
 *
 * A test file defines TEST(name) functions; tests/test.c's main runs them all
 * (or those named on the command line) and exits non-zero if any failed.
 * CHECK_* record a failure with expected and actual values and go on;
 * REQUIRE_* also return from the test.
 */
#ifndef EVENTS_TEST_H
#define EVENTS_TEST_H

#include <stdio.h>
#include <string.h>

void test_register(const char *name, void (*fn)(void));
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int test_failed_now(void);

#define TEST(name)                                                                                 \
    static void name(void);                                                                        \
    __attribute__((constructor)) static void register_##name(void)                                 \
    {                                                                                              \
        test_register(#name, name);                                                                \
    }                                                                                              \
    static void name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) test_fail(__FILE__, __LINE__, "expected %s", #cond);                          \
    } while (0)

#define CHECK_INT(exp, act)                                                                        \
    do {                                                                                           \
        long long e_ = (long long)(exp), a_ = (long long)(act);                                    \
        if (e_ != a_) test_fail(__FILE__, __LINE__, "%s: expected %lld, got %lld", #act, e_, a_);  \
    } while (0)

#define CHECK_STR(exp, act)                                                                        \
    do {                                                                                           \
        const char *e_ = (exp), *a_ = (act);                                                       \
        if (!a_ || strcmp(e_, a_))                                                                 \
            test_fail(__FILE__, __LINE__, "%s:\n  expected: %s\n  actual:   %s", #act, e_,         \
                      a_ ? a_ : "(null)");                                                         \
    } while (0)

/* Checks that act contains the substring exp. */
#define CHECK_CONTAINS(exp, act)                                                                   \
    do {                                                                                           \
        const char *e_ = (exp), *a_ = (act);                                                       \
        if (!a_ || !strstr(a_, e_))                                                                \
            test_fail(__FILE__, __LINE__, "%s:\n  expected to contain: %s\n  actual: %s", #act,    \
                      e_, a_ ? a_ : "(null)");                                                     \
    } while (0)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            test_fail(__FILE__, __LINE__, "required %s", #cond);                                   \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define REQUIRE_INT(exp, act)                                                                      \
    do {                                                                                           \
        CHECK_INT(exp, act);                                                                       \
        if (test_failed_now()) return;                                                             \
    } while (0)

/* A fresh directory under $TMPDIR (or /tmp), removed by test_rmtree. Caller frees. */
char *test_tmpdir(const char *tag);
void test_rmtree(const char *path);

/* Reads a whole file; NULL if it cannot. Caller frees. *len may be NULL. */
char *test_read_file(const char *path, size_t *len);

#endif

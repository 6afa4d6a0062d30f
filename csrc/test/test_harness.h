/*
 * test_harness.h -- the few macros the C unit tests share.
 *
 * Each test binary defines its cases as functions, runs them with
 * TEST_RUN(fn), and ends with TEST_REPORT(), which prints the closing line
 * "N passed, N failed" (N counting cases, not checks) and returns the exit
 * status.  A failed CHECK prints file:line and the expression and marks the
 * current case failed; the case goes on, so one run shows every failure.
 */
#ifndef MOONWS_TEST_HARNESS_H
#define MOONWS_TEST_HARNESS_H

#include <stdio.h>
#include <string.h>

static int test_passed_, test_failed_, test_case_failed_;
static const char *test_case_name_;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__,    \
              test_case_name_, #cond);                                         \
      test_case_failed_ = 1;                                                   \
    }                                                                          \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                     \
  do {                                                                         \
    long long a_ = (long long)(a), b_ = (long long)(b);                        \
    if (a_ != b_) {                                                            \
      fprintf(stderr, "%s:%d: %s: %s == %lld, expected %s == %lld\n",          \
              __FILE__, __LINE__, test_case_name_, #a, a_, #b, b_);            \
      test_case_failed_ = 1;                                                   \
    }                                                                          \
  } while (0)

#define CHECK_MEM(p, q, n) CHECK(memcmp((p), (q), (n)) == 0)

#define TEST_RUN(fn)                                                           \
  do {                                                                         \
    test_case_name_ = #fn;                                                     \
    test_case_failed_ = 0;                                                     \
    fn();                                                                      \
    if (test_case_failed_)                                                     \
      test_failed_++;                                                          \
    else                                                                       \
      test_passed_++;                                                          \
  } while (0)

#define TEST_REPORT()                                                          \
  (printf("%d passed, %d failed\n", test_passed_, test_failed_),               \
   test_failed_ ? 1 : 0)

#endif

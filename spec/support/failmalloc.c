/*
 * failmalloc.c -- an allocator for fault tests, loaded with LD_PRELOAD:
 * every malloc/calloc/realloc of more than MOONWS_FAIL_ALLOC_ABOVE bytes
 * fails with ENOMEM (the bound ASan's max_allocation_size_mb draws), the rest go to glibc.  Small allocations (Lua's own,
 * OpenSSL's) keep working, so what fails is the one large buffer a test
 * aims at, as a machine out of memory would fail it.
 * Built at test time by spec/faults_spec.lua; never part of moonws.
 */
#include <errno.h>
#include <stdlib.h>

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);

static size_t limit(void) {
  static size_t value = (size_t)-1;
  static int read;
  if (!read) {
    const char *s = getenv("MOONWS_FAIL_ALLOC_ABOVE");
    value = s ? strtoull(s, NULL, 10) : (size_t)-1;
    read = 1;
  }
  return value;
}

void *malloc(size_t n) {
  if (n > limit()) {
    errno = ENOMEM;
    return NULL;
  }
  return __libc_malloc(n);
}

void *calloc(size_t n, size_t size) {
  if (size && n > limit() / size) {
    errno = ENOMEM;
    return NULL;
  }
  return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n) {
  if (n > limit()) {
    errno = ENOMEM;
    return NULL;
  }
  return __libc_realloc(p, n);
}

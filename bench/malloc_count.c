/*
 * malloc_count.c -- LD_PRELOAD shim that counts allocation calls by the
 * object that made them, so the benchmark can say whether a server
 * allocates per message in steady state, and whose code does (the Lua VM
 * in lua5.4, moonws's core.so, OpenSSL ...).  Counters live in a shared
 * mapping of $MALLOC_COUNT_FILE (layout: malloc_count.h) read by loadgen.
 *
 * It forwards to glibc's __libc_* entry points (no dlsym bootstrapping)
 * and names the caller with dladdr on the return address; that is slow,
 * which is fine for a counting run and never used for timing.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "malloc_count.h"

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t m);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);

/* Built with -fvisibility=hidden like the rest of moonws: the interposed
 * entry points must stay visible to the dynamic linker. */
#define MC_EXPORT __attribute__((visibility("default")))
MC_EXPORT void *malloc(size_t n);
MC_EXPORT void *calloc(size_t n, size_t m);
MC_EXPORT void *realloc(void *p, size_t n);
MC_EXPORT void free(void *p);

static mc_file *counts;
static int slot_lock;
static __thread int inside; /* dladdr must not count itself */

__attribute__((constructor)) static void mc_init(void) {
  const char *path = getenv("MALLOC_COUNT_FILE");
  if (!path) return;
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  if (ftruncate(fd, sizeof(mc_file)) == 0) {
    void *m = mmap(NULL, sizeof(mc_file), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m != MAP_FAILED) {
      counts = m;
      counts->magic = MC_MAGIC;
    }
  }
  close(fd);
}

static void count(void *caller) {
  if (!counts || inside) return;
  inside = 1;
  Dl_info info;
  const char *name = "?";
  if (dladdr(caller, &info) && info.dli_fname && *info.dli_fname) {
    const char *slash = strrchr(info.dli_fname, '/');
    name = slash ? slash + 1 : info.dli_fname;
  }
  uint64_t used = __atomic_load_n(&counts->used, __ATOMIC_ACQUIRE);
  for (uint64_t i = 0; i < used; i++)
    if (!strncmp(counts->slot[i].name, name, MC_NAME - 1)) {
      __atomic_fetch_add(&counts->slot[i].calls, 1, __ATOMIC_RELAXED);
      inside = 0;
      return;
    }
  while (__atomic_exchange_n(&slot_lock, 1, __ATOMIC_ACQUIRE)) {
  }
  uint64_t i;
  for (i = 0; i < counts->used; i++)
    if (!strncmp(counts->slot[i].name, name, MC_NAME - 1)) break;
  if (i == counts->used && i < MC_SLOTS) {
    strncpy(counts->slot[i].name, name, MC_NAME - 1);
    __atomic_store_n(&counts->used, i + 1, __ATOMIC_RELEASE);
  }
  if (i < MC_SLOTS) __atomic_fetch_add(&counts->slot[i].calls, 1, __ATOMIC_RELAXED);
  __atomic_store_n(&slot_lock, 0, __ATOMIC_RELEASE);
  inside = 0;
}

void *malloc(size_t n) {
  count(__builtin_return_address(0));
  return __libc_malloc(n);
}

void *calloc(size_t n, size_t m) {
  count(__builtin_return_address(0));
  return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n) {
  if (n) count(__builtin_return_address(0));
  return __libc_realloc(p, n);
}

void free(void *p) { __libc_free(p); }

/*
 * malloc_count.h -- the file layout shared by the malloc-counting shim
 * (malloc_count.c, LD_PRELOADed into a server) and the load generator,
 * which reads it before and after a measured window.
 *
 * The shim maps MALLOC_COUNT_FILE shared and counts, per calling object
 * (the executable or shared library whose code called malloc, calloc or
 * realloc), how many allocation calls it made.  Slots are filled in first-
 * come order; a name is the object's file name without its directory.
 */
#ifndef MOONWS_BENCH_MALLOC_COUNT_H
#define MOONWS_BENCH_MALLOC_COUNT_H

#include <stdint.h>

#define MC_MAGIC 0x6d6f6f6e6d616c6cull /* "moonmall" */
#define MC_SLOTS 32
#define MC_NAME 56

typedef struct mc_slot {
  char name[MC_NAME];   /* "" while free; written once before used is set */
  uint64_t calls;       /* malloc + calloc + realloc (not to size 0) */
} mc_slot;

typedef struct mc_file {
  uint64_t magic;
  uint64_t used;        /* slots in use */
  mc_slot slot[MC_SLOTS];
} mc_file;

#endif

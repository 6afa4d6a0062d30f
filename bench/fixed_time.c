/*
 * fixed_time.c -- LD_PRELOAD shim for the instruction counts of
 * bench/instr.lua: time() always returns the same instant.
 *
 * Lua 5.4 seeds its string hash with time(NULL) mixed with three addresses
 * (luai_makeseed in lstate.c), so the collision chains of every table, and
 * with them the instructions a run executes, change from run to run by up to
 * 2%.  Under valgrind with ASLR off (setarch -R) the addresses repeat; with
 * this shim the time does too, and a run's count repeats to the instruction.
 * Nothing in moonws reads time() (its timers use CLOCK_MONOTONIC).
 */
#include <time.h>

/* Built with -fvisibility=hidden like the rest of moonws: the interposed
 * entry point must stay visible to the dynamic linker. */
__attribute__((visibility("default"))) time_t time(time_t *t) {
  const time_t fixed = 1767225600; /* 2026-01-01 00:00 UTC */
  if (t) *t = fixed;
  return fixed;
}

/*
 * lblock_cache.c -- a cache of small freed blocks in front of the Lua
 * state's allocator (Lua 5.4 builds; LuaJIT has its own allocator).
 *
 * Every message makes a few small objects that live for one handler call:
 * its string, its event table and that table's fields.  A collection frees
 * hundreds of them at once, more than the C library's per-thread cache
 * holds, and the rest go through malloc's slower bins both ways: about a
 * sixth of a small message's instructions.  Here a freed block of up to
 * BLOCK_CACHE_MAX_SIZE bytes waits in a list of its exact size, and the
 * next request of that size takes it back.
 *
 * Exact sizes keep it correct over any allocator: Lua passes each block's
 * size when it frees or resizes it, so a cached block is always one the
 * allocator underneath made with the size it is handed out for again, and
 * what reaches that allocator describes the block truly.  The cache holds
 * at most BLOCK_CACHE_MAX_BYTES, gives everything back when an allocation
 * fails, and gives it back with the original allocator restored when the
 * state closes or core.block_cache(false) turns it off.
 *
 * Memory checkers still see a cached block as freed: ASan builds poison
 * it, and under valgrind's memcheck the cache marks it no-access (with
 * block_cache_alloc_memcheck, chosen when the cache is installed, so other
 * runs pay nothing for it).
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "lmoonws.h"
#include "lua_compat.h"

#if LUA_VERSION_NUM >= 504

#if defined(__SANITIZE_ADDRESS__)
#define BLOCK_CACHE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BLOCK_CACHE_ASAN 1
#endif
#endif
#ifdef BLOCK_CACHE_ASAN
#include <sanitizer/asan_interface.h>
#define ASAN_HELD(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define ASAN_LENT(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define ASAN_HELD(p, n) ((void)(p), (void)(n))
#define ASAN_LENT(p, n) ((void)(p), (void)(n))
#endif

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define BLOCK_CACHE_VALGRIND 1
#endif
#endif

/* Out of line, so a hit in block_cache_alloc saves no registers. */
#if defined(__GNUC__) || defined(__clang__)
#define BLOCK_CACHE_OUT_OF_LINE __attribute__((noinline, cold))
#else
#define BLOCK_CACHE_OUT_OF_LINE
#endif

#define BLOCK_CACHE_MAX_SIZE 256
#define BLOCK_CACHE_MAX_BYTES (128 * 1024)

typedef struct cached_block {
  struct cached_block *next;
} cached_block;

typedef struct block_cache {
  lua_Alloc inner; /* the allocator underneath */
  void *inner_ud;
  size_t held_bytes;
  size_t max_bytes; /* BLOCK_CACHE_MAX_BYTES; 0 once it only passes on */
  bool on;          /* installed by block_cache_install, not removed */
  cached_block *by_size[BLOCK_CACHE_MAX_SIZE + 1];
} block_cache;

/* A block goes into the cache (held) or out of it (lent); memcheck is a
 * constant in each caller, so these compile to nothing outside valgrind
 * and ASan. */
static inline void block_held(void *b, size_t size, bool memcheck) {
  ASAN_HELD(b, size);
#ifdef BLOCK_CACHE_VALGRIND
  if (memcheck)
    VALGRIND_MAKE_MEM_NOACCESS(b, size);
#else
  (void)memcheck;
#endif
}

static inline cached_block *block_next(cached_block *b, bool memcheck) {
  ASAN_LENT(b, sizeof *b);
#ifdef BLOCK_CACHE_VALGRIND
  if (memcheck)
    VALGRIND_MAKE_MEM_DEFINED(b, sizeof *b);
#else
  (void)memcheck;
#endif
  return b->next;
}

static inline void block_lent(void *b, size_t size, bool memcheck) {
  ASAN_LENT(b, size);
#ifdef BLOCK_CACHE_VALGRIND
  if (memcheck)
    VALGRIND_MAKE_MEM_UNDEFINED(b, size);
#else
  (void)memcheck;
#endif
}

/* Running under valgrind's memcheck: only memcheck answers GET_VBITS
 * (other tools, callgrind among them, give the "not on valgrind" 0, and
 * so count the instructions users run). */
static bool block_cache_memcheck(void) {
#ifdef BLOCK_CACHE_VALGRIND
  unsigned char probe = 0, vbits = 0;
  return VALGRIND_GET_VBITS(&probe, &vbits, 1) == 1;
#else
  return false;
#endif
}

static void block_cache_drain(block_cache *bc) {
  bool memcheck = block_cache_memcheck();
  for (size_t size = sizeof(cached_block); size <= BLOCK_CACHE_MAX_SIZE;
       size++) {
    while (bc->by_size[size]) {
      cached_block *b = bc->by_size[size];
      bc->by_size[size] = block_next(b, memcheck);
      block_lent(b, size, memcheck);
      bc->inner(bc->inner_ud, b, size, 0);
    }
  }
  bc->held_bytes = 0;
}

/* What the cache does not serve goes to the allocator underneath, and the
 * cache is given back first when that one runs out. */
BLOCK_CACHE_OUT_OF_LINE static void *block_cache_miss(block_cache *bc,
                                                      void *ptr, size_t osize,
                                                      size_t nsize) {
  void *p = bc->inner(bc->inner_ud, ptr, osize, nsize);
  if (p == NULL && nsize > 0 && bc->held_bytes > 0) {
    block_cache_drain(bc);
    p = bc->inner(bc->inner_ud, ptr, osize, nsize);
  }
  return p;
}

/* A lua_Alloc (see the manual's lua_Alloc: when ptr is NULL, osize is the
 * kind of object being made, not a size). */
static inline void *block_cache_serve(block_cache *bc, void *ptr,
                                      size_t osize, size_t nsize,
                                      bool memcheck) {
  if (ptr == NULL) {
    cached_block *b;
    if (nsize <= BLOCK_CACHE_MAX_SIZE && (b = bc->by_size[nsize]) != NULL) {
      bc->by_size[nsize] = block_next(b, memcheck);
      bc->held_bytes -= nsize;
      block_lent(b, nsize, memcheck);
      return b;
    }
    if (nsize == 0) /* by_size[0] is always empty */
      return NULL;
  } else if (nsize == 0 && osize <= BLOCK_CACHE_MAX_SIZE &&
             osize >= sizeof(cached_block) &&
             bc->held_bytes + osize <= bc->max_bytes) {
    cached_block *b = ptr;
    b->next = bc->by_size[osize];
    block_held(b, osize, memcheck);
    bc->by_size[osize] = b;
    bc->held_bytes += osize;
    return NULL;
  }
  return block_cache_miss(bc, ptr, osize, nsize);
}

static void *block_cache_alloc(void *ud, void *ptr, size_t osize,
                               size_t nsize) {
  return block_cache_serve(ud, ptr, osize, nsize, false);
}

static void *block_cache_alloc_memcheck(void *ud, void *ptr, size_t osize,
                                        size_t nsize) {
  return block_cache_serve(ud, ptr, osize, nsize, true);
}

/* The registry holds the cache's slot (a userdata: its __gc runs at
 * lua_close); the slot points at the cache, made by the allocator
 * underneath so it can outlive the state's objects. */
static const char block_cache_key = 'b';

static block_cache *block_cache_get(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &block_cache_key);
  block_cache **slot = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return slot ? *slot : NULL;
}

static bool block_cache_installed(lua_State *L, block_cache *bc) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  return ud == bc &&
         (f == block_cache_alloc || f == block_cache_alloc_memcheck);
}

static void block_cache_install(lua_State *L, block_cache *bc) {
  bc->inner = lua_getallocf(L, &bc->inner_ud);
  bc->max_bytes = BLOCK_CACHE_MAX_BYTES;
  bc->on = true;
  lua_setallocf(L, block_cache_memcheck() ? block_cache_alloc_memcheck
                                          : block_cache_alloc,
                bc);
}

/* Gives the blocks back and puts the allocator underneath back in place;
 * false when another allocator was installed over the cache since (which
 * may still call it: it then stays, passing everything on). */
static bool block_cache_remove(lua_State *L, block_cache *bc) {
  block_cache_drain(bc);
  if (!block_cache_installed(L, bc)) {
    bc->max_bytes = 0;
    return false;
  }
  lua_setallocf(L, bc->inner, bc->inner_ud);
  bc->on = false;
  return true;
}

static int block_cache_gc(lua_State *L) {
  block_cache **slot = lua_touserdata(L, 1);
  block_cache *bc = *slot;
  if (!bc)
    return 0;
  *slot = NULL;
  if (!bc->on || block_cache_remove(L, bc))
    bc->inner(bc->inner_ud, bc, sizeof *bc, 0);
  return 0;
}

/* core.block_cache([on]) -> on, bytes held: with a boolean, turns the
 * cache on or off first (off gives every block back and restores the
 * allocator the state had). */
static int block_cache_control(lua_State *L) {
  block_cache *bc = block_cache_get(L);
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    bool on = lua_toboolean(L, 1);
    if (!bc)
      return luaL_error(L, "moonws.core: no block cache in this Lua state");
    if (on && !bc->on)
      block_cache_install(L, bc);
    else if (!on && bc->on)
      block_cache_remove(L, bc);
  }
  lua_pushboolean(L, bc && bc->on && bc->max_bytes > 0);
  lua_pushinteger(L, bc ? (lua_Integer)bc->held_bytes : 0);
  return 2;
}

void lmoonws_open_block_cache(lua_State *L) {
  lua_pushcfunction(L, block_cache_control);
  lua_setfield(L, -2, "block_cache");
  if (block_cache_get(L))
    return; /* this state has one: moonws.core loaded again */
  block_cache **slot = lua_newuserdatauv(L, sizeof *slot, 0);
  *slot = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, block_cache_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  block_cache *bc = f(ud, NULL, 0, sizeof *bc);
  if (bc) { /* else no cache: everything works without one */
    memset(bc, 0, sizeof *bc);
    *slot = bc;
    block_cache_install(L, bc);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &block_cache_key);
}

#else

static int block_cache_control(lua_State *L) {
  lua_pushboolean(L, 0); /* LuaJIT: its own allocator, no cache */
  lua_pushinteger(L, 0);
  return 2;
}

void lmoonws_open_block_cache(lua_State *L) {
  lua_pushcfunction(L, block_cache_control);
  lua_setfield(L, -2, "block_cache");
}

#endif

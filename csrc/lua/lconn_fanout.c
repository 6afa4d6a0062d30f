/*
 * lconn_fanout.c -- one message queued on many conns in one C call
 * (moonws.topics: publish, broadcast), and the round's writes of every
 * conn it queued on, in one more.  Lua makes no call per receiver.
 *
 * A fanout object wraps the core's ws_fanout (frames built once,
 * compressed once per shape) for one server.  Its publish walks a Lua
 * array of conns (the topic's members), queues the message on each, and
 * notes in its pending list every conn whose output was empty before and
 * is not now: the Lua layer marks the fanout dirty once, and at the end of
 * the loop's round flush() writes each pending conn's output -- one write
 * per receiver per round, however many messages the round published.  A
 * conn whose output was not empty is already on its way out (dirty, or
 * waiting for the socket to turn writable) and is left to that.  Big
 * frames for an idle conn are written at once from the shared buffer
 * (ws_fanout_write_fn); only what the socket does not take is queued.
 *
 * What publish cannot do itself it hands back, as indexes into the array:
 * conns held by the Lua layer (a deflating queue, a fragmented send, a big
 * message to deflate alone), slow ones under the "close" policy, and
 * memory failures.  flush() hands back conns it could not write whole.
 */
#include <string.h>

#include "lconn_priv.h"
#include "ws_fanout.h"

#define LFANOUT_TYPE "moonws.fanout"

/* What publish hands back for a conn (see above). */
enum { FAN_BACK_HELD = 1, FAN_BACK_SLOW = 2, FAN_BACK_NOMEM = 3 };

typedef struct lfanout {
  ws_fanout f;
  bool closed;
  int npending;   /* conns in the pending list (the uservalue table) */
  uint64_t dropped; /* messages dropped for slow receivers */
  uint64_t slow;    /* slow receivers handed back (the "close" policy) */
  uint64_t held;    /* conns handed back to be queued by the Lua layer */
} lfanout;

static lfanout *fanout_self(lua_State *L) {
  lfanout *x = luaL_checkudata(L, 1, LFANOUT_TYPE);
  if (x->closed)
    luaL_error(L, "attempt to use a closed fanout");
  return x;
}

/* core.fanout([fragment_size]) -> a fanout for one server. */
static int fanout_new(lua_State *L) {
  lua_Integer frag = luaL_optinteger(L, 1, 0);
  luaL_argcheck(L, frag >= 0, 1, "fragment size must not be negative");
  lfanout *x = compat_newuserdata(L, sizeof *x, 1);
  memset(x, 0, sizeof *x);
  x->closed = true; /* until it is whole */
  luaL_setmetatable(L, LFANOUT_TYPE);
  lua_newtable(L);
  compat_setuservalue(L, -2, 1);
  ws_fanout_init(&x->f, (size_t)frag);
  x->closed = false;
  return 1;
}

static int fanout_gc(lua_State *L) {
  lfanout *x = luaL_checkudata(L, 1, LFANOUT_TYPE);
  if (!x->closed) {
    ws_fanout_free(&x->f);
    x->closed = true;
  }
  return 0;
}

/* The fan-out's writer (ws_fanout_write_fn): what the transport takes now;
 * a failure shows at the next flush. */
static size_t write_now(void *ud, const uint8_t *p, size_t n) {
  lconn *c = ud;
  ssize_t w = c->t->ops->write(c->t, p, n);
  return w > 0 ? (size_t)w : 0;
}

/* Append (index i, code) to the hand-back table at stack slot *back,
 * created on first use. */
static void hand_back(lua_State *L, int *back, int *nback, lua_Integer i,
                      int code) {
  if (!*back) {
    lua_newtable(L);
    *back = lua_gettop(L);
  }
  lua_pushinteger(L, i);
  lua_rawseti(L, *back, ++*nback);
  lua_pushinteger(L, code);
  lua_rawseti(L, *back, ++*nback);
}

/* publish(conns, owners, n, data, binary, limit, own_max, drop [, except])
 *   -> delivered, pending, back, holes
 * Queues data (text already checked as UTF-8 by the caller, as the core
 * requires) on conns[1..n] but except (a conn); owners[i] is what the
 * Lua layer knows conns[i] by, kept with it in the pending list so flush()
 * can name it.  A nil entry (a weak list whose socket was collected) is
 * skipped and counted in holes.  limit: send_limit
 * (WS_FAN_SLOW at or above it); own_max: the largest message a conn
 * compressing alone deflates here (bigger: handed back); drop: a slow
 * conn loses the message (counted) rather than being handed back.
 * delivered: conns that got it; pending: whether the pending list is not
 * empty (flush() at the end of the round); back: nil, or a list of index,
 * code pairs (1 held, 2 slow, 3 out of memory). */
static int fanout_publish(lua_State *L) {
  lfanout *x = fanout_self(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer n = luaL_checkinteger(L, 4);
  size_t len;
  const uint8_t *data = (const uint8_t *)luaL_checklstring(L, 5, &len);
  bool binary = lua_toboolean(L, 6);
  lua_Integer limit = luaL_checkinteger(L, 7);
  lua_Integer own_max = luaL_checkinteger(L, 8);
  bool drop = lua_toboolean(L, 9);
  const void *except = lua_touserdata(L, 10);
  lua_settop(L, 10);
  compat_getuservalue(L, 1, 1);     /* 11: the pending list */
  luaL_getmetatable(L, LCONN_TYPE); /* 12: what a conn's metatable is */
  int back = 0, nback = 0;
  lua_Integer delivered = 0, holes = 0;
  ws_fanout_begin(&x->f, binary ? WS_OP_BINARY : WS_OP_TEXT, data, len);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    lconn *c = lua_touserdata(L, -1);
    if (!c) {
      holes++;
      lua_pop(L, 1);
      continue;
    }
    if (!lua_getmetatable(L, -1) || !lua_rawequal(L, -1, 12)) {
      ws_fanout_end(&x->f);
      return luaL_error(L, "fanout: entry %d is not a conn", (int)i);
    }
    lua_pop(L, 1); /* the metatable; the conn stays on top */
    int code = 0;
    bool was_idle = ws_buf_len(&c->ws.out) == 0;
    ws_fan_result r =
        c == except || c->released ? WS_FAN_CLOSED
        : c->fan_held              ? WS_FAN_HELD
                                   : ws_fanout_queue(&x->f, &c->ws,
                                         limit > 0 ? (size_t)limit : 0,
                                         own_max > 0 ? (size_t)own_max : 0,
                                         c->t ? write_now : NULL, c);
    switch (r) {
    case WS_FAN_QUEUED:
      delivered++;
      if (was_idle && c->t && ws_buf_len(&c->ws.out)) {
        lua_rawseti(L, 11, ++x->npending); /* takes the conn */
        lua_rawgeti(L, 3, i);
        lua_rawseti(L, 11, ++x->npending);
        continue;
      }
      break;
    case WS_FAN_CLOSED:
      break;
    case WS_FAN_SLOW:
      if (drop) {
        c->ws.counters.dropped_out++;
        x->dropped++;
      } else {
        x->slow++;
        code = FAN_BACK_SLOW;
      }
      break;
    case WS_FAN_HELD:
      x->held++;
      code = FAN_BACK_HELD;
      break;
    case WS_FAN_NOMEM:
    default:
      code = FAN_BACK_NOMEM;
      break;
    }
    lua_pop(L, 1);
    if (code)
      hand_back(L, &back, &nback, i, code);
  }
  ws_fanout_end(&x->f);
  lua_pushinteger(L, delivered);
  lua_pushboolean(L, x->npending > 0);
  if (back)
    lua_pushvalue(L, back);
  else
    lua_pushnil(L);
  lua_pushinteger(L, holes);
  return 4;
}

/* flush() -> nil, or a list of the owners of pending conns not written
 * whole (would block, or failed): the Lua layer writes those its usual
 * way, which waits for the socket or reports the failure. */
static int fanout_flush(lua_State *L) {
  lfanout *x = fanout_self(L);
  lua_settop(L, 1);
  compat_getuservalue(L, 1, 1); /* 2: the pending list */
  lua_newtable(L);              /* 3: what is handed back */
  int nleft = 0;
  for (int i = 1; i < x->npending; i += 2) {
    lua_rawgeti(L, 2, i);
    lconn *c = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (c && !c->released && c->t && ws_buf_len(&c->ws.out) &&
        lconn_write_out(c) != 0) {
      lua_rawgeti(L, 2, i + 1);
      lua_rawseti(L, 3, ++nleft);
    }
    lua_pushnil(L);
    lua_rawseti(L, 2, i);
    lua_pushnil(L);
    lua_rawseti(L, 2, i + 1);
  }
  x->npending = 0;
  if (!nleft)
    lua_pushnil(L);
  return 1;
}

/* count_drop(): a message the Lua layer dropped for this slow receiver
 * (one it held), counted as the fan-out counts its own. */
static int conn_count_drop(lua_State *L) {
  lconn *c = lconn_self(L);
  c->ws.counters.dropped_out++;
  return 0;
}

/* counters([t]) -> t: the fan-out's own counts (messages, deliveries,
 * frames_built, shared_deflates, own_deflates, dropped, slow, held). */
static int fanout_counters(lua_State *L) {
  lfanout *x = fanout_self(L);
  const ws_fanout_counters *k = &x->f.counters;
  if (lua_istable(L, 2))
    lua_settop(L, 2);
  else
    lua_createtable(L, 0, 8);
#define FIELD(name, v)                                                         \
  lua_pushinteger(L, (lua_Integer)(v));                                        \
  lua_setfield(L, -2, name)
  FIELD("messages", k->messages);
  FIELD("deliveries", k->deliveries);
  FIELD("frames_built", k->frames_built);
  FIELD("shared_deflates", k->shared_deflates);
  FIELD("own_deflates", k->own_deflates);
  FIELD("dropped", x->dropped);
  FIELD("slow", x->slow);
  FIELD("held", x->held);
#undef FIELD
  return 1;
}

/* sum(conns, n [, t]) -> t, live: the conn counters of conns[1..n] added
 * up, as conn:counters() names them (into t when given), and how many of
 * the conns are not released. */
static int fanout_sum(lua_State *L) {
  (void)fanout_self(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer n = luaL_checkinteger(L, 3);
  ws_conn_counters sum;
  memset(&sum, 0, sizeof sum);
  lua_Integer live = 0;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    lconn *c = luaL_testudata(L, -1, LCONN_TYPE);
    if (c && !c->released) {
      live++;
#define ADD(name) sum.name += c->ws.counters.name;
      LCONN_COUNTERS(ADD)
#undef ADD
    }
    lua_pop(L, 1);
  }
  if (lua_istable(L, 4))
    lua_settop(L, 4);
  else
    lua_createtable(L, 0, 11);
#define FIELD(name)                                                            \
  lua_pushinteger(L, (lua_Integer)sum.name);                                   \
  lua_setfield(L, -2, #name);
  LCONN_COUNTERS(FIELD)
#undef FIELD
  lua_pushinteger(L, live);
  return 2;
}

/* random_id() -> 16 hex digits from the CSPRNG: what names this process
 * on a relay (unique, not secret); nil, message, name when it failed. */
static int fanout_random_id(lua_State *L) {
  (void)fanout_self(L);
  uint8_t raw[8];
  char hex[17];
  if (ws_random_default(NULL, raw, sizeof raw) != 0)
    return lmoonws_fail(L, WS_E_NOMEM, "random source failed");
  for (size_t i = 0; i < sizeof raw; i++) {
    hex[2 * i] = "0123456789abcdef"[raw[i] >> 4];
    hex[2 * i + 1] = "0123456789abcdef"[raw[i] & 15];
  }
  lua_pushlstring(L, hex, 16);
  return 1;
}

/* conn:hold_fanout(on): the Lua layer queues messages for this conn ahead
 * of the core (or stopped): fan-outs hand it back rather than queue. */
static int conn_hold_fanout(lua_State *L) {
  lconn *c = lconn_self(L);
  c->fan_held = lua_toboolean(L, 2);
  return 0;
}

const luaL_Reg lconn_fanout_methods[] = {{"hold_fanout", conn_hold_fanout},
                                         {"count_drop", conn_count_drop},
                                         {NULL, NULL}};

void lconn_open_fanout(lua_State *L) {
  static const luaL_Reg methods[] = {{"publish", fanout_publish},
                                     {"flush", fanout_flush},
                                     {"counters", fanout_counters},
                                     {"sum", fanout_sum},
                                     {"random_id", fanout_random_id},
                                     {NULL, NULL}};
  lmoonws_new_type(L, LFANOUT_TYPE, methods, fanout_gc);
  lua_pushcfunction(L, fanout_new);
  lua_setfield(L, -2, "fanout");
}

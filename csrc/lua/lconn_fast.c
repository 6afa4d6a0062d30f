/*
 * lconn_fast.c -- the hot path of a message, in C: pump() delivers or
 * queues every message the Lua layer's gate lets through without going
 * back to Lua per message, send_fast() queues a message without a Lua
 * check in front of it, and the object's __index finds methods with no
 * Lua function call.
 *
 * What they may do is decided in Lua, where the object's state lives: the
 * Lua layer recomputes the gate (gate()) whenever something it depends on
 * changes -- the state, onmessage, the receive queue, pause, backpressure,
 * a deferred failure -- and every case the gate does not cover goes the
 * general way (next_event's results, send's checks in Lua).  So the rules
 * stay written once, in lua/moonws/websocket.lua; this file only repeats
 * their common outcome faster.
 */
#include <string.h>

#include "lconn_priv.h"
#include "net_poller.h" /* the readiness bits dispatch() gets */

/* A big frame's payload read straight into its message costs no parsing
 * (a copy by the kernel, unmasking, UTF-8): a round may read this many
 * times max_step_bytes of it, so a MiB is not cut into a wake-up and a
 * read per max_step_bytes. */
#define DIRECT_ROUND_FACTOR 4

/* Upvalues of pump() up to UV_COUNT; dispatch() has them all. */
enum {
  UV_TEXT_EVENTS = 1, /* "text_events": the socket state's metatable of
                         its text message events (type = "message",
                         binary = false, target = the socket) ... */
  UV_BINARY_EVENTS, /* "binary_events": ... of its binary ones */
  UV_DATA,         /* "data" */
  UV_BINARY,       /* "binary" (also a queue's field of binary marks) */
  UV_ONMESSAGE,    /* "onmessage" */
  UV_WS,           /* "ws" */
  UV_QUEUE,        /* "queue" */
  UV_HEAD,         /* "head" */
  UV_TAIL,         /* "tail" */
  UV_SLOW,         /* "slow" */
  UV_COUNT = UV_SLOW,
  UV_DRV_MT,       /* dispatch only: the metatable of open sockets' drvs */
  UV_ST,           /* "st" */
  UV_CONN,         /* "conn" */
  UV_WAITERS,      /* "waiters" */
  UV_DISPATCH_COUNT = UV_WAITERS
};

/* gate(mode, send_open): mode 0 stop, 1 each, 2 deliver, 3 queue (enum
 * lconn_gate); send_open lets send_fast queue. */
static int conn_gate(lua_State *L) {
  lconn *c = lconn_self(L);
  lua_Integer mode = luaL_checkinteger(L, 2);
  luaL_argcheck(L, mode >= LCONN_GATE_STOP && mode <= LCONN_GATE_QUEUE, 2,
                "bad gate");
  c->gate = (uint8_t)mode;
  c->send_open = lua_toboolean(L, 3);
  c->gate_gen++;
  return 0;
}

static size_t opt_size(lua_State *L, int idx) {
  lua_Integer n = luaL_optinteger(L, idx, 0);
  return n > 0 ? (size_t)n : 0;
}

static uint32_t opt_u32(lua_State *L, int idx) {
  size_t n = opt_size(L, idx);
  return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* tune(send_limit, send_buffer, fragment_size, max_step_bytes, max_queue,
 * max_step_events): the options the fast paths apply (0 or nil: none). */
static int conn_tune(lua_State *L) {
  lconn *c = lconn_self(L);
  c->send_limit = opt_size(L, 2);
  c->send_buffer = opt_size(L, 3);
  c->fragment_size = opt_size(L, 4);
  c->max_step_bytes = opt_size(L, 5);
  c->max_queue = opt_u32(L, 6);
  c->max_step_events = opt_u32(L, 7);
  c->round = -1;
  return 0;
}

/* bytes_read() -> bytes read from the transport (or fed) so far: any byte
 * from the peer proves it alive (keepalive). */
static int conn_bytes_read(lua_State *L) {
  lconn *c = lconn_self(L);
  lua_pushinteger(L, (lua_Integer)c->bytes_read);
  return 1;
}

/* The field key (an upvalue) of table t at index idx; pushes its value,
 * returns its type. */
static int raw_field(lua_State *L, int t, int key) {
  lua_pushvalue(L, lua_upvalueindex(key));
  return compat_rawget(L, t);
}

/* Pop a value into field key (an upvalue) of the table under it. */
static void set_field(lua_State *L, int key) {
  lua_pushvalue(L, lua_upvalueindex(key));
  lua_insert(L, -2);
  lua_rawset(L, -3);
}

/* Push field key (an upvalue) of table t (an absolute index), made empty
 * with room for narr items and nrec fields when it is not a table; true
 * when it was made. */
static bool table_field(lua_State *L, int t, int key, int narr, int nrec) {
  if (raw_field(L, t, key) == LUA_TTABLE)
    return false;
  lua_pop(L, 1);
  lua_createtable(L, narr, nrec);
  lua_pushvalue(L, lua_upvalueindex(key));
  lua_pushvalue(L, -2);
  lua_rawset(L, t);
  return true;
}

/* What one pump knows of its socket's receive queue (0: not read yet). */
typedef struct queue_seen {
  lua_Integer head; /* queue.head once read */
  lua_Integer tail; /* the slot of the last message this pump queued */
} queue_seen;

/* Append message ev to the receive queue st.queue, made when missing in
 * the shape websocket.lua describes (binary marks false until the first
 * binary message, slow false: nothing holds reading or a failure while the
 * gate lets a pump queue).  Returns the messages now queued.  Stack slot
 * qslot caches the queue across one pump, and *seen what it read of it:
 * only receive() moves the head, and no receiver runs while a pump queues.
 * (A finalizer that received from this socket in between would make the
 * count, which only decides when the queue is full, a little high: never
 * a wrong message.)  The tail needs no reading again while the message
 * this pump queued last is still in its slot: a receive takes messages
 * from the head, and only taking that last one empties the queue and
 * moves the tail back. */
static lua_Integer queue_message(lua_State *L, int st, int qslot,
                                 const ws_event *ev, queue_seen *seen) {
  if (lua_isnil(L, qslot)) {
    if (table_field(L, st, UV_QUEUE, 2, 4)) {
      lua_pushinteger(L, 1);
      set_field(L, UV_HEAD);
      lua_pushinteger(L, 0);
      set_field(L, UV_TAIL);
      lua_pushboolean(L, 0);
      set_field(L, UV_BINARY);
      lua_pushboolean(L, 0);
      set_field(L, UV_SLOW);
    }
    lua_replace(L, qslot);
  }
  lua_Integer tail;
  if (seen->tail > 0 &&
      compat_rawgeti(L, qslot, (int)seen->tail) != LUA_TNIL) /* still there */
    tail = seen->tail + 1;
  else {
    raw_field(L, qslot, UV_TAIL);
    tail = lua_tointeger(L, -1) + 1;
  }
  lua_pop(L, 1);
  lua_pushlstring(L, (const char *)ev->data, ev->len);
  lua_rawseti(L, qslot, (int)tail);
  if (ev->type == WS_EV_BINARY) {
    table_field(L, qslot, UV_BINARY, 0, 0);
    lua_pushboolean(L, 1);
    lua_rawseti(L, -2, (int)tail);
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(UV_TAIL));
  lua_pushinteger(L, tail);
  lua_rawset(L, qslot);
  seen->tail = tail;
  if (tail == 1) { /* it was empty, so head is 1: the Lua layer's queue
                      starts again at 1, 0 whenever it empties */
    seen->head = 1;
    return 1;
  }
  if (seen->head == 0) {
    raw_field(L, qslot, UV_HEAD);
    seen->head = lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  return tail - seen->head + 1;
}

/* The slots of its own pump_run keeps on the stack, from st + 1. */
typedef struct pump_slots {
  int handler;      /* st.onmessage */
  int queue;        /* st.queue */
  int events[2];    /* st.text_events, st.binary_events ... */
  bool has_events[2]; /* ... once read (or made) */
} pump_slots;

/* Put in slot e.events[binary] the socket's metatable of message events
 * of that kind, made on its first such message: everything an event has
 * but its data, so an event is a table of one field.  The metatable is its
 * own __index (one table a kind a socket). */
static void event_mt(lua_State *L, int st, pump_slots *e, int binary) {
  int key = binary ? UV_BINARY_EVENTS : UV_TEXT_EVENTS;
  if (raw_field(L, st, key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushliteral(L, "message");
    lua_setfield(L, -2, "type");
    lua_pushboolean(L, binary);
    lua_setfield(L, -2, "binary");
    raw_field(L, st, UV_WS);
    lua_setfield(L, -2, "target");
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, lua_upvalueindex(key));
    lua_pushvalue(L, -2);
    lua_rawset(L, st);
  }
  lua_replace(L, e->events[binary]);
  e->has_events[binary] = true;
}

/* Call onmessage with a message event.  Unprotected: the Lua layer runs
 * pump() under one protected call. */
static void deliver(lua_State *L, int st, pump_slots *e, lconn *c,
                    lconn_pulled *p) {
  const ws_event *ev = &p->ev;
  int binary = ev->type == WS_EV_BINARY;
  if (!e->has_events[binary])
    event_mt(L, st, e, binary);
  lua_pushvalue(L, e->handler);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, lua_upvalueindex(UV_DATA));
  lua_pushlstring(L, (const char *)ev->data, ev->len);
  lua_rawset(L, -3);
  lua_pushvalue(L, e->events[binary]);
  lua_setmetatable(L, -2);
  /* The message is a Lua string now: release the input before the
   * handler runs (it may close the connection). */
  lconn_pull_done(c, p);
  lua_call(L, 1, 0);
}

/* Read for pump() when no input waits: true when bytes came; otherwise
 * the results to return are pushed and *nret says how many (0: nothing to
 * read now).  *again says whether reading more could find bytes now (the
 * last read filled its room, or TLS holds decrypted bytes): a read that
 * would only say "would block" costs a system call. */
static bool pump_read(lua_State *L, lconn *c, bool *again, int *nret) {
  *nret = 0;
  if (!*again || !c->t)
    return false;
  lconn_read_info info;
  ssize_t r = lconn_read_some(c, c->read_left, c->direct_left, &info);
  if (r == LCONN_READ_BUDGET) {
    lua_pushboolean(L, 0); /* the round's bytes are read: next round */
    *nret = 1;
    return false;
  }
  if (r > 0) {
    if (info.direct)
      c->direct_left -= (size_t)r;
    else
      c->read_left -= (size_t)r;
    *again = info.filled || (c->t->ops->pending && c->t->ops->pending(c->t));
    return true;
  }
  *again = false;
  if (r == NET_WANT_READ || r == NET_WANT_WRITE)
    return false;
  if (r == NET_EOF) {
    lua_pushliteral(L, "eof");
    *nret = 1;
    return false;
  }
  lua_pushliteral(L, "ioerror");
  int n = lconn_push_read_status(L, c, r); /* nil, message, name */
  lua_remove(L, -n);                       /* the nil */
  *nret = n;
  return false;
}

/* Start c's budgets of the round when it is a new one. */
static void pump_round(lconn *c, lua_Integer round) {
  if (round == c->round)
    return;
  c->round = round;
  c->events_left = (int32_t)(c->max_step_events > INT32_MAX
                                 ? INT32_MAX
                                 : c->max_step_events);
  c->read_left = c->max_step_bytes;
  c->direct_left = DIRECT_ROUND_FACTOR * c->max_step_bytes;
  if (c->deflate)
    ws_conn_set_budget(&c->ws, c->max_step_bytes);
}

/* What pump_run did besides its results (bits of *did). */
enum { PUMP_QUEUED = 1, /* a message went to the receive queue */
       PUMP_DELIVERED = 2 /* onmessage ran: any Lua may have */ };

/* pump() on c, whose state is at the top of the stack (slot st): pushes
 * the slots of its own (pump_slots), then the results, and returns how
 * many; *did gets PUMP_ bits. */
static int pump_run(lua_State *L, lconn *c, int st, lua_Integer round,
                    bool again, int *did) {
  pump_round(c, round);
  pump_slots e = {st + 1, st + 2, {st + 3, st + 4}, {false, false}};
  lua_settop(L, st + 4); /* all nil: read when first needed */
  uint32_t gen = c->gate_gen - 1;
  queue_seen seen = {0, 0}; /* queue_message's reading of st.queue */
  for (;;) {
    if (c->released || c->gate == LCONN_GATE_STOP)
      return 0;
    if (c->events_left <= 0) {
      lua_pushboolean(L, 0);
      return 1;
    }
    lconn_pulled p;
    if (!lconn_pull(c, &p)) {
      int nret;
      if (pump_read(L, c, &again, &nret))
        continue;
      return nret;
    }
    if (p.ev.type == WS_EV_NONE) {
      /* The core took the input and needs more: read on.  Returning here
       * would leave bytes TLS decrypted already (no readiness to come for
       * them) until the peer sends again -- a hang if it waits for us. */
      lconn_pull_done(c, &p);
      if (p.used == 0) { /* nothing taken (an inflate that caught up):
                            the core waits for input, so read */
        int nret;
        if (pump_read(L, c, &again, &nret))
          continue;
        return nret;
      }
      continue;
    }
    c->events_left--;
    bool message = p.ev.type == WS_EV_TEXT || p.ev.type == WS_EV_BINARY;
    if (message && c->gate == LCONN_GATE_DELIVER) {
      if (gen != c->gate_gen) {
        gen = c->gate_gen;
        raw_field(L, st, UV_ONMESSAGE);
        lua_replace(L, e.handler);
      }
      *did |= PUMP_DELIVERED;
      deliver(L, st, &e, c, &p);
      continue;
    }
    if (message && c->gate == LCONN_GATE_QUEUE) {
      lua_Integer n = queue_message(L, st, e.queue, &p.ev, &seen);
      lconn_pull_done(c, &p);
      *did |= PUMP_QUEUED;
      if (c->max_queue && n >= (lua_Integer)c->max_queue) {
        lua_pushliteral(L, "full");
        return 1;
      }
      continue;
    }
    int nret = lconn_push_event(L, c, &p.ev);
    lconn_pull_done(c, &p);
    return nret;
  }
}

/* pump(st, round [, read]) -> as next_event(), except that messages the
 * gate lets through are delivered to st.onmessage or queued on st.queue
 * here, and "full" says the queue reached max_queue.  With read, input
 * is read from the transport when none waits: "eof" at its end,
 * "ioerror", message, name when it failed.  Every event counts against
 * the round's max_step_events, every byte read (but a big payload read
 * straight into its message) against its max_step_bytes, and inflating
 * against max_step_bytes too; false when one of them is spent. */
static int conn_pump(lua_State *L) {
  lconn *c = lconn_self(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer round = luaL_checkinteger(L, 3);
  bool again = lua_toboolean(L, 4); /* may read */
  lua_settop(L, 2);
  int did = 0;
  return pump_run(L, c, 2, round, again, &did);
}

/* ---- readiness ---- */

/* The conn of the socket that watcher slot w is, when its wake-up is
 * pump()'s alone: w is the drv of an open socket of the loop's driver
 * (metatable UV_DRV_MT, which only those have), and its state has a live
 * conn.  Pushes the state, its conn (held on the stack while pumping)
 * and the state again, on top for pump_run. */
static lconn *open_socket(lua_State *L, int w) {
  if (!lua_istable(L, w) || !lua_getmetatable(L, w))
    return NULL;
  bool open =
      lua_topointer(L, -1) == lua_topointer(L, lua_upvalueindex(UV_DRV_MT));
  lua_pop(L, 1);
  if (!open || raw_field(L, w, UV_ST) != LUA_TTABLE)
    return NULL;
  int st = lua_gettop(L);
  lconn *c = raw_field(L, st, UV_CONN) == LUA_TUSERDATA ? lconn_test(L, -1)
                                                         : NULL;
  if (!c || c->released || !c->t)
    return NULL;
  lua_pushvalue(L, st); /* the state on top, for pump_run */
  return c;
}

/* loop.wake_all of the coroutines waiting to receive on the socket of drv
 * slot w (its waiters list; those waiting for room to send have nothing
 * new): each goes on ready, whose length is *at (-1: not known yet).  Only
 * the loop's own coroutines park in waiters, and one it let go of since is
 * skipped when the batch is resumed (core.resume_ready checks ours). */
static void wake_receivers(lua_State *L, int w, int ready, lua_Integer *at) {
  if (raw_field(L, w, UV_WAITERS) == LUA_TTABLE) {
    int list = lua_gettop(L);
    lua_Integer n = (lua_Integer)compat_rawlen(L, list);
    if (n > 0 && *at < 0)
      *at = (lua_Integer)compat_rawlen(L, ready);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, list, i);
      lua_rawseti(L, ready, ++*at);
    }
  }
  lua_pop(L, 1);
}

/* dispatch(fds, events, from, n, watchers, round, current, ready): the
 * loop's ready descriptors fds[from..n], events[i] 1 read, 2 write, 3
 * both, their watchers by descriptor.  A socket of the loop's driver that is only
 * readable is pumped here (reading on) with no Lua between the poller and
 * its handlers; the first descriptor it cannot finish goes back:
 *   i                     -- fds[i] is its watcher's to handle
 *   i, st, results...     -- pump() of the socket whose state is st
 *                            returned results
 *   nothing               -- all done.
 * A socket whose pump only queued messages has its waiting coroutines
 * woken here, as the Lua layer would (websocket.lua's drain_end: no
 * onmessage in the queueing gate), onto the loop's ready list.
 * Handlers run unprotected, one protected call (the caller's) around all:
 * current[1], the state of the socket being pumped, says whose handler it
 * was when one raises (one table write a socket: its index is found from
 * its descriptor then). */
static int dispatch_ready(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer from = luaL_checkinteger(L, 3);
  lua_Integer n = luaL_checkinteger(L, 4);
  luaL_checktype(L, 5, LUA_TTABLE);
  lua_Integer round = luaL_checkinteger(L, 6);
  luaL_checktype(L, 7, LUA_TTABLE);
  luaL_checktype(L, 8, LUA_TTABLE);
  lua_Integer ready_len = -1; /* #ready, kept while no Lua runs */
  for (lua_Integer i = from; i <= n; i++) {
    lua_settop(L, 8);
    lua_rawgeti(L, 2, i);
    bool read_only = lua_tointeger(L, 9) == NET_POLL_READ;
    lua_rawgeti(L, 1, i);
    compat_rawget(L, 5); /* 9 events, 10 the watcher */
    lconn *c = read_only ? open_socket(L, 10) : NULL;
    if (!c) {
      lua_pushinteger(L, i);
      return 1;
    }
    int st = lua_gettop(L);
    lua_pushvalue(L, st);
    lua_rawseti(L, 7, 1);
    int did = 0;
    int nret = pump_run(L, c, st, round, true, &did);
    if (did & PUMP_DELIVERED)
      ready_len = -1; /* handlers may have woken some */
    if (nret == 0 && (did & PUMP_QUEUED)) {
      wake_receivers(L, 10, 8, &ready_len);
    } else if (nret > 0) {
      lua_pushinteger(L, i);
      lua_insert(L, -(nret + 1));
      lua_pushvalue(L, st);
      lua_insert(L, -(nret + 1));
      return nret + 2;
    }
  }
  return 0;
}

/* ---- send ---- */

/* Upvalues of the send closures: PRIV, "conn", the list of socket
 * objects whose flush is left to core.flush_listed, the shared state
 * (send's memory of sockets, the kind strings), then the rest of send
 * (send_method only). */
enum { SF_PRIV = 1, SF_CONN, SF_LISTED, SF_SHARED, SF_REST };

/* What the hot path did with send(ws, data [, kind]) at slots 1-3: */
enum send_verdict {
  SEND_GENERAL = 0, /* nothing: the general way (websocket.lua) checks
                       everything again and raises or refuses */
  SEND_DONE,        /* queued; a flush is already due (or listed) */
  SEND_FLUSH,       /* queued; schedule a flush */
  SEND_WAIT         /* queued, over send_buffer: schedule a flush and wait
                       if waiting is possible */
};

/* The verdicts that leave the socket to the Lua layer: its next write
 * there may have something to decide (ondrain, waking senders). */
static int send_to_lua(lconn *c, int verdict) {
  c->flush_plain = false;
  return verdict;
}

_Static_assert((LCONN_SENDER_SETS & (LCONN_SENDER_SETS - 1)) == 0 &&
                   2 * LCONN_SENDER_SETS <= UINT16_MAX,
               "a set is a mask of the address; sender_slot holds a slot");

/* The set of send's memory for object ws: its first slot (the address
 * mixed; objects are at least 16 bytes apart). */
static struct lconn_sender *sender_set(lconn_shared *sh, const void *ws) {
  uintptr_t a = (uintptr_t)ws;
  return &sh->senders[2 * (((a >> 4) ^ (a >> 12)) & (LCONN_SENDER_SETS - 1))];
}

/* The conn send remembers for object ws, or NULL. */
static lconn *sender_find(lconn_shared *sh, const void *ws) {
  struct lconn_sender *set = sender_set(sh, ws);
  if (set[0].ws == ws)
    return set[0].conn;
  if (set[1].ws == ws)
    return set[1].conn;
  return NULL;
}

/* Pair ws with c in slot, and tell c where (for release()). */
static void sender_put(lconn_shared *sh, struct lconn_sender *slot,
                       const void *ws, lconn *c) {
  *slot = (struct lconn_sender){ws, c};
  c->sender_slot = (uint16_t)(slot - sh->senders);
}

/* Remember c as object ws's conn, first in its set (the older one of the
 * set stays second, the second is forgotten). */
static void sender_remember(lconn_shared *sh, const void *ws, lconn *c) {
  struct lconn_sender *set = sender_set(sh, ws);
  if (set[0].ws)
    sender_put(sh, &set[1], set[0].ws, set[0].conn);
  sender_put(sh, &set[0], ws, c);
}

/* The conn of the socket object at absolute index obj, obj[PRIV].conn
 * with PRIV at index priv and "conn" at key, or NULL; when found, the
 * state and the conn are left pushed. */
static lconn *object_conn(lua_State *L, int obj, int priv, int key) {
  if (!lua_istable(L, obj))
    return NULL;
  lua_pushvalue(L, priv);
  if (compat_rawget(L, obj) != LUA_TTABLE)
    return NULL;
  lua_pushvalue(L, key);
  return compat_rawget(L, -2) == LUA_TUSERDATA ? lconn_test(L, -1) : NULL;
}

/* The conn of send's socket (slot 1), or NULL; its state is pushed at slot
 * 4 (the arguments cut to three), its conn at 5. */
static lconn *send_target(lua_State *L) {
  lua_settop(L, 3);
  return object_conn(L, 1, lua_upvalueindex(SF_PRIV),
                     lua_upvalueindex(SF_CONN));
}

/* Queue the message when the gate allows it: a verdict, or -n when a
 * runtime failure pushed n results (nil, message, name).  With remember
 * (send_method: Lua 5.4), a send on a socket the shared state remembers
 * finds its conn there; the verdicts that go on to Lua (flush, wait) have
 * the state at slot 4 all the same. */
static int send_queue(lua_State *L, bool remember) {
  lconn_shared *sh = lua_touserdata(L, lua_upvalueindex(SF_SHARED));
  bool have_state = false;
  const void *ws = remember ? lua_topointer(L, 1) : NULL;
  lconn *c = ws && lua_gettop(L) <= 3 ? sender_find(sh, ws) : NULL;
  if (!c) {
    c = send_target(L);
    if (!c)
      return SEND_GENERAL;
    have_state = true;
    if (ws)
      sender_remember(sh, ws, c);
  }
  if (c->released)
    return SEND_GENERAL;
  if (!c->send_open || lua_type(L, 2) != LUA_TSTRING)
    return send_to_lua(c, SEND_GENERAL);
  /* The kind by address: Lua keeps one copy of each short string, so
   * "text" is the same object wherever it comes from (cheaper than
   * lua_rawequal); nil (no kind) has none. */
  bool binary;
  const void *kind = lua_topointer(L, 3);
  if (kind == sh->kind_text || (kind == NULL && lua_isnoneornil(L, 3)))
    binary = false;
  else if (kind == sh->kind_binary)
    binary = true;
  else
    return send_to_lua(c, SEND_GENERAL);
  size_t len;
  const uint8_t *data = (const uint8_t *)lua_tolstring(L, 2, &len);
  if ((c->send_limit && ws_buf_len(&c->ws.out) >= c->send_limit) ||
      (c->deflate && len > c->max_step_bytes &&
       ws_deflate_wants(c->deflate, len)) ||
      (!binary && !ws_utf8_valid(data, len)))
    return send_to_lua(c, SEND_GENERAL);
  enum ws_error e = lconn_send_message(
      c, binary ? WS_OP_BINARY : WS_OP_TEXT, data, len, c->fragment_size);
  if (e != WS_E_NONE)
    return -lmoonws_fail(L, e, e == WS_E_CLOSED ? "closed" : NULL);
  int verdict;
  if (ws_buf_len(&c->ws.out) > c->send_buffer) {
    c->dirty = true;
    verdict = send_to_lua(c, SEND_WAIT);
  } else if (c->dirty) {
    return SEND_DONE;
  } else {
    c->dirty = true;
    if (c->flush_plain && c->sh->flush_batching) {
      /* The round's end writes it (core.flush_listed), with no Lua unless
       * the write leaves something to decide. */
      lua_pushvalue(L, 1);
      lua_rawseti(L, lua_upvalueindex(SF_LISTED),
                  (lua_Integer)compat_rawlen(L, lua_upvalueindex(SF_LISTED)) + 1);
      return SEND_DONE;
    }
    verdict = SEND_FLUSH;
  }
  if (!have_state)
    send_target(L); /* the state, for the rest of send */
  return verdict;
}

/* send_fast(ws, data [, kind]) -> the verdict (1-3), nil, message, name
 * (a runtime failure), or nothing (SEND_GENERAL). */
static int send_fast(lua_State *L) {
  int r = send_queue(L, false);
  if (r <= 0)
    return -r;
  lua_pushinteger(L, r);
  return 1;
}

/* Push the send closures' upvalues up to SF_SHARED from (PRIV, listed)
 * at slots 1-2. */
static void push_send_upvalues(lua_State *L) {
  luaL_checkany(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_pushvalue(L, 1);
  lua_pushliteral(L, "conn");
  lua_pushvalue(L, 2);
  lua_pushlightuserdata(L, lconn_get_shared(L));
}

/* core.fast_send(PRIV, listed) -> send_fast, for the objects whose state
 * is ws[PRIV] and whose conn is state.conn; listed is the list of objects
 * core.flush_listed writes for. */
static int fast_send(lua_State *L) {
  lua_settop(L, 2);
  push_send_upvalues(L);
  lua_pushcclosure(L, send_fast, SF_SHARED);
  return 1;
}

/* The conn of the socket object at slot idx that send listed: send's
 * memory of it, else ws[PRIV].conn with PRIV at slot 2 and "conn" at 3. */
static lconn *listed_conn(lua_State *L, lconn_shared *sh, int idx) {
  const void *ws = lua_topointer(L, idx);
  lconn *c = ws ? sender_find(sh, ws) : NULL;
  if (!c) {
    c = object_conn(L, idx, 2, 3);
    lua_settop(L, idx);
  }
  return c;
}

/* core.flush_listed(listed, PRIV) -> n: write the output of every socket
 * object listed by send (each conn once a round); the objects whose write
 * left bytes, failed, or was not plain stay in listed[1..n] for the Lua
 * layer, the rest of the list is emptied. */
static int flush_listed(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  lua_pushliteral(L, "conn"); /* 3: pushed once, copied per object */
  lconn_shared *sh = lconn_get_shared(L);
  lua_Integer n = (lua_Integer)compat_rawlen(L, 1), kept = 0;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i); /* 4 */
    bool done = true;
    lconn *c = listed_conn(L, sh, 4);
    if (c && !c->released && c->t) {
      c->dirty = false;
      done = lconn_write_out(c) == 0 && c->flush_plain;
      if (!done)
        c->flush_plain = false;
    }
    if (done)
      lua_pop(L, 1);
    else
      lua_rawseti(L, 1, ++kept);
  }
  for (lua_Integer i = kept + 1; i <= n; i++) {
    lua_pushnil(L);
    lua_rawseti(L, 1, i);
  }
  lua_pushinteger(L, kept);
  return 1;
}

/* core.flush_batching(on): a loop round begins (true) or ends; only
 * inside one may send list its socket instead of asking for a flush. */
static int flush_batching(lua_State *L) {
  lconn_get_shared(L)->flush_batching = lua_toboolean(L, 1);
  return 0;
}

/* plain_flush(on): the Lua layer's write found nothing to decide (true),
 * or something may need deciding at the next one (false). */
static int conn_plain_flush(lua_State *L) {
  lconn *c = lconn_self(L);
  c->flush_plain = lua_toboolean(L, 2);
  return 0;
}

#if LUA_VERSION_NUM >= 504
/* The rest of send returned (maybe after waiting in it): its results. */
static int send_method_done(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

/* ws:send(data [, kind]) itself: a message the hot path queued with a
 * flush already due costs no Lua call; every other verdict goes to
 * rest(ws, data, kind, verdict, state) -- verdict and state nil for the
 * general way -- which may wait (yield), so it is called with a
 * continuation. */
static int send_method(lua_State *L) {
  int r = send_queue(L, true);
  if (r < 0)
    return -r;
  if (r == SEND_DONE) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r == SEND_GENERAL) {
    lua_settop(L, 3);
    lua_pushnil(L);
    lua_pushnil(L);
  } else {
    lua_settop(L, 4); /* the state send_queue found */
    lua_pushinteger(L, r);
    lua_insert(L, 4);
  }
  lua_pushvalue(L, lua_upvalueindex(SF_REST));
  lua_insert(L, 1);
  lua_callk(L, 5, LUA_MULTRET, 0, send_method_done);
  return send_method_done(L, LUA_OK, 0);
}

/* core.send_method(PRIV, listed, rest) -> send (Lua 5.4: LuaJIT cannot
 * yield through a C function, so there send_fast sits under a Lua send). */
static int new_send_method(lua_State *L) {
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  push_send_upvalues(L);
  lua_pushvalue(L, 3);
  lua_pushcclosure(L, send_method, SF_REST);
  return 1;
}
#endif

/* core.send_forget(ws): object ws may no longer be paired with the conn
 * send remembers for it (st.conn set or cleared, the object finalized). */
static int send_forget(lua_State *L) {
  const void *ws = lua_topointer(L, 1);
  if (!ws)
    return 0;
  struct lconn_sender *set = sender_set(lconn_get_shared(L), ws);
  for (int i = 0; i < 2; i++)
    if (set[i].ws == ws)
      set[i] = (struct lconn_sender){NULL, NULL};
  return 0;
}

/* ---- the object's __index ---- */

/* __index(ws, k): methods[k], else getters[k](ws[PRIV]), else nil.  The
 * methods of a message, send and receive, are also stored in ws itself on
 * their first lookup: ws:send() and ws:receive() per message then find
 * them with no metamethod call, and an object grows only by what it uses. */
static int proxy_index(lua_State *L) {
  lua_settop(L, 2);
  lua_pushvalue(L, 2);
  if (compat_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) {
    if (lua_rawequal(L, 2, lua_upvalueindex(4)) ||
        lua_rawequal(L, 2, lua_upvalueindex(5))) {
      lua_pushvalue(L, 2);
      lua_pushvalue(L, 3);
      lua_rawset(L, 1);
    }
    return 1;
  }
  lua_pushvalue(L, 2);
  if (compat_rawget(L, lua_upvalueindex(2)) == LUA_TNIL)
    return 1;
  lua_pushvalue(L, lua_upvalueindex(3));
  compat_rawget(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

/* core.fast_index(methods, getters, PRIV) -> __index */
static int fast_index(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checkany(L, 3);
  lua_settop(L, 3);
  lua_pushliteral(L, "send");
  lua_pushliteral(L, "receive");
  lua_pushcclosure(L, proxy_index, 5);
  return 1;
}

/* The upvalues of pump() up to UV_COUNT. */
static void push_pump_upvalues(lua_State *L) {
  lua_pushliteral(L, "text_events");
  lua_pushliteral(L, "binary_events");
  lua_pushliteral(L, "data");
  lua_pushliteral(L, "binary");
  lua_pushliteral(L, "onmessage");
  lua_pushliteral(L, "ws");
  lua_pushliteral(L, "queue");
  lua_pushliteral(L, "head");
  lua_pushliteral(L, "tail");
  lua_pushliteral(L, "slow");
}

/* core.dispatcher(drv_mt) -> dispatch, for the loop's open sockets: their
 * drvs are the tables whose metatable is drv_mt, with a field st.  It
 * shares pump()'s upvalues (the event metatables among them). */
static int new_dispatcher(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  luaL_getmetatable(L, LCONN_TYPE);
  lua_getfield(L, 2, "__index");
  lua_getfield(L, 3, "pump"); /* 4 */
  for (int i = 1; i <= UV_COUNT; i++)
    lua_getupvalue(L, 4, i);
  lua_pushvalue(L, 1);
  lua_pushliteral(L, "st");
  lua_pushliteral(L, "conn");
  lua_pushliteral(L, "waiters");
  lua_pushcclosure(L, dispatch_ready, UV_DISPATCH_COUNT);
  return 1;
}

/* The pump closure's upvalues, then the methods. */
void lconn_fast_register(lua_State *L) {
  static const luaL_Reg plain[] = {{"gate", conn_gate},
                                   {"plain_flush", conn_plain_flush},
                                   {"tune", conn_tune},
                                   {"bytes_read", conn_bytes_read},
                                   {NULL, NULL}};
  luaL_setfuncs(L, plain, 0);
  push_pump_upvalues(L);
  lua_pushcclosure(L, conn_pump, UV_COUNT);
  lua_setfield(L, -2, "pump");
}

const luaL_Reg lconn_fast_functions[] = {
    {"fast_send", fast_send},
    {"flush_listed", flush_listed},
    {"flush_batching", flush_batching},
#if LUA_VERSION_NUM >= 504
    {"send_method", new_send_method},
#endif
    {"send_forget", send_forget},
    {"fast_index", fast_index},
    {"dispatcher", new_dispatcher},
    {NULL, NULL}};

/*
 * lconn_priv.h -- what the files of the conn type share (lconn.c: the
 * type and its life; lconn_io.c: the transport; lconn_handshake.c: the
 * opening handshake; lconn_frames.c: events and sending;
 * lconn_fanout.c: one message queued on many conns).  Private to them:
 * other binding files use lconn.h.
 */
#ifndef MOONWS_LCONN_PRIV_H
#define MOONWS_LCONN_PRIV_H

#include "lconn.h"
#include "lmoonws.h"
#include "ws_deflate.h"
#include "ws_handshake.h"

#define LCONN_TYPE "moonws.conn"
#define SCRATCH_SIZE (256 * 1024)
#define HANDSHAKE_READ 4096
#define MAX_EXTRA_FIELDS 64
/* An output buffer larger than this is released once drained, so one big
 * message does not pin its memory for the connection's life (the core does
 * the same for the message buffer). */
#define KEEP_BUFFER 65536
/* Frames with this much payload still to come are read straight into the
 * message, and messages this big are written from the Lua string: below
 * it, batching many small messages through one buffer costs less. */
#define DIRECT_MIN 65536

/* Slots of send's memory: sets of two, picked by the object's address
 * (a power of two of them), so a hundred busy sockets rarely push each
 * other out. */
#define LCONN_SENDER_SETS 256

typedef struct lconn_shared {
  uint8_t *scratch;
  struct lconn *owner; /* whose bytes are in scratch[pos, len) */
  size_t pos, len;
  bool flush_batching; /* inside a loop round (core.flush_batching): send
                          may list its socket for core.flush_listed */
  /* ws:send's memory of the sockets it found (Lua 5.4 only): objects (by
   * address) and their conns, so a send skips ws[PRIV].conn.  A pairing
   * is forgotten whenever it may end: the conn released (C), st.conn set
   * or cleared, the object finalized (core.send_forget, from the Lua
   * layer).  Lua 5.4 finalizes an object before its memory can be reused,
   * so an address here is never another object's. */
  struct lconn_sender {
    const void *ws;
    struct lconn *conn;
  } senders[2 * LCONN_SENDER_SETS];
  const void *kind_text, *kind_binary; /* the strings "text" and "binary"
                                          (held by the registry), for
                                          send's kind check by address */
} lconn_shared;

/* The shared state of this Lua state's conns. */
lconn_shared *lconn_get_shared(lua_State *L);

/* What the Lua layer lets the hot path do on its own (gate()): */
enum lconn_gate {
  LCONN_GATE_STOP = 0, /* dispatch nothing: reading is not wanted */
  LCONN_GATE_EACH,     /* hand every event to the Lua layer */
  LCONN_GATE_DELIVER,  /* call onmessage here; other events to Lua */
  LCONN_GATE_QUEUE     /* append messages to the receive queue here */
};

#define LCONN_MAGIC 0x6d776363u /* "mwcc": lconn_test's cheap type check */

struct lconn {
  uint32_t magic;
  bool released;
  bool handshaking;
  ws_conn ws;
  net_transport *t;
  lconn_shared *sh;
  ws_buf in; /* handshake bytes, and unparsed bytes spilled from scratch */
  struct lconn_opening *opening; /* what only the handshake needs, or
                                    NULL (lconn_handshake.c) */
  ws_deflate *deflate;      /* agreed permessage-deflate, or NULL */
  ws_event direct_ev; /* an event a direct read completed, for next_event */
  bool fan_held; /* the Lua layer queues messages ahead of the core's out
                    (its deflating queue): fan-outs hand this conn back */
  bool out_drop_once; /* free the output buffer once the handshake's answer
                         has gone: an idle connection holds none */

  /* The hot path (lconn_fast.c), kept in step by the Lua layer. */
  uint8_t gate;           /* enum lconn_gate */
  bool send_open;         /* send_fast may queue: OPEN, nothing deferred */
  bool dirty;             /* send_fast queued output since the last flush */
  bool flush_plain;       /* the Lua layer's last write found nothing to
                             decide after it (plain_flush): a write that
                             sends everything needs no Lua (flush_listed) */
  uint16_t sender_slot;   /* where send's memory may hold this conn */
  uint32_t gate_gen;      /* bumped by every gate() */
  int32_t events_left;    /* events this round may still dispatch */
  uint32_t max_queue;     /* receive queue length that pauses reading */
  uint32_t max_step_events;
  size_t send_limit, send_buffer, fragment_size, max_step_bytes;
  size_t read_left;       /* bytes this round may still read ... */
  size_t direct_left;     /* ... and read straight into big messages */
  lua_Integer round;      /* the round the budgets are for */
  uint64_t bytes_read;    /* from the transport (or feed), ever */
};

/* The counters of ws_conn_counters, for code that lists them all. */
#define LCONN_COUNTERS(X)                                                      \
  X(messages_in) X(bytes_in) X(wire_bytes_in) X(inflated_in) X(compressed_in) \
  X(messages_out) X(bytes_out) X(wire_bytes_out) X(deflated_out)              \
  X(deflated_wire_out) X(dropped_out)

/* Write what out holds until done (0; a big buffer is then released) or
 * the transport stops: NET_WANT_WRITE/NET_WANT_READ or a failure (< 0,
 * the transport says why).  c->t must be set. */
ssize_t lconn_write_out(lconn *c);

/* The conn at argument 1 (raises on another type or a released conn). */
static inline lconn *lconn_self(lua_State *L) { return lconn_check(L, 1); }

/* Free the agreed permessage-deflate (the core only borrows it). */
void lconn_drop_deflate(lconn *c);
/* Free what only the opening handshake needed (lconn_handshake.c). */
void lconn_opening_free(lconn *c);

/* The next event from c's unparsed input (lconn_frames.c).  lconn_pull
 * returns false when there is no input to parse; otherwise p->ev is set
 * (maybe WS_EV_NONE) and may point into the input, which stays valid
 * until lconn_pull_done. */
typedef struct lconn_pulled {
  ws_event ev;
  size_t used;
  int source; /* 0: direct event, 1: scratch, 2: c->in */
} lconn_pulled;
bool lconn_pull(lconn *c, lconn_pulled *p);
void lconn_pull_done(lconn *c, const lconn_pulled *p);
/* Push an event as next_event's results; returns their count. */
int lconn_push_event(lua_State *L, lconn *c, const ws_event *e);
/* Queue one message (split into fragment_size frames when that is not 0;
 * a big one written from data directly when nothing waits before it). */
enum ws_error lconn_send_message(lconn *c, uint8_t op, const uint8_t *data,
                                 size_t len, size_t fragment_size);
/* Read once from c's transport, at most max bytes into the scratch, or at
 * most direct_max of a big frame's payload straight into its message:
 * bytes read (> 0), or a NET_* status, or LCONN_READ_NOMEM. */
#define LCONN_READ_NOMEM (-100)
#define LCONN_READ_BUDGET (-101) /* max is 0 and no direct read fits */
typedef struct lconn_read_info {
  bool direct; /* into a big frame's message, not the scratch */
  bool filled; /* the read took all the room it had: more may wait */
} lconn_read_info;
ssize_t lconn_read_some(lconn *c, size_t max, size_t direct_max,
                        lconn_read_info *info);
/* Push read()'s results for a status r <= 0 of lconn_read_some. */
int lconn_push_read_status(lua_State *L, lconn *c, ssize_t r);
/* Push send()'s refusal by send_limit (queued bytes wait); returns 3. */
int lconn_send_queue_full(lua_State *L, size_t queued);

/* Each file's methods of the conn type, and functions of moonws.core. */
extern const luaL_Reg lconn_io_methods[];
extern const luaL_Reg lconn_handshake_methods[];
extern const luaL_Reg lconn_handshake_functions[];
extern const luaL_Reg lconn_frames_methods[];
extern const luaL_Reg lconn_frames_functions[];
extern const luaL_Reg lconn_fanout_methods[];
/* The fanout type and core.fanout, into the module table on top. */
void lconn_open_fanout(lua_State *L);

extern const luaL_Reg lconn_fast_functions[];
/* Add the hot path's methods to the conn methods table on the stack. */
void lconn_fast_register(lua_State *L);

/* The conn at idx, or NULL when idx holds something else or a conn is
 * not what it holds (no error: for the fast paths' fallbacks). */
lconn *lconn_test(lua_State *L, int idx);

#endif

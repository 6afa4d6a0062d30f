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

typedef struct lconn_shared {
  uint8_t *scratch;
  struct lconn *owner; /* whose bytes are in scratch[pos, len) */
  size_t pos, len;
} lconn_shared;

struct lconn {
  ws_conn ws;
  net_transport *t;
  lconn_shared *sh;
  ws_buf in; /* handshake bytes, and unparsed bytes spilled from scratch */
  bool released;
  bool handshaking;
  char key[WS_KEY_LEN + 1]; /* client: the Sec-WebSocket-Key sent */
  ws_deflate_options pmd;   /* set_compression(); enabled false = off */
  ws_deflate *deflate;      /* agreed permessage-deflate, or NULL */
  ws_buf ext; /* handshake only -- client: the offer sent; server: the
                 request's Sec-WebSocket-Extensions, fields joined */
  ws_event direct_ev; /* an event a direct read completed, for next_event */
  bool fan_held; /* the Lua layer queues messages ahead of the core's out
                    (its deflating queue): fan-outs hand this conn back */
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

/* Each file's methods of the conn type, and functions of moonws.core. */
extern const luaL_Reg lconn_io_methods[];
extern const luaL_Reg lconn_handshake_methods[];
extern const luaL_Reg lconn_handshake_functions[];
extern const luaL_Reg lconn_frames_methods[];
extern const luaL_Reg lconn_frames_functions[];
extern const luaL_Reg lconn_fanout_methods[];
/* The fanout type and core.fanout, into the module table on top. */
void lconn_open_fanout(lua_State *L);

#endif

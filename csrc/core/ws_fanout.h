/*
 * ws_fanout.h -- one message for many connections (topics, broadcast):
 * framed once, and compressed once for every receiver whose compressor
 * starts each message afresh.
 *
 * A server's frames are not masked, so a message's frames are the same
 * bytes for every receiver: they are built on first need into the
 * fan-out's own buffers and appended to each receiver's out
 * (ws_conn_queue_frames), a memcpy per receiver.  With permessage-deflate,
 * a receiver that agreed to no context takeover on our side
 * (server_no_context_takeover) gets the bytes of one compression of the
 * message, made by a shared compressor of its shape (ws_deflate_fresh:
 * window, strategy, level, memLevel -- any two such compressors make the
 * same bytes); a receiver whose compressor keeps its context deflates the
 * message itself (ws_conn_send), as RFC 7692 requires.  Receivers below
 * their compression threshold, or without compression, share the plain
 * frames.  A client connection (masked frames) sends its own copy.
 *
 * A ws_fanout lives as long as its server: it keeps the shared compressors
 * (one per shape seen, at most WS_FANOUT_SHAPES; a server's receivers
 * usually share one) and the frame buffers, reused from message to
 * message, so steady traffic allocates nothing.  No I/O, no clock: the
 * caller writes every receiver's out.  Memory runs out -> the receiver is
 * told WS_FAN_NOMEM; a shared compression that fails (or a shape over the
 * limit) only makes those receivers compress their own copy.
 */
#ifndef MOONWS_WS_FANOUT_H
#define MOONWS_WS_FANOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws_buf.h"
#include "ws_conn.h"
#include "ws_deflate.h"

#define WS_FANOUT_SHAPES 4

typedef enum ws_fan_result {
  WS_FAN_QUEUED, /* the message is on c->out */
  WS_FAN_CLOSED, /* c sent its close frame: nothing may follow it */
  WS_FAN_HELD,   /* c is inside a fragmented send, or would deflate more
                    than own_max bytes itself: the caller queues the
                    message its own way, behind what waits */
  WS_FAN_SLOW,   /* limit bytes or more wait on c->out: nothing queued */
  WS_FAN_NOMEM   /* out of memory: nothing queued */
} ws_fan_result;

/* Plain integers: counting costs additions, no allocation. */
typedef struct ws_fanout_counters {
  uint64_t messages;        /* messages fanned out (ws_fanout_begin) */
  uint64_t deliveries;      /* WS_FAN_QUEUED results */
  uint64_t frames_built;    /* frame sets built (per message and variant) */
  uint64_t shared_deflates; /* compressions made once for many receivers */
  uint64_t own_deflates;    /* receivers that compressed their own copy */
} ws_fanout_counters;

typedef struct ws_fanout_variant {
  ws_deflate_shape shape;
  ws_deflate *z;  /* the shared compressor of that shape */
  ws_buf frames;  /* this message's frames, compressed with it */
  size_t wire;    /* their payload bytes */
  int built;      /* for this message: 0 not yet, 1 built, -1 failed */
} ws_fanout_variant;

typedef struct ws_fanout {
  size_t fragment_size; /* > 0: messages longer go as frames of this size */
  ws_fanout_counters counters;
  /* Private. */
  uint8_t opcode;       /* the message being fanned out (borrowed) */
  const uint8_t *data;
  size_t len;
  bool plain_built;
  ws_buf plain;         /* its uncompressed frames */
  ws_buf scratch;       /* a compression before it is framed */
  int nz;
  ws_fanout_variant zs[WS_FANOUT_SHAPES];
} ws_fanout;

void ws_fanout_init(ws_fanout *f, size_t fragment_size);
/* Free the compressors and buffers (the struct is the caller's). */
void ws_fanout_free(ws_fanout *f);

/* Start fanning out one message (TEXT, already valid UTF-8, or BINARY):
 * data[0, len) is borrowed until ws_fanout_end. */
void ws_fanout_begin(ws_fanout *f, uint8_t opcode, const void *data,
                     size_t len);

/* Writing big frames straight from the shared buffer: copying them into
 * every receiver's out first would touch N copies of the message (cache
 * misses, page faults) where the kernel can copy from one hot buffer.
 * write(ud, p, n) writes what it can and returns how much (0 on would
 * block or failure: the bytes then wait on out as usual). */
typedef size_t (*ws_fanout_write_fn)(void *ud, const uint8_t *p, size_t n);

/* Frames this long or longer are offered to the writer (below it,
 * batching a round's messages in one write costs less). */
#define WS_FANOUT_DIRECT_MIN ((size_t)8 * 1024)

/* Queue the message on c: limit > 0 refuses it (WS_FAN_SLOW) while limit
 * bytes or more wait on c->out; own_max > 0 hands a message c would have
 * to compress alone and is longer than own_max back (WS_FAN_HELD), so the
 * caller can deflate it in slices.  write (may be NULL): shared frames of
 * at least WS_FANOUT_DIRECT_MIN bytes for a c whose out is idle are
 * written with it first (ws_conn_out_idle), only the rest is queued.  See
 * ws_fan_result. */
ws_fan_result ws_fanout_queue(ws_fanout *f, ws_conn *c, size_t limit,
                              size_t own_max, ws_fanout_write_fn write,
                              void *write_ud);

/* The message is done: forget it, and release frame buffers that one big
 * message grew (as ws_conn does with its own). */
void ws_fanout_end(ws_fanout *f);

#endif

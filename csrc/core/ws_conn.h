/*
 * ws_conn.h -- the sans-I/O WebSocket connection (RFC 6455 5-7), after the
 * opening handshake.
 *
 * Bytes in, events and bytes out: no sockets, no clock, no Lua.  The caller
 * reads from wherever it likes and feeds the bytes to ws_conn_recv, which
 * returns at most one event per call; frames to send are appended to
 * conn->out, which the caller writes wherever it likes and consumes.
 *
 * Receive rules enforced here (every violation fails the connection with the
 * RFC's close code; nothing from a bad frame reaches the caller):
 *   - masking: a server requires masked frames, a client refuses them (1002)
 *   - RSV bits not in cfg.rsv_allowed (1002); unknown opcodes (1002)
 *   - control frames: payload > 125 or FIN = 0 (1002)
 *   - fragmentation: a new data frame inside a fragmented message, or a
 *     continuation with nothing to continue (1002); control frames may come
 *     between fragments
 *   - malformed lengths (see ws_frame_header_decode) (1002)
 *   - a frame payload over cfg.max_frame, or a message over cfg.max_payload,
 *     is refused from its header, before any of it is stored (1009)
 *   - text is validated as UTF-8 while it arrives, across frames and reads,
 *     failing at the first bad byte (1007)
 *   - close frames: a 1-byte payload or a code not valid on the wire (1002),
 *     a reason that is not UTF-8 (1007)
 * When the connection fails, conn->failed is set, every later byte is
 * ignored, and a close frame with the code (and the error text as reason)
 * is queued on out unless one was already sent -- or, with
 * cfg.defer_fail_close, once the caller calls ws_conn_fail_close: a front
 * whose application has not yet taken the messages that came before the
 * failure lets it answer them first (data may be sent until then).
 *
 * Automatic replies: a ping is answered with a pong carrying its payload; a
 * close frame is answered by echoing its code (an empty close frame when it
 * had none), unless we already sent one.  Input after a close frame is
 * ignored.  Pongs are coalesced under backpressure (RFC 6455 5.5.3 allows
 * answering only the latest ping): while WS_PONG_BACKLOG bytes or more
 * wait on out, a ping's pong is held aside, replacing any held before it,
 * and queued once out drains below that (ws_conn_out_consume) or ahead of
 * the next frame queued.  A peer that reads gets a pong for every ping; one
 * that pings and never reads makes out hold at most WS_PONG_BACKLOG bytes
 * plus two pongs, not one pong per ping.
 *
 * Bounded work: a peer can make one small frame cost a lot of CPU by
 * compressing (a deflate bomb).  ws_conn_set_budget caps the bytes the
 * following calls may inflate; once it is spent, ws_conn_recv stops with
 * WS_EV_BUDGET and sets conn->paused, and the front serves its other
 * connections before giving this one a new budget.  Everything else a
 * call does is bounded by the input it is given.
 *
 * Memory: a message that is whole inside the caller's buffer is unmasked in
 * place and returned without a copy; one spread over frames or reads is
 * assembled in conn->msg, grown as bytes arrive (never sized from a header
 * alone).
 *
 * Extensions: cfg.rsv_allowed lets negotiated RSV bits through untouched.
 * permessage-deflate (RFC 7692) is cfg.deflate, a ws_deflate the caller
 * creates after the handshake and frees after ws_conn_free (ws_conn only
 * borrows it).  With it, RSV1 on the first frame of a data message marks
 * it compressed: its payload is inflated into conn->msg (never zero-copy),
 * text is validated after inflating, and max_payload bounds the inflated
 * size (1009, checked while inflating: a deflate bomb never allocates much
 * more than max_payload); corrupt data is 1007; RSV1 on a continuation or
 * control frame is 1002.  Sending, whole messages of at least the
 * threshold and every fragmented message go compressed with RSV1 on their
 * first frame; control frames never are.
 */
#ifndef MOONWS_WS_CONN_H
#define MOONWS_WS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws_buf.h"
#include "ws_frame.h"
#include "ws_proto.h"
#include "ws_utf8.h"

typedef enum ws_role { WS_ROLE_CLIENT = 0, WS_ROLE_SERVER = 1 } ws_role;

/* Room for an error message made at run time (sizes, zlib's words). */
#define WS_ERROR_TEXT_SIZE 128

/* Output waiting beyond which pongs coalesce (see above). */
#define WS_PONG_BACKLOG ((size_t)16 * 1024)

struct ws_deflate; /* ws_deflate.h */

typedef struct ws_conn_config {
  uint64_t max_payload; /* bytes per message; 0 = WS_DEFAULT_MAX_PAYLOAD */
  uint64_t max_frame;   /* bytes per data frame payload (control frames are
                           capped at 125); 0 = WS_DEFAULT_MAX_FRAME */
  uint8_t rsv_allowed;  /* RSV bits an extension negotiated; 0 without */
  bool defer_fail_close; /* a failure's close frame waits for
                            ws_conn_fail_close */
  struct ws_deflate *deflate; /* permessage-deflate agreed, or NULL;
                                 borrowed, not freed by ws_conn_free */
  ws_random_fn random;  /* mask source; NULL = ws_random_default */
  void *random_ud;
} ws_conn_config;

typedef enum ws_event_type {
  WS_EV_NONE = 0, /* all input consumed, no complete event yet */
  WS_EV_TEXT,     /* a complete, valid UTF-8 text message */
  WS_EV_BINARY,   /* a complete binary message */
  WS_EV_PING,     /* data = payload (a pong is already queued) */
  WS_EV_PONG,     /* data = payload */
  WS_EV_CLOSE,    /* code = peer's code or 1005; data = reason */
  WS_EV_ERROR,    /* code = close code sent; error; data = message text
                     naming what was wrong (also the close reason sent) */
  WS_EV_BUDGET    /* the budget (ws_conn_set_budget) is spent mid-message:
                     no event; the return value says what input was taken */
} ws_event_type;

typedef struct ws_event {
  ws_event_type type;
  const uint8_t *data; /* valid until the next call on this conn */
  size_t len;
  uint16_t code;
  enum ws_error error; /* WS_EV_ERROR: PROTOCOL, INVALID_DATA, TOO_BIG, NOMEM */
} ws_event;

/* What went through a connection, as plain integers: counting costs a few
 * additions per message and no allocation.  Data messages only (control
 * frames are not counted); "wire" bytes are frame payload as sent or
 * received, compressed when the message was. */
typedef struct ws_conn_counters {
  uint64_t messages_in;   /* data messages delivered */
  uint64_t bytes_in;      /* their payload bytes (after inflating) */
  uint64_t wire_bytes_in; /* data frame payload bytes taken */
  uint64_t inflated_in;   /* bytes inflating made, messages in progress or
                             refused included (a bomb's work) */
  uint64_t messages_out;  /* data messages queued */
  uint64_t bytes_out;     /* their payload bytes (before compressing) */
  uint64_t wire_bytes_out; /* data frame payload bytes queued */
  uint64_t compressed_in;  /* wire bytes of compressed messages taken ... */
  uint64_t deflated_out;   /* payload bytes of messages sent compressed,
                              before compressing ... */
  uint64_t deflated_wire_out; /* ... and after (their wire bytes) */
  uint64_t dropped_out;    /* published messages dropped for this receiver
                              while it was too slow (counted by ws_fanout) */
} ws_conn_counters;

typedef struct ws_conn {
  /* Read-only for callers. */
  ws_role role;
  bool close_sent;     /* a close frame is queued on out */
  bool close_received; /* the peer's close frame arrived */
  bool failed;         /* we failed the connection (WS_EV_ERROR given) */
  bool paused;         /* stopped for the budget (WS_EV_BUDGET): call
                          ws_conn_recv again, even with no input */
  ws_buf out;          /* bytes to send: write them, then
                          ws_conn_out_consume */
  ws_conn_counters counters;

  /* Private. */
  ws_conn_config cfg;
  ws_frame_header frame;  /* header of the frame being received */
  uint64_t frame_done;    /* payload bytes of it received so far */
  bool in_frame;          /* its header has been decoded */
  uint8_t hdr[WS_FRAME_HEADER_MAX];
  uint8_t hdr_len;        /* bytes of a header split across reads */
  uint8_t msg_opcode;     /* TEXT/BINARY of the fragmented message, or 0 */
  uint8_t send_opcode;    /* TEXT/BINARY of a fragmented send, or 0 */
  bool msg_compressed;    /* the message being received had RSV1 */
  bool send_compressed;   /* the fragmented send in progress is */
  ws_utf8 utf8;           /* validator of the text message in progress */
  ws_buf msg;             /* a message spread over frames or reads */
  size_t budget;          /* bytes the next calls may inflate */
  size_t premasked;       /* input bytes after the last taken that were
                             already unmasked (a compressed frame stopped
                             for the budget) */
  bool pong_held;         /* a pong waits in side->pong */
  uint16_t fail_code;     /* the failure's close code ... */
  const char *fail_why;   /* ... and text (static, or side->error_text) */
  struct ws_conn_side *side; /* what only unusual traffic needs, made on
                                first use: an idle connection is small */
} ws_conn;

/* The buffers of ws_conn that a connection needs only now and then. */
typedef struct ws_conn_side {
  uint8_t pong[WS_CONTROL_MAX]; /* the held pong's payload */
  uint8_t pong_len;
  uint8_t ctrl[WS_CONTROL_MAX]; /* a control frame split across reads
                                   (frame_done bytes of it so far) */
  char error_text[WS_ERROR_TEXT_SIZE]; /* error messages made at run time */
} ws_conn_side;

/* Set up a connection for role; cfg may be NULL for defaults. */
void ws_conn_init(ws_conn *c, ws_role role, const ws_conn_config *cfg);
/* Free its buffers (the struct itself is the caller's; cfg.deflate too). */
void ws_conn_free(ws_conn *c);

/* Attach the agreed permessage-deflate state (NULL detaches), as if given
 * in cfg at init: call it before any data frame is sent or received. */
void ws_conn_set_deflate(ws_conn *c, struct ws_deflate *d);

/* Consume bytes from data[0, len), which the call may modify (unmasking in
 * place).  Returns the number of bytes consumed and stops after the first
 * complete event, stored in *ev; ev->type == WS_EV_NONE means all len bytes
 * were consumed and no event is complete yet.  Call again with the rest.
 * WS_EV_ERROR counts all len bytes as consumed (later input is ignored), as
 * does every call after it or after WS_EV_CLOSE (returning WS_EV_NONE).
 * WS_EV_BUDGET: the budget ran out; the rest of data (from the returned
 * count on) must be passed again, unchanged, once the budget is renewed. */
size_t ws_conn_recv(ws_conn *c, uint8_t *data, size_t len, ws_event *ev);

/* With cfg.defer_fail_close, after WS_EV_ERROR: queue the failure's close
 * frame now.  WS_E_CLOSED when there is no failure or a close was sent. */
enum ws_error ws_conn_fail_close(ws_conn *c);

/* Let the following ws_conn_recv calls inflate at most n bytes in all
 * (SIZE_MAX, the default, is no bound).  Clears nothing else: a front
 * renews it once per round of its loop. */
void ws_conn_set_budget(ws_conn *c, size_t n);

/* n bytes of out (n <= its length) went to the peer: drop them, and queue
 * a held pong once out is below WS_PONG_BACKLOG. */
void ws_conn_out_consume(ws_conn *c, size_t n);

/* Direct reads: one copy fewer for big frames.  While c is inside an
 * uncompressed data frame whose payload has not all come, a front may read
 * from its transport straight into the message.  ws_conn_payload_room
 * gives the place and *room, its size: at most want, at most what the
 * frame has left, and at most what has come of the message so far plus
 * WS_DIRECT_SLACK (so memory still follows bytes received, never a
 * header's promise; a MiB arrives in three reads).  NULL when c is in no such frame (then read into a buffer and
 * ws_conn_recv it) or memory ran out (ws_conn_recv will say so).  After
 * reading n bytes (<= room) there, ws_conn_payload_commit unmasks and
 * checks them and sets *ev as ws_conn_recv would: the message when it is
 * complete, an error (1007) for invalid text, else WS_EV_NONE.  It returns
 * true while the frame's payload is still to come, so a read that filled
 * a room ending the frame says nothing of more input waiting. */
#define WS_DIRECT_SLACK ((size_t)256 * 1024)
uint8_t *ws_conn_payload_room(ws_conn *c, size_t want, size_t *room);
bool ws_conn_payload_commit(ws_conn *c, size_t n, ws_event *ev);

/* Direct writes: for a big message whose frame goes out unmasked and
 * uncompressed (ws_conn_plain_send says whether it would), a front may
 * write the payload from the caller's memory itself.  ws_conn_send_header
 * checks and queues as ws_conn_send does, but only the frame header; the
 * caller must then send data[0, len) right after out's bytes (a writev of
 * both), putting what the transport did not take on out before anything
 * else is queued. */
bool ws_conn_plain_send(const ws_conn *c, size_t len);
enum ws_error ws_conn_send_header(ws_conn *c, uint8_t opcode, size_t len);

/* Queue a whole message (TEXT or BINARY) or a control frame (PING, PONG;
 * payload <= 125 bytes) as one frame on out, masked if we are the client.
 * Text must already be valid UTF-8 (check with ws_utf8_valid).  With
 * cfg.deflate, a message ws_deflate_wants is compressed (RSV1 set).
 * Returns WS_E_NONE, WS_E_CLOSED (a close frame was sent: nothing may
 * follow it), WS_E_TOO_BIG (control payload > 125), WS_E_NOMEM (no memory,
 * or cfg.random failed to give a client its mask key; after one in a
 * compressed send, later messages go uncompressed), or WS_E_PROTOCOL for
 * misuse: a TEXT/BINARY message while a fragmented send is in progress, or
 * an opcode other than TEXT, BINARY, PING, PONG.  Nothing is queued unless
 * the result is WS_E_NONE. */
enum ws_error ws_conn_send(ws_conn *c, uint8_t opcode, const void *data,
                           size_t len);

/* Queue one fragment of a message sent in pieces: opcode (TEXT or BINARY) is
 * taken from the first fragment and ignored after; fin ends the message.
 * While one is in progress, control frames (ws_conn_send PING/PONG,
 * ws_conn_close) may go between fragments; whole messages may not.
 * With cfg.deflate (and compression not abandoned) the message is
 * compressed piece by piece, each flushed so the peer can inflate it.
 * Same results as ws_conn_send (WS_E_PROTOCOL: a first fragment whose
 * opcode is not TEXT or BINARY; WS_E_NOMEM in a compressed message leaves
 * it unfinishable: fail the connection). */
enum ws_error ws_conn_send_fragment(ws_conn *c, uint8_t opcode,
                                    const void *data, size_t len, bool fin);

/* Queue frames built elsewhere (ws_fanout: one message framed once for
 * many server connections): bytes[0, n) are whole unmasked frames of one
 * data message of payload_len bytes, wire_len of them frame payload on the
 * wire; compressed: they carry RSV1, made by a compressor of this
 * connection's shape that started afresh (ws_deflate_fresh).  A held pong
 * goes first.  sent > 0: the front already wrote bytes[0, sent) to the
 * peer itself, which it may only do while out is empty and no pong is
 * held (ws_conn_out_idle); the rest is queued.  WS_E_CLOSED after a close
 * frame, WS_E_PROTOCOL for a client (its frames are masked) or while a
 * fragmented send is in progress, WS_E_NOMEM; nothing is queued unless
 * WS_E_NONE. */
enum ws_error ws_conn_queue_frames(ws_conn *c, const uint8_t *bytes, size_t n,
                                   size_t sent, size_t payload_len,
                                   size_t wire_len, bool compressed);

/* Whether a front may write a data frame straight to the peer now: a
 * server connection with nothing queued, no pong held, no close sent and
 * no fragmented send in progress. */
bool ws_conn_out_idle(const ws_conn *c);

/* Queue a close frame: code 0 sends none (no status, seen as 1005; reason
 * ignored); else a code valid on the wire and a reason <= 123 bytes of
 * UTF-8 (the caller checks the UTF-8).  Returns WS_E_NONE, WS_E_CLOSED
 * (already sent), WS_E_NOMEM (as ws_conn_send), or, queueing nothing,
 * WS_E_PROTOCOL (code not valid on the wire) or WS_E_TOO_BIG (reason). */
enum ws_error ws_conn_close(ws_conn *c, unsigned code, const void *reason,
                            size_t reason_len);

#endif

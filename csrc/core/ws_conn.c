/* ws_conn.c -- the connection state machine (see ws_conn.h).
 *
 * A header is judged whole, before any payload is stored, so limits cost
 * nothing.  Payload bytes are touched at most once more than the socket
 * read: unmasked in place when the message is whole in the caller's buffer
 * (the common case), else unmasked while being copied into conn->msg.
 * Outgoing frames are written, header and masked payload, straight into
 * conn->out with one reservation; a compressed one is deflated straight
 * into conn->out too, then slid down to meet its header.
 * Compressed messages (permessage-deflate) are unmasked in place in the
 * caller's buffer and inflated from there into conn->msg. */
#include "ws_conn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_deflate.h"
#include "ws_mask.h"

/* conn->msg above this capacity is released between messages, so one big
 * message does not pin its memory; below it the buffer is reused and
 * steady traffic never allocates. */
#define MSG_KEEP ((size_t)64 * 1024)

static const char *const rsv_msg[3] = {
    "reserved bit RSV1 set without an extension",
    "reserved bit RSV2 set without an extension",
    "reserved bit RSV3 set without an extension",
};

static const char *const opcode_msg[16] = {
    [0x3] = "unknown opcode 0x3", [0x4] = "unknown opcode 0x4",
    [0x5] = "unknown opcode 0x5", [0x6] = "unknown opcode 0x6",
    [0x7] = "unknown opcode 0x7", [0xB] = "unknown opcode 0xB",
    [0xC] = "unknown opcode 0xC", [0xD] = "unknown opcode 0xD",
    [0xE] = "unknown opcode 0xE", [0xF] = "unknown opcode 0xF",
};

static const char msg_nomem[] = "out of memory";
static const char msg_random[] = "random source failed (no frame mask)";
static const char msg_bad_text[] = "invalid UTF-8 in text message";
static const char msg_cut_text[] = "text message ends inside a UTF-8 sequence";

/* A size for people: "2 MiB" or "64 KiB" when exact, else "1001 bytes".
 * out holds 32 bytes. */
static const char *size_text(char out[32], uint64_t n) {
  if (n && n % (1024 * 1024) == 0)
    snprintf(out, 32, "%llu MiB", (unsigned long long)(n >> 20));
  else if (n && n % 1024 == 0)
    snprintf(out, 32, "%llu KiB", (unsigned long long)(n >> 10));
  else
    snprintf(out, 32, "%llu bytes", (unsigned long long)n);
  return out;
}

void ws_conn_init(ws_conn *c, ws_role role, const ws_conn_config *cfg) {
  memset(c, 0, sizeof *c);
  c->role = role;
  if (cfg)
    c->cfg = *cfg;
  if (!c->cfg.max_payload)
    c->cfg.max_payload = WS_DEFAULT_MAX_PAYLOAD;
  if (!c->cfg.max_frame)
    c->cfg.max_frame = WS_DEFAULT_MAX_FRAME;
  if (!c->cfg.random)
    c->cfg.random = ws_random_default;
  c->budget = SIZE_MAX;
}

void ws_conn_free(ws_conn *c) {
  ws_buf_free(&c->msg);
  ws_buf_free(&c->out);
  free(c->side);
  c->side = NULL;
  c->pong_held = false;
}

/* c->side, made on first use; NULL when memory runs out. */
static ws_conn_side *conn_side(ws_conn *c) {
  if (!c->side)
    c->side = calloc(1, sizeof *c->side);
  return c->side;
}

/* A message made at run time, in side->error_text; fallback (static) when
 * there is no memory for it. */
static const char *error_text(ws_conn *c, const char *fallback,
                              const char *fmt, ...) {
  ws_conn_side *side = conn_side(c);
  if (!side)
    return fallback;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(side->error_text, sizeof side->error_text, fmt, ap);
  va_end(ap);
  return side->error_text;
}

void ws_conn_set_deflate(ws_conn *c, struct ws_deflate *d) {
  c->cfg.deflate = d;
}

/* Append one frame whose payload is a then b (the close code and reason).
 * Returns NULL, or why it failed (both mean WS_E_NOMEM to the caller). */
static const char *append_frame(ws_conn *c, bool fin, uint8_t op,
                                const void *a, size_t na, const void *b,
                                size_t nb) {
  bool masked = c->role == WS_ROLE_CLIENT;
  uint8_t key[4];
  if (nb > SIZE_MAX - na)
    return msg_nomem;
  size_t n = na + nb;
  size_t hs = ws_frame_header_size(masked, n);
  if (n > SIZE_MAX - hs)
    return msg_nomem;
  if (masked && c->cfg.random(c->cfg.random_ud, key, sizeof key) != 0)
    return msg_random;
  if (ws_buf_reserve(&c->out, hs + n) != 0)
    return msg_nomem;
  uint8_t *t = ws_buf_tail(&c->out);
  ws_frame_header_encode(t, fin, 0, op, masked ? key : NULL, n);
  t += hs;
  if (masked) {
    ws_mask_copy(t, a, na, key, 0);
    ws_mask_copy(t + na, b, nb, key, na);
  } else {
    if (na)
      memcpy(t, a, na);
    if (nb)
      memcpy(t + na, b, nb);
  }
  ws_buf_commit(&c->out, hs + n);
  return NULL;
}

/* Queue the held pong; it stays held if memory runs out. */
static const char *release_pong(ws_conn *c) {
  if (!c->pong_held)
    return NULL;
  const char *err = append_frame(c, true, WS_OP_PONG, c->side->pong,
                                 c->side->pong_len, NULL, 0);
  if (err)
    return err;
  c->pong_held = false;
  return NULL;
}

/* Every frame but a pong goes through here: a held pong goes first, so it
 * waits no longer than the next frame queued. */
static const char *queue_frame(ws_conn *c, bool fin, uint8_t op, const void *a,
                               size_t na, const void *b, size_t nb) {
  (void)release_pong(c);
  return append_frame(c, fin, op, a, na, b, nb);
}

void ws_conn_out_consume(ws_conn *c, size_t n) {
  ws_buf_consume(&c->out, n);
  if (c->pong_held && ws_buf_len(&c->out) < WS_PONG_BACKLOG)
    (void)release_pong(c);
}

void ws_conn_set_budget(ws_conn *c, size_t n) { c->budget = n; }

/* A data frame of len payload bytes (wire of them on the wire) is queued;
 * fin: it ends its message. */
static void count_sent(ws_conn *c, bool fin, size_t len, size_t wire) {
  c->counters.messages_out += fin;
  c->counters.bytes_out += len;
  c->counters.wire_bytes_out += wire;
}

/* Append one frame whose payload is data deflated: compressed straight
 * into out after room for the largest header, then slid down to meet the
 * real one (a few bytes' move; deflating costs far more). */
static enum ws_error queue_compressed(ws_conn *c, bool fin, uint8_t op,
                                      uint8_t rsv, const void *data,
                                      size_t len) {
  bool masked = c->role == WS_ROLE_CLIENT;
  uint8_t key[4];
  (void)release_pong(c);
  size_t n, at = ws_buf_len(&c->out);
  if (masked && c->cfg.random(c->cfg.random_ud, key, sizeof key) != 0)
    return WS_E_NOMEM;
  if (ws_buf_reserve(&c->out, WS_FRAME_HEADER_MAX) != 0)
    return WS_E_NOMEM;
  ws_buf_commit(&c->out, WS_FRAME_HEADER_MAX);
  enum ws_error e = ws_deflate_compress(c->cfg.deflate, data, len, fin,
                                        &c->out, &n);
  if (e != WS_E_NONE) {
    c->out.end -= WS_FRAME_HEADER_MAX;
    return e;
  }
  uint8_t *f = ws_buf_data(&c->out) + at;
  size_t hs = ws_frame_header_size(masked, n);
  memmove(f + hs, f + WS_FRAME_HEADER_MAX, n);
  ws_frame_header_encode(f, fin, rsv, op, masked ? key : NULL, n);
  if (masked)
    ws_mask_inplace(f + hs, n, key, 0);
  c->out.end -= WS_FRAME_HEADER_MAX - hs;
  count_sent(c, fin, len, n);
  c->counters.deflated_out += len;
  c->counters.deflated_wire_out += n;
  return WS_E_NONE;
}

static enum ws_error error_for_code(uint16_t code) {
  switch (code) {
  case WS_CLOSE_PROTOCOL_ERROR:
    return WS_E_PROTOCOL;
  case WS_CLOSE_INVALID_PAYLOAD:
    return WS_E_INVALID_DATA;
  case WS_CLOSE_MESSAGE_TOO_BIG:
    return WS_E_TOO_BIG;
  default:
    return WS_E_NOMEM;
  }
}

/* Queue the close frame of a failure (code, the error text as reason).
 * If even that cannot be queued (no memory), close_sent is still set so
 * nothing else is ever sent; the caller drops the connection. */
static void queue_fail_close(ws_conn *c) {
  size_t n = strlen(c->fail_why);
  uint8_t be[2] = {(uint8_t)(c->fail_code >> 8), (uint8_t)c->fail_code};
  (void)queue_frame(c, true, WS_OP_CLOSE, be, 2, c->fail_why,
                    n < WS_CLOSE_REASON_MAX ? n : WS_CLOSE_REASON_MAX);
  c->close_sent = true;
}

enum ws_error ws_conn_fail_close(ws_conn *c) {
  if (!c->failed || c->close_sent)
    return WS_E_CLOSED;
  queue_fail_close(c);
  return WS_E_NONE;
}

/* Fail the connection: every input byte counts as consumed, since all
 * later input is ignored anyway.  why is static text or error_text. */
static size_t conn_fail(ws_conn *c, ws_event *ev, size_t len, uint16_t code,
                        const char *why) {
  c->failed = true;
  c->fail_code = code;
  c->fail_why = why;
  if (!c->close_sent && !c->cfg.defer_fail_close)
    queue_fail_close(c);
  ws_buf_free(&c->msg);
  ev->type = WS_EV_ERROR;
  ev->code = code;
  ev->error = error_for_code(code);
  ev->data = (const uint8_t *)why;
  ev->len = strlen(why);
  return len;
}

/* Only a full header reaches here, so h[2] exists for the 64-bit form. */
static const char *length_msg(const uint8_t *h) {
  return (h[1] & 0x7F) == 127 && (h[2] & 0x80)
             ? "64-bit frame length with its top bit set"
             : "frame length not in its minimal form";
}

/* Why the header in c->frame is refused, with its close code, or NULL.
 * The order is the documented one.  max_frame/max_payload apply to data
 * frames; control frames are capped at 125 bytes already. */
static const char *header_check(ws_conn *c, uint16_t *code) {
  const ws_frame_header *h = &c->frame;
  bool deflate = c->cfg.deflate != NULL;
  uint8_t allowed = c->cfg.rsv_allowed | (deflate ? WS_RSV1 : 0);
  uint8_t bad = h->rsv & (uint8_t)~allowed;
  bool control = WS_OPCODE_IS_CONTROL(h->opcode);
  bool rsv1 = deflate && (h->rsv & WS_RSV1);
  *code = WS_CLOSE_PROTOCOL_ERROR;
  if (bad)
    return rsv_msg[bad & WS_RSV1 ? 0 : bad & WS_RSV2 ? 1 : 2];
  if (opcode_msg[h->opcode])
    return opcode_msg[h->opcode];
  /* RFC 7692 6: only a message's first frame says "compressed". */
  if (rsv1 && control)
    return "RSV1 set on a control frame";
  if (rsv1 && h->opcode == WS_OP_CONTINUATION)
    return "RSV1 set on a continuation frame";
  if (control && !h->fin)
    return "control frame fragmented";
  if (control && h->payload_len > WS_CONTROL_MAX)
    return "control frame payload over 125 bytes";
  if (h->masked != (c->role == WS_ROLE_SERVER))
    return h->masked ? "masked frame from server"
                     : "unmasked frame from client";
  if (control)
    return NULL;
  if (h->opcode == WS_OP_CONTINUATION && !c->msg_opcode)
    return "continuation frame without a message to continue";
  if (h->opcode != WS_OP_CONTINUATION && c->msg_opcode)
    return "new data frame inside a fragmented message";
  /* Size refusals say the sizes (they are also the close reason the peer
   * reads, well under 123 bytes). */
  *code = WS_CLOSE_MESSAGE_TOO_BIG;
  char got[32], limit[32];
  /* The message limit is named first: it is the one users set (max_frame
   * defaults to it).  A compressed message's size is known only while it
   * is inflated. */
  bool compressed = rsv1 || (h->opcode == WS_OP_CONTINUATION && c->msg_compressed);
  uint64_t so_far = h->opcode == WS_OP_CONTINUATION ? ws_buf_len(&c->msg) : 0;
  if (!compressed && (so_far > c->cfg.max_payload ||
                      h->payload_len > c->cfg.max_payload - so_far)) {
    /* so_far <= max_payload and payload_len < 2^63: the sum fits. */
    return error_text(c, "payload exceeds max_payload",
                      "payload of %s exceeds max_payload %s",
                      size_text(got, so_far + h->payload_len),
                      size_text(limit, c->cfg.max_payload));
  }
  if (h->payload_len > c->cfg.max_frame)
    return error_text(c, "payload exceeds max_frame",
                      "payload of %s exceeds max_frame %s",
                      size_text(got, h->payload_len),
                      size_text(limit, c->cfg.max_frame));
  return NULL;
}

static size_t on_close(ws_conn *c, const uint8_t *p, size_t n, ws_event *ev,
                       size_t pos, size_t len) {
  unsigned code = WS_CLOSE_NO_STATUS_RECEIVED;
  const uint8_t *reason = p;
  size_t reason_len = 0;
  if (n == 1)
    return conn_fail(c, ev, len, WS_CLOSE_PROTOCOL_ERROR,
                     "close frame payload of 1 byte");
  if (n >= 2) {
    code = (unsigned)p[0] << 8 | p[1];
    if (!ws_close_code_valid_on_wire(code)) {
      return conn_fail(c, ev, len, WS_CLOSE_PROTOCOL_ERROR,
                       error_text(c, "invalid close code",
                                  "invalid close code %u", code));
    }
    reason = p + 2;
    reason_len = n - 2;
    if (!ws_utf8_valid(reason, reason_len))
      return conn_fail(c, ev, len, WS_CLOSE_INVALID_PAYLOAD,
                       "invalid UTF-8 in close reason");
  }
  if (!c->close_sent) {
    /* The answer echoes code and reason, as Node's ws and Python's
     * websockets do: the side that started the close then reads its own
     * reason in onclose, which is what a browser page sees from them. */
    uint8_t be[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    const char *err = queue_frame(c, true, WS_OP_CLOSE, be, n ? 2 : 0, reason,
                                  reason_len);
    if (err)
      return conn_fail(c, ev, len, WS_CLOSE_INTERNAL_ERROR, err);
    c->close_sent = true;
  }
  c->close_received = true;
  ws_buf_free(&c->msg); /* a fragmented message cut by the close is dropped */
  ev->type = WS_EV_CLOSE;
  ev->code = (uint16_t)code;
  ev->data = reason;
  ev->len = reason_len;
  return pos;
}

/* A complete control frame: p[0, n) is its unmasked payload. */
static size_t on_control(ws_conn *c, const uint8_t *p, size_t n, ws_event *ev,
                         size_t pos, size_t len) {
  if (c->frame.opcode == WS_OP_CLOSE)
    return on_close(c, p, n, ev, pos, len);
  if (c->frame.opcode == WS_OP_PING) {
    /* RFC 6455 5.5.2: answer unless a close was *received* (we ignore all
     * input after one).  Our own close frame does not excuse us: 5.5.1
     * forbids only data frames after it, and the peer may still be
     * pinging before it reads our close.  5.5.3: while the peer leaves
     * WS_PONG_BACKLOG bytes unread, this pong replaces any held and waits. */
    ws_conn_side *side = conn_side(c);
    if (!side)
      return conn_fail(c, ev, len, WS_CLOSE_INTERNAL_ERROR, msg_nomem);
    if (n)
      memcpy(side->pong, p, n);
    side->pong_len = (uint8_t)n;
    c->pong_held = true;
    if (ws_buf_len(&c->out) < WS_PONG_BACKLOG) {
      const char *err = release_pong(c);
      if (err)
        return conn_fail(c, ev, len, WS_CLOSE_INTERNAL_ERROR, err);
    }
    ev->type = WS_EV_PING;
  } else {
    ev->type = WS_EV_PONG;
  }
  ev->data = p;
  ev->len = n;
  return pos;
}

/* A data message is complete: count it and hand it out. */
static size_t deliver(ws_conn *c, ws_event *ev, bool text, const uint8_t *data,
                      size_t n, size_t ret) {
  ev->type = text ? WS_EV_TEXT : WS_EV_BINARY;
  ev->data = data;
  ev->len = n;
  c->counters.messages_in++;
  c->counters.bytes_in += n;
  return ret;
}

/* The message assembled in msg is complete. */
static size_t message_done(ws_conn *c, ws_event *ev, bool text, size_t pos,
                           size_t len) {
  if (text && !ws_utf8_complete(&c->utf8))
    return conn_fail(c, ev, len, WS_CLOSE_INVALID_PAYLOAD, msg_cut_text);
  c->msg_opcode = 0;
  return deliver(c, ev, text,
                 c->msg.base ? ws_buf_data(&c->msg) : (const uint8_t *)"",
                 ws_buf_len(&c->msg), pos);
}

/* Inflating failed: 1009, 1007 (zlib's words) or 1011. */
static size_t inflate_fail(ws_conn *c, ws_event *ev, size_t len,
                           enum ws_error e, const char *why) {
  if (e == WS_E_TOO_BIG) {
    char limit[32];
    return conn_fail(c, ev, len, WS_CLOSE_MESSAGE_TOO_BIG,
                     error_text(c, "payload exceeds max_payload once decompressed",
                                "payload exceeds max_payload %s once decompressed",
                                size_text(limit, c->cfg.max_payload)));
  }
  if (e != WS_E_INVALID_DATA)
    return conn_fail(c, ev, len, WS_CLOSE_INTERNAL_ERROR, msg_nomem);
  return conn_fail(c, ev, len, WS_CLOSE_INVALID_PAYLOAD,
                   error_text(c, "invalid compressed data",
                              "invalid compressed data: %s", why ? why : "corrupt"));
}

/* ---- ws_conn_recv, one phase per function ----
 * A phase takes the input from in->pos and either hands the call its
 * result (returns true, *ret set) or has advanced and lets the loop go on
 * with the next frame (returns false). */

typedef struct recv_in {
  uint8_t *data;
  size_t len, pos;
  ws_event *ev;
} recv_in;

/* Decode and judge the next frame header (a part of it may be kept from
 * earlier calls); on success the frame is entered. */
static bool recv_header(ws_conn *c, recv_in *in, size_t *ret) {
  int r;
  if (c->hdr_len == 0) {
    r = ws_frame_header_decode(in->data + in->pos, in->len - in->pos, &c->frame);
    if (r == WS_INCOMPLETE) { /* fewer than 14 bytes left */
      memcpy(c->hdr, in->data + in->pos, in->len - in->pos);
      c->hdr_len = (uint8_t)(in->len - in->pos);
      *ret = in->len;
      return true;
    }
    if (r == WS_ERROR) {
      *ret = conn_fail(c, in->ev, in->len, WS_CLOSE_PROTOCOL_ERROR,
                       length_msg(in->data + in->pos));
      return true;
    }
    in->pos += (size_t)r;
  } else {
    size_t take = WS_FRAME_HEADER_MAX - c->hdr_len;
    if (take > in->len - in->pos)
      take = in->len - in->pos;
    memcpy(c->hdr + c->hdr_len, in->data + in->pos, take);
    r = ws_frame_header_decode(c->hdr, c->hdr_len + take, &c->frame);
    if (r == WS_INCOMPLETE) { /* took all input */
      c->hdr_len = (uint8_t)(c->hdr_len + take);
      *ret = in->len;
      return true;
    }
    if (r == WS_ERROR) {
      *ret = conn_fail(c, in->ev, in->len, WS_CLOSE_PROTOCOL_ERROR,
                       length_msg(c->hdr));
      return true;
    }
    in->pos += (size_t)r - c->hdr_len; /* r > hdr_len: it was incomplete */
    c->hdr_len = 0;
  }
  uint16_t code;
  const char *why = header_check(c, &code);
  if (why) {
    *ret = conn_fail(c, in->ev, in->len, code, why);
    return true;
  }
  c->in_frame = true;
  c->frame_done = 0;
  if (c->frame.opcode == WS_OP_TEXT || c->frame.opcode == WS_OP_BINARY) {
    ws_utf8_init(&c->utf8);
    c->msg_compressed = c->cfg.deflate != NULL && (c->frame.rsv & WS_RSV1) != 0;
    if (!c->frame.fin)
      c->msg_opcode = c->frame.opcode;
  }
  return false;
}

/* A control frame: whole in the input (unmasked in place), or gathered in
 * ctrl across calls. */
static size_t recv_control(ws_conn *c, recv_in *in) {
  const ws_frame_header *h = &c->frame;
  uint64_t left = h->payload_len - c->frame_done;
  size_t avail = in->len - in->pos;
  const uint8_t *p;
  if (c->frame_done == 0 && avail >= left) {
    uint8_t *q = in->data + in->pos;
    if (h->masked)
      ws_mask_inplace(q, (size_t)left, h->mask, 0);
    p = q;
    in->pos += (size_t)left;
  } else {
    size_t take = avail < left ? avail : (size_t)left;
    ws_conn_side *side = conn_side(c);
    if (!side)
      return conn_fail(c, in->ev, in->len, WS_CLOSE_INTERNAL_ERROR, msg_nomem);
    uint8_t *dst = side->ctrl + c->frame_done;
    if (h->masked)
      ws_mask_copy(dst, in->data + in->pos, take, h->mask, (size_t)c->frame_done);
    else
      memcpy(dst, in->data + in->pos, take);
    c->frame_done += take;
    in->pos += take;
    if (c->frame_done < h->payload_len)
      return in->len;
    p = side->ctrl;
  }
  c->in_frame = false;
  return on_control(c, p, (size_t)h->payload_len, in->ev, in->pos, in->len);
}

/* A compressed data frame: unmask in place (but what a call stopped by
 * the budget already did), inflate into msg within the budget, validate
 * what came out. */
static bool recv_compressed(ws_conn *c, recv_in *in, bool text, size_t *ret) {
  const ws_frame_header *h = &c->frame;
  uint64_t left = h->payload_len - c->frame_done;
  size_t avail = in->len - in->pos;
  size_t take = avail < left ? avail : (size_t)left;
  uint8_t *q = take ? in->data + in->pos : NULL;
  size_t pre = c->premasked < take ? c->premasked : take;
  if (h->masked && take > pre)
    ws_mask_inplace(q + pre, take - pre, h->mask,
                    (size_t)((c->frame_done + pre) & 3));
  ws_inflate_step step = {
      .in = q,
      .len = take,
      .fin = h->fin && c->frame_done + take == h->payload_len,
      .budget = c->budget,
  };
  size_t before = ws_buf_len(&c->msg);
  const char *why = NULL;
  enum ws_error e = ws_deflate_inflate(c->cfg.deflate, &step, &c->msg,
                                       c->cfg.max_payload, &why);
  if (c->budget != SIZE_MAX)
    c->budget = step.budget;
  c->premasked = take - step.used;
  c->frame_done += step.used;
  in->pos += step.used;
  c->counters.wire_bytes_in += step.used;
  c->counters.compressed_in += step.used;
  /* Before reporting the size limit, check the text inflated up to it:
   * read whole, a message both too big and bad early would otherwise get
   * 1009, and read in pieces 1007.  zlib yields the same bytes up to the
   * limit either way, so now the verdict does not depend on the split.
   * (Corrupt data is reported as such: its output is garbage.) */
  size_t got = ws_buf_len(&c->msg) - before;
  c->counters.inflated_in += got;
  if (text && got && (e == WS_E_NONE || e == WS_E_TOO_BIG) &&
      ws_utf8_feed(&c->utf8, ws_buf_data(&c->msg) + before, got) != 0) {
    *ret = conn_fail(c, in->ev, in->len, WS_CLOSE_INVALID_PAYLOAD, msg_bad_text);
    return true;
  }
  if (e != WS_E_NONE) {
    *ret = inflate_fail(c, in->ev, in->len, e, why);
    return true;
  }
  if (!step.done) {
    c->paused = true;
    in->ev->type = WS_EV_BUDGET;
    *ret = in->pos;
    return true;
  }
  if (c->frame_done < h->payload_len) {
    *ret = in->len;
    return true;
  }
  c->in_frame = false;
  if (!h->fin)
    return false;
  c->msg_compressed = false;
  *ret = message_done(c, in->ev, text, in->pos, in->len);
  return true;
}

/* A whole message in one frame, all of it in the caller's buffer: unmasked
 * and checked in place, handed out without a copy.  (Inline: recv_small,
 * the most common frame's way, ends here too.) */
static inline size_t recv_whole(ws_conn *c, recv_in *in, bool text) {
  const ws_frame_header *h = &c->frame;
  uint8_t *q = in->data + in->pos;
  size_t n = (size_t)h->payload_len;
  if (h->masked)
    ws_mask_inplace(q, n, h->mask, 0);
  if (text && !ws_utf8_valid(q, n)) { /* which way it is bad: */
    ws_utf8_init(&c->utf8);
    bool bad = ws_utf8_feed(&c->utf8, q, n) != 0;
    return conn_fail(c, in->ev, in->len, WS_CLOSE_INVALID_PAYLOAD,
                     bad ? msg_bad_text : msg_cut_text);
  }
  c->in_frame = false;
  c->counters.wire_bytes_in += n;
  return deliver(c, in->ev, text, q, n, in->pos + n);
}

/* The rest: a piece of a message spread over frames or reads, unmasked
 * while copied into msg and checked as it comes. */
static bool recv_buffered(ws_conn *c, recv_in *in, bool text, size_t *ret) {
  const ws_frame_header *h = &c->frame;
  uint64_t left = h->payload_len - c->frame_done;
  size_t avail = in->len - in->pos;
  size_t take = avail < left ? avail : (size_t)left;
  if (take) {
    if (ws_buf_reserve(&c->msg, take) != 0) {
      *ret = conn_fail(c, in->ev, in->len, WS_CLOSE_INTERNAL_ERROR, msg_nomem);
      return true;
    }
    uint8_t *dst = ws_buf_tail(&c->msg);
    if (h->masked)
      ws_mask_copy(dst, in->data + in->pos, take, h->mask,
                   (size_t)(c->frame_done & 3));
    else
      memcpy(dst, in->data + in->pos, take);
    if (text && ws_utf8_feed(&c->utf8, dst, take) != 0) {
      *ret = conn_fail(c, in->ev, in->len, WS_CLOSE_INVALID_PAYLOAD, msg_bad_text);
      return true;
    }
    ws_buf_commit(&c->msg, take);
    c->frame_done += take;
    c->counters.wire_bytes_in += take;
    in->pos += take;
  }
  if (c->frame_done < h->payload_len) {
    *ret = in->len;
    return true;
  }
  c->in_frame = false;
  if (!h->fin)
    return false;
  *ret = message_done(c, in->ev, text, in->pos, in->len);
  return true;
}

/* The most common frame, taken without the general phases: a client's
 * unfragmented text or binary message of up to 125 bytes, header and
 * payload whole in the input, arriving between messages.  Such a header
 * has no reserved bit, a data opcode, FIN, the client's mask and a 7-bit
 * length, so header_check accepts it whenever max_frame and max_payload
 * allow its length (checked here too); its header is entered without
 * decoding and recv_whole takes it.  Anything else goes the general way:
 * false, without touching anything. */
static bool recv_small(ws_conn *c, recv_in *in, size_t *ret) {
  const uint8_t *h = in->data + in->pos;
  size_t avail = in->len - in->pos;
  if (c->role != WS_ROLE_SERVER || c->in_frame || c->hdr_len ||
      c->msg_opcode || avail < 6 || (h[0] != (0x80 | WS_OP_TEXT) &&
                                     h[0] != (0x80 | WS_OP_BINARY)) ||
      (h[1] & 0x80) == 0)
    return false;
  size_t n = h[1] & 0x7F;
  if (n > 125 || avail - 6 < n || n > c->cfg.max_frame ||
      n > c->cfg.max_payload)
    return false;
  /* What recv_header would have entered, for recv_whole to take. */
  ws_frame_header *f = &c->frame;
  f->payload_len = n;
  memcpy(f->mask, h + 2, 4);
  f->opcode = h[0] & 0x0F;
  f->rsv = 0;
  f->fin = f->masked = true;
  c->msg_compressed = false;
  in->pos += 6;
  *ret = recv_whole(c, in, f->opcode == WS_OP_TEXT);
  return true;
}

size_t ws_conn_recv(ws_conn *c, uint8_t *data, size_t len, ws_event *ev) {
  memset(ev, 0, sizeof *ev);
  if (c->failed || c->close_received || (len == 0 && !c->paused))
    return len;
  c->paused = false;
  /* The last event's data may be in msg; it is dead now. */
  if (!c->msg_opcode &&
      !(c->in_frame && !WS_OPCODE_IS_CONTROL(c->frame.opcode))) {
    ws_buf_clear(&c->msg);
    if (c->msg.cap > MSG_KEEP)
      ws_buf_trim(&c->msg, 0);
  }
  recv_in in = {data, len, 0, ev};
  size_t ret;
  if (recv_small(c, &in, &ret))
    return ret;
  for (;;) {
    if (!c->in_frame && recv_header(c, &in, &ret))
      return ret;
    const ws_frame_header *h = &c->frame;
    if (WS_OPCODE_IS_CONTROL(h->opcode))
      return recv_control(c, &in);
    bool text = (h->opcode == WS_OP_CONTINUATION ? c->msg_opcode
                                                 : h->opcode) == WS_OP_TEXT;
    if (c->msg_compressed) {
      if (recv_compressed(c, &in, text, &ret))
        return ret;
    } else if (h->fin && !c->msg_opcode && c->frame_done == 0 &&
               in.len - in.pos >= h->payload_len) {
      return recv_whole(c, &in, text);
    } else if (recv_buffered(c, &in, text, &ret)) {
      return ret;
    }
  }
}

uint8_t *ws_conn_payload_room(ws_conn *c, size_t want, size_t *room) {
  const ws_frame_header *h = &c->frame;
  if (c->failed || c->close_received || !c->in_frame || c->hdr_len ||
      WS_OPCODE_IS_CONTROL(h->opcode) || c->msg_compressed ||
      c->frame_done >= h->payload_len)
    return NULL;
  uint64_t left = h->payload_len - c->frame_done;
  size_t grow = ws_buf_len(&c->msg) + WS_DIRECT_SLACK;
  if (want > left)
    want = (size_t)left;
  if (want > grow)
    want = grow;
  if (want == 0 || ws_buf_reserve(&c->msg, want) != 0)
    return NULL;
  *room = want;
  return ws_buf_tail(&c->msg);
}

bool ws_conn_payload_commit(ws_conn *c, size_t n, ws_event *ev) {
  const ws_frame_header *h = &c->frame;
  bool text = (h->opcode == WS_OP_CONTINUATION ? c->msg_opcode : h->opcode) ==
              WS_OP_TEXT;
  uint8_t *p = ws_buf_tail(&c->msg);
  memset(ev, 0, sizeof *ev);
  if (h->masked)
    ws_mask_inplace(p, n, h->mask, (size_t)(c->frame_done & 3));
  if (text && ws_utf8_feed(&c->utf8, p, n) != 0) {
    conn_fail(c, ev, 0, WS_CLOSE_INVALID_PAYLOAD, msg_bad_text);
    return false;
  }
  ws_buf_commit(&c->msg, n);
  c->frame_done += n;
  c->counters.wire_bytes_in += n;
  if (c->frame_done < h->payload_len)
    return true;
  c->in_frame = false;
  if (h->fin)
    message_done(c, ev, text, 0, 0);
  return false;
}

bool ws_conn_plain_send(const ws_conn *c, size_t len) {
  return c->role == WS_ROLE_SERVER && !ws_deflate_wants(c->cfg.deflate, len);
}

enum ws_error ws_conn_send_header(ws_conn *c, uint8_t opcode, size_t len) {
  if (c->close_sent)
    return WS_E_CLOSED;
  if ((opcode != WS_OP_TEXT && opcode != WS_OP_BINARY) || c->send_opcode ||
      !ws_conn_plain_send(c, len))
    return WS_E_PROTOCOL;
  (void)release_pong(c);
  size_t hs = ws_frame_header_size(false, len);
  if (ws_buf_reserve(&c->out, hs) != 0)
    return WS_E_NOMEM;
  ws_frame_header_encode(ws_buf_tail(&c->out), true, 0, opcode, NULL, len);
  ws_buf_commit(&c->out, hs);
  count_sent(c, true, len, len);
  return WS_E_NONE;
}

enum ws_error ws_conn_send(ws_conn *c, uint8_t opcode, const void *data,
                           size_t len) {
  if (c->close_sent)
    return WS_E_CLOSED;
  switch (opcode) {
  case WS_OP_TEXT:
  case WS_OP_BINARY:
    if (c->send_opcode)
      return WS_E_PROTOCOL;
    if (c->cfg.deflate && ws_deflate_wants(c->cfg.deflate, len))
      return queue_compressed(c, true, opcode, WS_RSV1, data, len);
    if (c->role == WS_ROLE_SERVER && !c->pong_held && len < 126 &&
        ws_buf_room(&c->out) >= 2 + len) {
      /* The common frame, written in place: unmasked, a 2-byte header,
       * room already there, no pong waiting to go first. */
      uint8_t *t = ws_buf_tail(&c->out);
      size_t hs = ws_frame_header_encode(t, true, 0, opcode, NULL, len);
      memcpy(t + hs, data, len);
      ws_buf_commit(&c->out, hs + len);
    } else if (queue_frame(c, true, opcode, data, len, NULL, 0)) {
      return WS_E_NOMEM;
    }
    count_sent(c, true, len, len);
    return WS_E_NONE;
  case WS_OP_PING:
  case WS_OP_PONG:
    if (len > WS_CONTROL_MAX)
      return WS_E_TOO_BIG;
    break;
  default:
    return WS_E_PROTOCOL;
  }
  return queue_frame(c, true, opcode, data, len, NULL, 0) ? WS_E_NOMEM
                                                          : WS_E_NONE;
}

enum ws_error ws_conn_send_fragment(ws_conn *c, uint8_t opcode,
                                    const void *data, size_t len, bool fin) {
  if (c->close_sent)
    return WS_E_CLOSED;
  uint8_t first = c->send_opcode ? c->send_opcode : opcode;
  if (first != WS_OP_TEXT && first != WS_OP_BINARY)
    return WS_E_PROTOCOL;
  uint8_t wire = c->send_opcode ? WS_OP_CONTINUATION : opcode;
  /* Fragmented messages are large or streamed: compressed whenever
   * compression works, decided at the first piece. */
  bool z = c->send_opcode ? c->send_compressed
                          : ws_deflate_wants(c->cfg.deflate, SIZE_MAX);
  if (z) {
    enum ws_error e = queue_compressed(c, fin, wire,
                                       c->send_opcode ? 0 : WS_RSV1, data, len);
    if (e != WS_E_NONE)
      return e;
  } else if (queue_frame(c, fin, wire, data, len, NULL, 0)) {
    return WS_E_NOMEM;
  } else {
    count_sent(c, fin, len, len);
  }
  c->send_compressed = z && !fin;
  c->send_opcode = fin ? 0 : first;
  return WS_E_NONE;
}

bool ws_conn_out_idle(const ws_conn *c) {
  return c->role == WS_ROLE_SERVER && ws_buf_len(&c->out) == 0 &&
         !c->pong_held && !c->close_sent && !c->send_opcode;
}

enum ws_error ws_conn_queue_frames(ws_conn *c, const uint8_t *bytes, size_t n,
                                   size_t sent, size_t payload_len,
                                   size_t wire_len, bool compressed) {
  if (c->close_sent)
    return WS_E_CLOSED;
  if (c->role != WS_ROLE_SERVER || c->send_opcode || sent > n)
    return WS_E_PROTOCOL;
  (void)release_pong(c);
  if (ws_buf_append(&c->out, bytes + sent, n - sent) != 0)
    return WS_E_NOMEM;
  count_sent(c, true, payload_len, wire_len);
  if (compressed) {
    c->counters.deflated_out += payload_len;
    c->counters.deflated_wire_out += wire_len;
  }
  return WS_E_NONE;
}

enum ws_error ws_conn_close(ws_conn *c, unsigned code, const void *reason,
                            size_t reason_len) {
  if (c->close_sent)
    return WS_E_CLOSED;
  const char *err;
  if (code == 0) {
    err = queue_frame(c, true, WS_OP_CLOSE, NULL, 0, NULL, 0);
  } else {
    if (!ws_close_code_valid_on_wire(code))
      return WS_E_PROTOCOL;
    if (reason_len > WS_CLOSE_REASON_MAX)
      return WS_E_TOO_BIG;
    uint8_t be[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    err = queue_frame(c, true, WS_OP_CLOSE, be, 2, reason, reason_len);
  }
  if (err)
    return WS_E_NOMEM;
  c->close_sent = true;
  return WS_E_NONE;
}

/* ws_fanout.c -- see ws_fanout.h. */
#include "ws_fanout.h"

#include <string.h>

/* Frame buffers above this capacity are released after their message, so
 * one big publish does not pin its memory (ws_conn keeps 64 KiB too). */
#define FANOUT_KEEP ((size_t)64 * 1024)

void ws_fanout_init(ws_fanout *f, size_t fragment_size) {
  memset(f, 0, sizeof *f);
  f->fragment_size = fragment_size;
}

void ws_fanout_free(ws_fanout *f) {
  ws_buf_free(&f->plain);
  ws_buf_free(&f->scratch);
  for (int i = 0; i < f->nz; i++) {
    ws_deflate_free(f->zs[i].z);
    ws_buf_free(&f->zs[i].frames);
  }
  f->nz = 0;
}

void ws_fanout_begin(ws_fanout *f, uint8_t opcode, const void *data,
                     size_t len) {
  f->opcode = opcode;
  f->data = data;
  f->len = len;
  f->plain_built = false;
  ws_buf_clear(&f->plain);
  for (int i = 0; i < f->nz; i++) {
    f->zs[i].built = 0;
    ws_buf_clear(&f->zs[i].frames);
  }
  f->counters.messages++;
}

void ws_fanout_end(ws_fanout *f) {
  f->data = NULL;
  ws_buf_clear(&f->scratch);
  ws_buf_trim(&f->scratch, FANOUT_KEEP);
  ws_buf_clear(&f->plain);
  ws_buf_trim(&f->plain, FANOUT_KEEP);
  for (int i = 0; i < f->nz; i++) {
    ws_buf_clear(&f->zs[i].frames);
    ws_buf_trim(&f->zs[i].frames, FANOUT_KEEP);
  }
}

/* Append p[0, n) to out as unmasked frames of at most size payload bytes
 * (size 0: one frame); rsv goes on the first frame only (RFC 7692 6). */
static int build_frames(ws_buf *out, uint8_t op, uint8_t rsv, const uint8_t *p,
                        size_t n, size_t size) {
  size_t pos = 0;
  do {
    size_t take = size && n - pos > size ? size : n - pos;
    bool first = pos == 0, fin = pos + take == n;
    size_t hs = ws_frame_header_size(false, take);
    if (take > SIZE_MAX - hs || ws_buf_reserve(out, hs + take) != 0)
      return -1;
    uint8_t *t = ws_buf_tail(out);
    ws_frame_header_encode(t, fin, first ? rsv : 0,
                           first ? op : WS_OP_CONTINUATION, NULL, take);
    if (take)
      memcpy(t + hs, p + pos, take);
    ws_buf_commit(out, hs + take);
    pos += take;
  } while (pos < n);
  return 0;
}

/* The variant of shape s for this message, built on first need; NULL
 * when it cannot be (no room for another shape, no memory). */
static ws_fanout_variant *shared_variant(ws_fanout *f,
                                         const ws_deflate_shape *s) {
  ws_fanout_variant *v = NULL;
  for (int i = 0; i < f->nz; i++)
    if (memcmp(&f->zs[i].shape, s, sizeof *s) == 0)
      v = &f->zs[i];
  if (!v) {
    if (f->nz == WS_FANOUT_SHAPES)
      return NULL;
    ws_deflate *z = ws_deflate_new_shared(s);
    if (!z)
      return NULL;
    v = &f->zs[f->nz++];
    memset(v, 0, sizeof *v);
    v->shape = *s;
    v->z = z;
  }
  if (v->built == 0) {
    size_t n;
    ws_buf_clear(&f->scratch);
    v->built = -1;
    if (ws_deflate_compress(v->z, f->data, f->len, true, &f->scratch, &n) ==
            WS_E_NONE &&
        build_frames(&v->frames, f->opcode, WS_RSV1, ws_buf_data(&f->scratch), n,
                     f->fragment_size) == 0) {
      v->wire = n;
      v->built = 1;
      f->counters.shared_deflates++;
      f->counters.frames_built++;
    } else if (!ws_deflate_fresh(v->z, &(ws_deflate_shape){0})) {
      /* It lost its context (no memory mid-stream): a new one next time. */
      ws_deflate_free(v->z);
      v->z = ws_deflate_new_shared(s);
      if (!v->z) {
        ws_buf_free(&v->frames);
        *v = f->zs[--f->nz];
        return NULL;
      }
    }
  }
  return v->built == 1 ? v : NULL;
}

/* c compresses the message itself (its context carries over). */
static enum ws_error send_own(ws_fanout *f, ws_conn *c) {
  f->counters.own_deflates++;
  size_t size = f->fragment_size;
  if (!size || f->len <= size)
    return ws_conn_send(c, f->opcode, f->data, f->len);
  for (size_t pos = 0;; pos += size) {
    size_t n = f->len - pos < size ? f->len - pos : size;
    bool fin = n == f->len - pos;
    enum ws_error e = ws_conn_send_fragment(c, f->opcode, f->data + pos, n, fin);
    if (e != WS_E_NONE || fin)
      return e;
  }
}

/* Queue shared frames on c, written first with write when they are big
 * and nothing waits before them. */
static enum ws_error queue_shared(ws_conn *c, const ws_buf *frames,
                                  size_t payload_len, size_t wire,
                                  bool compressed, ws_fanout_write_fn write,
                                  void *ud) {
  const uint8_t *p = ws_buf_data(frames);
  size_t n = ws_buf_len(frames), sent = 0;
  if (write && n >= WS_FANOUT_DIRECT_MIN && ws_conn_out_idle(c)) {
    sent = write(ud, p, n);
    if (sent > n)
      sent = 0;
  }
  return ws_conn_queue_frames(c, p, n, sent, payload_len, wire, compressed);
}

ws_fan_result ws_fanout_queue(ws_fanout *f, ws_conn *c, size_t limit,
                              size_t own_max, ws_fanout_write_fn write,
                              void *write_ud) {
  if (c->close_sent)
    return WS_FAN_CLOSED;
  if (c->send_opcode)
    return WS_FAN_HELD;
  if (limit && ws_buf_len(&c->out) >= limit)
    return WS_FAN_SLOW;
  enum ws_error e;
  ws_deflate_shape shape;
  if (c->role != WS_ROLE_SERVER) {
    e = ws_conn_send(c, f->opcode, f->data, f->len); /* masked: its own */
  } else if (ws_deflate_wants(c->cfg.deflate, f->len)) {
    ws_fanout_variant *v = ws_deflate_fresh(c->cfg.deflate, &shape)
                               ? shared_variant(f, &shape)
                               : NULL;
    if (v) {
      e = queue_shared(c, &v->frames, f->len, v->wire, true, write, write_ud);
    } else if (own_max && f->len > own_max) {
      return WS_FAN_HELD;
    } else {
      e = send_own(f, c);
    }
  } else {
    if (!f->plain_built) {
      if (build_frames(&f->plain, f->opcode, 0, f->data, f->len,
                       f->fragment_size) != 0)
        return WS_FAN_NOMEM;
      f->plain_built = true;
      f->counters.frames_built++;
    }
    e = queue_shared(c, &f->plain, f->len, f->len, false, write, write_ud);
  }
  switch (e) {
  case WS_E_NONE:
    f->counters.deliveries++;
    return WS_FAN_QUEUED;
  case WS_E_CLOSED:
    return WS_FAN_CLOSED;
  case WS_E_PROTOCOL:
    return WS_FAN_HELD;
  default:
    return WS_FAN_NOMEM;
  }
}

/*
 * fuzz_common.h -- what the libFuzzer targets in csrc/fuzz share.
 *
 * The targets check invariants, not just survival: a broken one calls
 * FZ_CHECK, which names the file, line and condition and aborts (this is
 * the harness; library code never aborts on peer input).  Shared here:
 *   - fz_in, a reader that turns the first input bytes into choices
 *     (limits, split points, options) and yields 0 when the input runs out;
 *   - ref_utf8, a reference UTF-8 decoder written independently of
 *     ws_utf8.c: RFC 3629 by code-point arithmetic (a sequence prefix is
 *     bad as soon as no continuation can bring its code point into the
 *     range of its length, outside the surrogates), not by tables;
 *   - ref_close_code_ok, RFC 6455 7.4 plus the IANA registry, as listed in
 *     ws_proto.h;
 *   - fz_log, events copied out of ws_conn_recv for differential runs;
 *   - fz_feed, which drives a conn over one piece and checks the per-event
 *     rules of ws_conn.h; fz_check_out, which decodes what a conn queued,
 *     and fz_check_out_agrees, which matches that to the events;
 *   - fz_random, a repeatable mask source, so two runs queue equal bytes.
 * Everything is static inline: each target is one translation unit.
 * Built with -DFZ_TRACE (and fuzz_main.c), every event is printed.
 */
#ifndef MOONWS_FUZZ_COMMON_H
#define MOONWS_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_buf.h"
#include "ws_conn.h"
#include "ws_frame.h"
#include "ws_proto.h"

/* The libFuzzer entry point (defined by each target). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline _Noreturn void fz_fail(const char *file, int line,
                                     const char *what) {
  fprintf(stderr, "\nINVARIANT BROKEN at %s:%d: %s\n", file, line, what);
  fflush(stderr);
  abort();
}

#define FZ_CHECK(cond)                                                         \
  do {                                                                         \
    if (!(cond))                                                               \
      fz_fail(__FILE__, __LINE__, #cond);                                      \
  } while (0)

/* malloc for the harness: failing here is the harness's problem. */
static inline void *fz_alloc(size_t n) {
  void *p = malloc(n ? n : 1);
  FZ_CHECK(p != NULL);
  return p;
}

/* A heap copy of exactly n bytes, so ASan sees any read past its end. */
static inline uint8_t *fz_dup(const void *p, size_t n) {
  uint8_t *q = fz_alloc(n);
  if (n)
    memcpy(q, p, n);
  return q;
}

/* ---- input reader ---- */

typedef struct fz_in {
  const uint8_t *p;
  size_t n;
} fz_in;

static inline uint8_t fz_byte(fz_in *in) {
  if (!in->n)
    return 0;
  in->n--;
  return *in->p++;
}

/* ---- reference UTF-8 (RFC 3629) ---- */

enum { REF_UTF8_VALID, REF_UTF8_TRUNCATED, REF_UTF8_INVALID };

/* Can a sequence of len bytes whose first have bytes carry the payload
 * bits cp still decode to a scalar value of its length? */
static inline bool ref_utf8_completable(uint32_t cp, size_t have, size_t len) {
  static const uint32_t lo_of[5] = {0, 0, 0x80, 0x800, 0x10000};
  static const uint32_t hi_of[5] = {0, 0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
  unsigned free_bits = (unsigned)(6 * (len - have));
  uint32_t lo = cp << free_bits, hi = lo | ((1u << free_bits) - 1);
  if (lo < lo_of[len])
    lo = lo_of[len];
  if (hi > hi_of[len])
    hi = hi_of[len];
  return lo <= hi && !(lo >= 0xD800 && hi <= 0xDFFF);
}

/* Judge p[0, n): VALID, TRUNCATED (every byte could still be part of valid
 * text, but it ends inside a sequence; *bad = n) or INVALID (*bad = index
 * of the first byte after which no continuation is valid).  boundary, if
 * not NULL, has n + 1 entries and gets true at each index (up to the end
 * or the bad byte) where a character ends. */
static inline int ref_utf8(const uint8_t *p, size_t n, size_t *bad,
                           bool *boundary) {
  size_t i = 0, dummy;
  if (!bad)
    bad = &dummy;
  if (boundary)
    memset(boundary, 0, n + 1);
  for (;;) {
    if (boundary)
      boundary[i] = true;
    if (i == n)
      return REF_UTF8_VALID;
    uint8_t b = p[i];
    size_t len;
    uint32_t cp;
    if (b < 0x80) {
      i++;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2, cp = b & 0x1Fu;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, cp = b & 0x0Fu;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4, cp = b & 0x07u;
    } else {
      *bad = i;
      return REF_UTF8_INVALID;
    }
    for (size_t k = 1;; k++) { /* k bytes of the sequence are known */
      if (!ref_utf8_completable(cp, k, len)) {
        *bad = i + k - 1;
        return REF_UTF8_INVALID;
      }
      if (k == len)
        break;
      if (i + k == n) {
        *bad = n;
        return REF_UTF8_TRUNCATED;
      }
      uint8_t c = p[i + k];
      if ((c & 0xC0) != 0x80) {
        *bad = i + k;
        return REF_UTF8_INVALID;
      }
      cp = cp << 6 | (c & 0x3Fu);
    }
    i += len;
  }
}

static inline bool ref_utf8_valid(const uint8_t *p, size_t n) {
  return ref_utf8(p, n, NULL, NULL) == REF_UTF8_VALID;
}

/* Close codes allowed on the wire: RFC 6455 7.4.1 defined ones except
 * 1004-1006 and 1015, the IANA-registered 1012-1014, and 3000-4999. */
static inline bool ref_close_code_ok(unsigned code) {
  switch (code) {
  case 1000: case 1001: case 1002: case 1003:
  case 1007: case 1008: case 1009: case 1010: case 1011:
  case 1012: case 1013: case 1014:
    return true;
  default:
    return code >= 3000 && code < 5000;
  }
}

/* ---- repeatable mask source ---- */

static inline int fz_random(void *ud, uint8_t *out, size_t n) {
  uint32_t *s = ud;
  for (size_t i = 0; i < n; i++) {
    *s = *s * 1664525u + 1013904223u;
    out[i] = (uint8_t)(*s >> 24);
  }
  return 0;
}

/* ---- event log ---- */

typedef struct fz_event {
  ws_event_type type;
  uint16_t code;
  enum ws_error error;
  size_t len;
  uint8_t *data;
} fz_event;

typedef struct fz_log {
  fz_event *ev;
  size_t n, cap;
} fz_log;

static inline void fz_log_add(fz_log *l, const ws_event *ev) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 16;
    l->ev = realloc(l->ev, l->cap * sizeof *l->ev);
    FZ_CHECK(l->ev != NULL);
  }
  fz_event *e = &l->ev[l->n++];
  e->type = ev->type;
  e->code = ev->code;
  e->error = ev->error;
  e->len = ev->len;
  FZ_CHECK(ev->len == 0 || ev->data != NULL);
  e->data = fz_dup(ev->data, ev->len);
#ifdef FZ_TRACE /* -DFZ_TRACE with fuzz_main.c shows what seeds do */
  fprintf(stderr, "  event %d code %u len %zu: %.*s\n", e->type, e->code,
          e->len, (int)(e->len < 60 ? e->len : 60), (const char *)e->data);
#endif
}

/* Same events?  strict: also the same error words and code.  Not strict
 * (compressed messages): when a message has two faults, which is found
 * first may depend on where the reads end, so the error text may differ,
 * and so may the code if one is 1007 and the other 1009 (the inflated size
 * is checked while inflating, the UTF-8 of the output after each piece). */
static inline bool fz_log_equal(const fz_log *a, const fz_log *b, bool strict) {
  if (a->n != b->n)
    return false;
  for (size_t i = 0; i < a->n; i++) {
    const fz_event *x = &a->ev[i], *y = &b->ev[i];
    if (x->type != y->type)
      return false;
    if (x->type == WS_EV_ERROR && !strict) {
      /* The close code may not depend on where reads end; its text may
       * (corrupt deflate data whose output is also bad UTF-8). */
      if (x->code != y->code)
        return false;
      continue;
    }
    if (x->code != y->code || x->error != y->error)
      return false;
    if (x->len != y->len || (x->len && memcmp(x->data, y->data, x->len)))
      return false;
  }
  return true;
}

static inline void fz_log_free(fz_log *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->ev[i].data);
  free(l->ev);
  l->ev = NULL;
  l->n = l->cap = 0;
}

static inline void fz_log_dump(const char *name, const fz_log *l) {
  fprintf(stderr, "%s: %zu events\n", name, l->n);
  for (size_t i = 0; i < l->n; i++)
    fprintf(stderr, "  type %d code %u error %d len %zu\n", l->ev[i].type,
            l->ev[i].code, l->ev[i].error, l->ev[i].len);
}

/* ---- driving a conn ---- */

/* What a run of one conn has seen, and the rules it is held to. */
typedef struct fz_run {
  ws_conn *c;
  fz_log log;
  uint64_t max_payload;   /* effective limit of messages */
  size_t msg_cap_bound;   /* conn->msg.cap may never exceed this */
  bool done;              /* WS_EV_ERROR or WS_EV_CLOSE was given */
  bool allow_1011;        /* out of memory may happen (never in fuzzing) */
  size_t budget;          /* inflated bytes per call (0: no bound) */
} fz_run;

static inline enum ws_error fz_error_of(uint16_t code) {
  return code == 1002 ? WS_E_PROTOCOL
         : code == 1007 ? WS_E_INVALID_DATA
         : code == 1009 ? WS_E_TOO_BIG
                        : WS_E_NOMEM;
}

/* One event's rules (ws_conn.h). */
static inline void fz_check_event(fz_run *r, const ws_event *ev) {
  const ws_conn *c = r->c;
  FZ_CHECK(!r->done); /* nothing after ERROR or CLOSE */
  switch (ev->type) {
  case WS_EV_TEXT:
    FZ_CHECK(ref_utf8_valid(ev->data, ev->len));
    /* fall through */
  case WS_EV_BINARY:
    FZ_CHECK(ev->len <= r->max_payload);
    break;
  case WS_EV_PING:
  case WS_EV_PONG:
    FZ_CHECK(ev->len <= WS_CONTROL_MAX);
    break;
  case WS_EV_CLOSE:
    FZ_CHECK(c->close_received && c->close_sent && !c->failed);
    if (ev->code == WS_CLOSE_NO_STATUS_RECEIVED)
      FZ_CHECK(ev->len == 0);
    else
      FZ_CHECK(ref_close_code_ok(ev->code));
    FZ_CHECK(ev->len <= WS_CLOSE_REASON_MAX);
    FZ_CHECK(ref_utf8_valid(ev->data, ev->len));
    r->done = true;
    break;
  case WS_EV_ERROR:
    FZ_CHECK(ev->code == 1002 || ev->code == 1007 || ev->code == 1009 ||
             (ev->code == 1011 && r->allow_1011));
    FZ_CHECK(ev->error == fz_error_of(ev->code));
    FZ_CHECK(c->failed && c->close_sent);
    FZ_CHECK(ev->data != NULL && ev->len > 0);
    FZ_CHECK(memchr(ev->data, 0, ev->len) == NULL); /* a C string's text */
    r->done = true;
    break;
  default:
    FZ_CHECK(!"unknown event type");
  }
}

/* Feed piece[0, n) (the caller's copy; it may be modified) until it is
 * consumed, checking every call and logging every event.  With a budget,
 * each call gets it anew, and a call stopped by it (WS_EV_BUDGET) must
 * have made progress within it; work zlib still owes is done before the
 * next piece. */
static inline void fz_feed(fz_run *r, uint8_t *piece, size_t n) {
  size_t pos = 0;
  while (pos < n || r->c->paused) {
    ws_event ev;
    bool resumed = r->c->paused;
    size_t before = ws_buf_len(&r->c->msg);
    if (r->budget)
      ws_conn_set_budget(r->c, r->budget);
    size_t used = ws_conn_recv(r->c, piece + pos, n - pos, &ev);
    size_t after = ws_buf_len(&r->c->msg);
    FZ_CHECK(used <= n - pos);
    FZ_CHECK(r->c->msg.cap <= r->msg_cap_bound);
    FZ_CHECK(after <= r->max_payload);
    if (ev.type == WS_EV_BUDGET) {
      FZ_CHECK(r->budget && r->c->paused);
      FZ_CHECK(after >= before ? after - before <= r->budget
                               : after <= r->budget);
      FZ_CHECK(used > 0 || after > before);
      pos += used;
      continue;
    }
    FZ_CHECK(!r->c->paused);
    FZ_CHECK(used > 0 || resumed); /* progress: every event takes a byte */
    if (ev.type == WS_EV_NONE) {
      FZ_CHECK(used == n - pos); /* NONE: all consumed */
      FZ_CHECK(ev.len == 0);
      return;
    }
    if (ev.type == WS_EV_ERROR)
      FZ_CHECK(used == n - pos); /* ERROR: the rest is dropped */
    fz_check_event(r, &ev);
    fz_log_add(&r->log, &ev);
    pos += used;
  }
}

/* Feed a copy of p[0, n) in one piece. */
static inline void fz_feed_copy(fz_run *r, const uint8_t *p, size_t n) {
  if (!n)
    return;
  uint8_t *q = fz_dup(p, n);
  fz_feed(r, q, n);
  free(q);
}

/* Feed p[0, n) in pieces of the lengths in cuts[0, ncuts) (each its own
 * allocation; a length past the end is clipped), then the rest whole.
 * ncuts 0 feeds it byte by byte. */
static inline void fz_feed_cut(fz_run *r, const uint8_t *p, size_t n,
                               const uint8_t *cuts, size_t ncuts) {
  size_t at = 0;
  if (ncuts == 0) {
    for (; at < n; at++)
      fz_feed_copy(r, p + at, 1);
    return;
  }
  for (size_t i = 0; i < ncuts && at < n; i++) {
    size_t k = cuts[i] < n - at ? cuts[i] : n - at;
    fz_feed_copy(r, p + at, k);
    at += k;
  }
  fz_feed_copy(r, p + at, n - at);
}

/* What fz_check_out found. */
typedef struct fz_out_frame {
  uint8_t opcode;
  size_t start, end; /* offsets of the frame in out */
  size_t len;        /* payload */
  uint8_t payload[WS_CONTROL_MAX];
} fz_out_frame;

typedef struct fz_out_info {
  size_t n;            /* frames */
  fz_out_frame *f;     /* the caller frees it */
  bool close;          /* a close frame was queued (it is the last) */
  uint16_t close_code; /* its code, 1005 when it has no payload */
} fz_out_info;

static inline bool fz_same_payload(const fz_event *e, const uint8_t *p,
                                   size_t len) {
  return e->len == len && (len == 0 || memcmp(e->data, p, len) == 0);
}

/* Decode every frame a receiving conn queued on out: whole frames only,
 * masked exactly when the conn is a client, FIN, no RSV bits, only PONG
 * or one final CLOSE whose payload is empty or a wire-valid code and a
 * UTF-8 reason.  Which pings the pongs answer: fz_check_out_agrees. */
static inline void fz_check_out(const ws_buf *out, ws_role role,
                                fz_out_info *info) {
  const uint8_t *p = ws_buf_len(out) ? ws_buf_data(out) : NULL;
  size_t n = ws_buf_len(out), pos = 0;
  size_t cap = 0;
  memset(info, 0, sizeof *info);
  while (pos < n) {
    ws_frame_header h;
    int hs = ws_frame_header_decode(p + pos, n - pos, &h);
    FZ_CHECK(hs >= 2);
    FZ_CHECK(h.masked == (role == WS_ROLE_CLIENT));
    FZ_CHECK(h.fin && h.rsv == 0);
    FZ_CHECK(h.payload_len <= WS_CONTROL_MAX);
    FZ_CHECK(h.payload_len <= n - pos - (size_t)hs);
    FZ_CHECK(hs == (int)ws_frame_header_size(h.masked, h.payload_len));
    if (info->n == cap) {
      cap = cap ? 2 * cap : 8;
      info->f = realloc(info->f, cap * sizeof *info->f);
      FZ_CHECK(info->f != NULL);
    }
    fz_out_frame *fr = &info->f[info->n++];
    size_t len = (size_t)h.payload_len;
    const uint8_t *q = p + pos + (size_t)hs;
    for (size_t i = 0; i < len; i++)
      fr->payload[i] = h.masked ? (uint8_t)(q[i] ^ h.mask[i & 3]) : q[i];
    fr->opcode = h.opcode;
    fr->len = len;
    fr->start = pos;
    fr->end = pos + (size_t)hs + len;
    FZ_CHECK(!info->close); /* nothing after our close frame */
    if (h.opcode != WS_OP_PONG) {
      FZ_CHECK(h.opcode == WS_OP_CLOSE);
      FZ_CHECK(len != 1);
      info->close = true;
      info->close_code = WS_CLOSE_NO_STATUS_RECEIVED;
      if (len >= 2) {
        info->close_code = (uint16_t)(fr->payload[0] << 8 | fr->payload[1]);
        FZ_CHECK(ref_close_code_ok(info->close_code));
        FZ_CHECK(ref_utf8_valid(fr->payload + 2, len - 2));
      }
    }
    pos = fr->end;
  }
}

/* The count of events of a type in a log. */
static inline size_t fz_count(const fz_log *l, ws_event_type t) {
  size_t k = 0;
  for (size_t i = 0; i < l->n; i++)
    k += l->ev[i].type == t;
  return k;
}

/* After a run: out agrees with the events.  Pings are answered as RFC
 * 6455 5.5.2-5.5.3 allow (our own close does not excuse a pong), and
 * nothing was consumed from out during the run, so: each ping gets its
 * pong, in order, while out holds under WS_PONG_BACKLOG bytes; from then
 * on the latest ping's pong is held, and goes ahead of the next frame
 * queued (a close) or stays held.  Unless we sent a close before feeding
 * (close_first, which the caller then consumed), an ERROR or CLOSE event
 * has its close frame with its code (an echo of a CLOSE carries the code,
 * or nothing for 1005); after ours, none. */
static inline void fz_check_out_agrees(const fz_run *r, bool close_first) {
  fz_out_info oi;
  const ws_conn *c = r->c;
  const fz_log *log = &r->log;
  fz_check_out(&c->out, c->role, &oi);
  size_t k = 0, ping = 0;
  const fz_event *last = NULL;
  /* The pongs queued at once: one per ping, in order. */
  for (size_t i = 0; i < log->n; i++) {
    if (log->ev[i].type != WS_EV_PING)
      continue;
    last = &log->ev[i];
    ping++;
    size_t at = k ? oi.f[k - 1].end : 0;
    if (at >= WS_PONG_BACKLOG)
      continue; /* coalesced from here on */
    FZ_CHECK(k < oi.n && oi.f[k].opcode == WS_OP_PONG);
    FZ_CHECK(fz_same_payload(&log->ev[i], oi.f[k].payload, oi.f[k].len));
    k++;
  }
  /* The rest: the held pong (the latest ping's) released ahead of a close,
   * or still held; then the close. */
  size_t rest = oi.n - k;
  bool coalesced = ping > k;
  if (coalesced && rest && oi.f[k].opcode == WS_OP_PONG) {
    FZ_CHECK(fz_same_payload(last, oi.f[k].payload, oi.f[k].len));
    FZ_CHECK(!c->pong_held);
    k++;
    rest--;
  } else if (coalesced) {
    FZ_CHECK(c->pong_held && fz_same_payload(last, c->side->pong, c->side->pong_len));
  } else {
    FZ_CHECK(!c->pong_held);
  }
  FZ_CHECK(rest == (oi.close ? 1u : 0u));
  free(oi.f);
  if (close_first) {
    FZ_CHECK(!oi.close);
    return;
  }
  const fz_event *end = log->n ? &log->ev[log->n - 1] : NULL;
  bool ends = end && (end->type == WS_EV_ERROR || end->type == WS_EV_CLOSE);
  FZ_CHECK(oi.close == ends);
  if (ends)
    FZ_CHECK(oi.close_code == end->code);
}

#endif

/* ws_deflate.c -- permessage-deflate (see ws_deflate.h).
 *
 * Negotiation parses each Sec-WebSocket-Extensions element once into a
 * small struct, then judges it; nothing is allocated.  At run time zlib's
 * streams are made on first use and allocate through a counting hook, so
 * tests can prove that steady traffic allocates nothing and the docs can
 * quote what an idle or busy connection costs.  Output goes straight into
 * the caller's buffer: compressed bytes into the frame being built, and
 * inflated bytes into the message, in steps that never let it pass the
 * limit. */
#define ZLIB_CONST
#include "ws_deflate.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ws_http.h"

/* zlib counts in uInt: larger inputs go in steps of this. */
#define ZSTEP ((size_t)1 << 30)
/* First growth of an empty message buffer while inflating. */
#define INFLATE_MIN_CAP ((size_t)4096)

static const uint8_t sync_tail[4] = {0x00, 0x00, 0xff, 0xff};

struct ws_deflate {
  z_stream tx, rx;
  bool tx_ready, rx_ready; /* the stream is initialised */
  bool tx_off;             /* context lost: never compress again */
  bool tx_held;            /* a non-final piece's tail is not sent yet */
  bool tx_reset, rx_reset; /* no context takeover for that direction */
  bool rx_ended;           /* the message had a BFINAL block */
  bool rx_more;            /* inflate stopped for output room: it may owe
                              more for input it already took */
  uint8_t rx_tail;         /* bytes of the final 00 00 ff ff fed so far */
  int tx_bits, tx_strategy, rx_bits, level, mem_level;
  size_t threshold;
  size_t tx_msg;           /* bytes produced for the message being sent */
  size_t rx_msg;           /* compressed bytes taken for the message */
  size_t zbytes, zpeak;
  unsigned long zallocs;
};

/* ---- options ---- */

void ws_deflate_options_init(ws_deflate_options *o) {
  memset(o, 0, sizeof *o);
  o->enabled = true;
  o->threshold = WS_DEFLATE_DEFAULT_THRESHOLD;
  o->level = Z_DEFAULT_COMPRESSION;
  o->mem_level = WS_DEFLATE_DEFAULT_MEM_LEVEL;
}

static bool bits_ok(unsigned b) { return b == 0 || (b >= 8 && b <= 15); }

const char *ws_deflate_options_check(const ws_deflate_options *o) {
  if (!o)
    return "no options";
  if (!bits_ok(o->server_max_window_bits))
    return "server_max_window_bits must be 8..15";
  if (!bits_ok(o->client_max_window_bits))
    return "client_max_window_bits must be 8..15";
  if (o->level < -1 || o->level > 9)
    return "level must be -1..9";
  if (o->mem_level < 0 || o->mem_level > 9)
    return "mem_level must be 1..9";
  return NULL;
}

/* ---- parsing one extension element ---- */

typedef struct pmd_elem {
  bool snct, cnct;   /* *_no_context_takeover present */
  uint8_t smwb;      /* server_max_window_bits, 0 = absent */
  bool cmwb_given;   /* client_max_window_bits present */
  uint8_t cmwb;      /* its value, 0 = none */
  const char *why;   /* ELEM_BAD: what is wrong */
} pmd_elem;

enum { ELEM_BAD = -1, ELEM_OTHER = 0, ELEM_PMD = 1 };

static bool ieq(const char *s, size_t n, const char *lit) {
  if (strlen(lit) != n)
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char a = (unsigned char)s[i], b = (unsigned char)lit[i];
    if ((a >= 'A' && a <= 'Z' ? a | 0x20 : a) != b)
      return false;
  }
  return true;
}

static size_t skip_ws(const char *s, size_t i, size_t n) {
  while (i < n && (s[i] == ' ' || s[i] == '\t'))
    i++;
  return i;
}

static size_t token_end(const char *s, size_t i, size_t n) {
  while (i < n && ws_http_is_token(s + i, 1))
    i++;
  return i;
}

/* 8..15 written without leading zeros (RFC 7692 7.1.2), else 0. */
static uint8_t parse_bits(const char *v, size_t n) {
  if (n == 1 && (v[0] == '8' || v[0] == '9'))
    return (uint8_t)(v[0] - '0');
  if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
    return (uint8_t)(10 + v[1] - '0');
  return 0;
}

static int bad(pmd_elem *e, const char *why) {
  e->why = why;
  return ELEM_BAD;
}

/* Apply one parameter; value NULL when it had none.  Returns ELEM_PMD or
 * ELEM_BAD. */
static int apply_param(pmd_elem *e, const char *name, size_t name_len,
                       const char *value, size_t value_len) {
  uint8_t bits = value ? parse_bits(value, value_len) : 0;
  if (ieq(name, name_len, "server_no_context_takeover") ||
      ieq(name, name_len, "client_no_context_takeover")) {
    bool *flag = name[0] == 's' || name[0] == 'S' ? &e->snct : &e->cnct;
    if (*flag)
      return bad(e, "repeated *_no_context_takeover parameter");
    if (value)
      return bad(e, "*_no_context_takeover parameter with a value");
    *flag = true;
  } else if (ieq(name, name_len, "server_max_window_bits")) {
    if (e->smwb)
      return bad(e, "repeated server_max_window_bits");
    if (!bits)
      return bad(e, value ? "invalid server_max_window_bits (not 8..15)"
                          : "server_max_window_bits without a value");
    e->smwb = bits;
  } else if (ieq(name, name_len, "client_max_window_bits")) {
    if (e->cmwb_given)
      return bad(e, "repeated client_max_window_bits");
    if (value && !bits)
      return bad(e, "invalid client_max_window_bits (not 8..15)");
    e->cmwb_given = true;
    e->cmwb = bits;
  } else {
    return bad(e, "unknown permessage-deflate parameter");
  }
  return ELEM_PMD;
}

/* One list element: extension-token *( ";" param [ "=" token|quoted ] ),
 * with optional whitespace around the separators (RFC 6455 9.1). */
static int parse_elem(const char *s, size_t n, pmd_elem *e) {
  memset(e, 0, sizeof *e);
  size_t i = skip_ws(s, 0, n), j = token_end(s, i, n);
  if (!ieq(s + i, j - i, "permessage-deflate"))
    return ELEM_OTHER;
  for (i = j;;) {
    i = skip_ws(s, i, n);
    if (i == n)
      return ELEM_PMD;
    if (s[i] != ';')
      return bad(e, "malformed permessage-deflate parameters");
    i = skip_ws(s, i + 1, n);
    j = token_end(s, i, n);
    if (j == i)
      return bad(e, "malformed permessage-deflate parameters");
    const char *name = s + i;
    size_t name_len = j - i;
    char val[4]; /* longer values are never valid window bits */
    size_t vlen = 0;
    bool has_value = false;
    i = skip_ws(s, j, n);
    if (i < n && s[i] == '=') {
      has_value = true;
      i = skip_ws(s, i + 1, n);
      if (i < n && s[i] == '"') {
        for (i++;; i++) {
          if (i == n)
            return bad(e, "unterminated quoted parameter value");
          char c = s[i];
          if (c == '"')
            break;
          if (c == '\\' && ++i == n)
            return bad(e, "unterminated quoted parameter value");
          if (vlen < sizeof val)
            val[vlen] = s[i];
          vlen++;
        }
        i++;
      } else {
        j = token_end(s, i, n);
        if (j == i)
          return bad(e, "missing parameter value");
        vlen = j - i;
        memcpy(val, s + i, vlen < sizeof val ? vlen : sizeof val);
        i = j;
      }
      if (vlen > sizeof val)
        vlen = sizeof val; /* still invalid: parse_bits wants 1-2 chars */
    }
    if (apply_param(e, name, name_len, has_value ? val : NULL, vlen) ==
        ELEM_BAD)
      return ELEM_BAD;
  }
}

/* ---- negotiation ---- */

int ws_deflate_format(const ws_deflate_params *p, char *buf, size_t size) {
  if (!p || !buf || size < WS_DEFLATE_HEADER_MAX || !bits_ok(p->server_max_window_bits) ||
      !bits_ok(p->client_max_window_bits))
    return WS_ERROR;
  int n = snprintf(buf, size, "permessage-deflate%s%s",
                   p->server_no_context_takeover ? "; server_no_context_takeover" : "",
                   p->client_no_context_takeover ? "; client_no_context_takeover" : "");
  if (p->server_max_window_bits)
    n += snprintf(buf + n, size - (size_t)n, "; server_max_window_bits=%u",
                  (unsigned)p->server_max_window_bits);
  if (p->client_max_window_bits)
    n += snprintf(buf + n, size - (size_t)n, "; client_max_window_bits=%u",
                  (unsigned)p->client_max_window_bits);
  return n;
}

int ws_deflate_offer(const ws_deflate_options *o, char *buf, size_t size) {
  if (!buf || size < WS_DEFLATE_HEADER_MAX || ws_deflate_options_check(o))
    return WS_ERROR;
  ws_deflate_params p = {o->server_no_context_takeover,
                         o->client_no_context_takeover,
                         o->server_max_window_bits, 0};
  int n = ws_deflate_format(&p, buf, size);
  /* Always named, so the server may limit our window (and save memory). */
  n += snprintf(buf + n, size - (size_t)n, "; client_max_window_bits");
  if (o->client_max_window_bits)
    n += snprintf(buf + n, size - (size_t)n, "=%u",
                  (unsigned)o->client_max_window_bits);
  return n;
}

/* The server's answer to one valid offer e, or false to decline it. */
static bool negotiate(const pmd_elem *e, const ws_deflate_options *o,
                      ws_deflate_params *a) {
  memset(a, 0, sizeof *a);
  a->server_no_context_takeover = e->snct || o->server_no_context_takeover;
  a->client_no_context_takeover = e->cnct || o->client_no_context_takeover;
  uint8_t s = o->server_max_window_bits;
  if (e->smwb && (!s || e->smwb < s))
    s = e->smwb;
  a->server_max_window_bits = s;
  if (e->cmwb_given) {
    uint8_t c = o->client_max_window_bits ? o->client_max_window_bits : 15;
    if (e->cmwb && e->cmwb < c)
      c = e->cmwb;
    a->client_max_window_bits = c < 15 ? c : 0; /* absent means 15 */
  } else if (o->client_max_window_bits && o->client_max_window_bits < 15) {
    return false; /* we could not limit the client's window (7.1.2.2) */
  }
  return true;
}

int ws_deflate_accept(const char *offers, size_t len,
                      const ws_deflate_options *o, ws_deflate_params *agreed,
                      char *buf, size_t size) {
  if (!agreed || !buf || size < WS_DEFLATE_HEADER_MAX ||
      ws_deflate_options_check(o))
    return WS_ERROR;
  buf[0] = '\0';
  memset(agreed, 0, sizeof *agreed);
  if (!o->enabled || !offers)
    return 0;
  size_t pos = 0, n;
  const char *item;
  while (ws_http_list_next(offers, len, &pos, &item, &n)) {
    pmd_elem e;
    if (parse_elem(item, n, &e) == ELEM_PMD && negotiate(&e, o, agreed)) {
      ws_deflate_format(agreed, buf, size);
      return 1;
    }
  }
  memset(agreed, 0, sizeof *agreed);
  return 0;
}

/* Why answer r does not fit offer of, or NULL. */
static const char *admit(const pmd_elem *of, const pmd_elem *r) {
  if (of->snct && !r->snct)
    return "server did not accept server_no_context_takeover";
  if (of->smwb && !r->smwb)
    return "server did not confirm server_max_window_bits";
  if (of->smwb && r->smwb > of->smwb)
    return "server_max_window_bits larger than offered";
  if (r->cmwb_given) {
    if (!of->cmwb_given)
      return "client_max_window_bits in the answer but not offered";
    if (!r->cmwb)
      return "client_max_window_bits without a value in the answer";
    if (of->cmwb && r->cmwb > of->cmwb)
      return "client_max_window_bits larger than offered";
  }
  return NULL;
}

static int answer_fail(const char **message, const char *why) {
  *message = why;
  return WS_ERROR;
}

int ws_deflate_check_response(const char *answer, size_t len,
                              const char *offer, size_t offer_len,
                              ws_deflate_params *agreed, const char **message) {
  static const char not_offered[] = "server answered permessage-deflate, "
                                    "which was not offered";
  pmd_elem r, e;
  bool got = false;
  size_t pos = 0, n;
  const char *item;
  memset(agreed, 0, sizeof *agreed);
  *message = NULL;
  while (answer && ws_http_list_next(answer, len, &pos, &item, &n)) {
    int k = parse_elem(item, n, &e);
    if (k == ELEM_OTHER)
      return answer_fail(message, "server answered with an extension that "
                                  "was not offered");
    if (got)
      return answer_fail(message, "server answered permessage-deflate twice");
    if (k == ELEM_BAD)
      return answer_fail(message, e.why);
    r = e;
    got = true;
  }
  if (!got)
    return 0;
  const char *why = not_offered;
  pos = 0;
  while (offer && ws_http_list_next(offer, offer_len, &pos, &item, &n)) {
    if (parse_elem(item, n, &e) != ELEM_PMD)
      continue;
    const char *w = admit(&e, &r);
    if (!w) {
      agreed->server_no_context_takeover = r.snct;
      agreed->client_no_context_takeover = r.cnct;
      agreed->server_max_window_bits = r.smwb;
      agreed->client_max_window_bits = r.cmwb;
      return 1;
    }
    if (why == not_offered)
      why = w;
  }
  return answer_fail(message, why);
}

/* ---- zlib memory, counted ---- */

typedef union zhdr {
  size_t n;
  max_align_t align;
} zhdr;

static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
  ws_deflate *d = opaque;
  if (size && items > (SIZE_MAX - sizeof(zhdr)) / size)
    return Z_NULL;
  size_t n = (size_t)items * size;
  zhdr *h = calloc(1, sizeof *h + n);
  if (!h)
    return Z_NULL;
  h->n = n;
  d->zbytes += n;
  if (d->zbytes > d->zpeak)
    d->zpeak = d->zbytes;
  d->zallocs++;
  return h + 1;
}

static void z_free(voidpf opaque, voidpf p) {
  ws_deflate *d = opaque;
  if (!p)
    return;
  zhdr *h = (zhdr *)p - 1;
  d->zbytes -= h->n;
  free(h);
}

/* ---- runtime ---- */

static uint8_t min_bits(uint8_t a, uint8_t b) {
  a = a ? a : 15;
  b = b ? b : 15;
  return a < b ? a : b;
}

/* A zeroed ws_deflate whose zlib streams allocate through it. */
static ws_deflate *deflate_alloc(void) {
  ws_deflate *d = calloc(1, sizeof *d);
  if (!d)
    return NULL;
  d->tx.zalloc = d->rx.zalloc = z_alloc;
  d->tx.zfree = d->rx.zfree = z_free;
  d->tx.opaque = d->rx.opaque = d;
  return d;
}

ws_deflate *ws_deflate_new(ws_role role, const ws_deflate_params *a,
                           const ws_deflate_options *o) {
  if (!a || ws_deflate_options_check(o) ||
      !bits_ok(a->server_max_window_bits) || !bits_ok(a->client_max_window_bits))
    return NULL;
  ws_deflate *d = deflate_alloc();
  if (!d)
    return NULL;
  uint8_t tx, rx;
  if (role == WS_ROLE_CLIENT) {
    tx = min_bits(a->client_max_window_bits, o->client_max_window_bits);
    d->tx_reset = a->client_no_context_takeover || o->client_no_context_takeover;
    rx = min_bits(a->server_max_window_bits, 0);
    d->rx_reset = a->server_no_context_takeover;
  } else {
    tx = min_bits(a->server_max_window_bits, o->server_max_window_bits);
    d->tx_reset = a->server_no_context_takeover || o->server_no_context_takeover;
    rx = min_bits(a->client_max_window_bits, 0);
    d->rx_reset = a->client_no_context_takeover;
  }
  /* See the header: 8 is kept with a 9-bit window and distance-1 matches. */
  d->tx_bits = tx < 9 ? 9 : tx;
  d->tx_strategy = tx < 9 ? Z_RLE : Z_DEFAULT_STRATEGY;
  d->rx_bits = rx < 9 ? 9 : rx;
  d->level = o->level;
  d->mem_level = o->mem_level ? o->mem_level : WS_DEFLATE_DEFAULT_MEM_LEVEL;
  d->threshold = o->threshold;
  return d;
}

void ws_deflate_free(ws_deflate *d) {
  if (!d)
    return;
  if (d->tx_ready)
    deflateEnd(&d->tx);
  if (d->rx_ready)
    inflateEnd(&d->rx);
  free(d);
}

void ws_deflate_get_stats(const ws_deflate *d, ws_deflate_stats *s) {
  s->zlib_bytes = d->zbytes;
  s->zlib_peak = d->zpeak;
  s->zlib_allocs = d->zallocs;
  s->deflate_window_bits = d->tx_bits;
  s->inflate_window_bits = d->rx_bits;
}

bool ws_deflate_fresh(const ws_deflate *d, ws_deflate_shape *shape) {
  if (!d || d->tx_off || !d->tx_reset)
    return false;
  shape->bits = d->tx_bits;
  shape->strategy = d->tx_strategy;
  shape->level = d->level;
  shape->mem_level = d->mem_level;
  return true;
}

ws_deflate *ws_deflate_new_shared(const ws_deflate_shape *shape) {
  ws_deflate *d = deflate_alloc();
  if (!d)
    return NULL;
  d->tx_bits = d->rx_bits = shape->bits;
  d->tx_strategy = shape->strategy;
  d->level = shape->level;
  d->mem_level = shape->mem_level;
  d->tx_reset = true;
  return d;
}

bool ws_deflate_wants(const ws_deflate *d, size_t len) {
  return d && !d->tx_off && len > 0 && len >= d->threshold;
}

static size_t uint_room(const ws_buf *b) {
  size_t r = ws_buf_room(b);
  return r < UINT_MAX ? r : UINT_MAX;
}

enum ws_error ws_deflate_compress(ws_deflate *d, const void *data, size_t len,
                                  bool fin, ws_buf *out, size_t *produced) {
  size_t base = ws_buf_len(out);
  bool took = false;
  *produced = 0;
  if (d->tx_off)
    return WS_E_NOMEM;
  if (!d->tx_ready) {
    if (deflateInit2(&d->tx, d->level, Z_DEFLATED, -d->tx_bits, d->mem_level,
                     d->tx_strategy) != Z_OK)
      return WS_E_NOMEM;
    d->tx_ready = true;
  }
  /* The held tail goes first: more data follows it now. */
  if (d->tx_held && ws_buf_append(out, sync_tail, 4) != 0)
    return WS_E_NOMEM;
  size_t start = ws_buf_len(out);
  const uint8_t *p = data;
  size_t left = len;
  do {
    size_t step = left < ZSTEP ? left : ZSTEP;
    left -= step;
    size_t bound = (size_t)deflateBound(&d->tx, (uLong)step) + 16;
    if (ws_buf_reserve(out, bound) != 0)
      goto fail;
    d->tx.next_in = p;
    d->tx.avail_in = (uInt)step;
    if (step) /* data may be NULL when len is 0 */
      p += step;
    int flush = left ? Z_NO_FLUSH : Z_SYNC_FLUSH;
    do {
      if (ws_buf_room(out) == 0 && ws_buf_reserve(out, 4096) != 0)
        goto fail;
      size_t room = uint_room(out);
      d->tx.next_out = ws_buf_tail(out);
      d->tx.avail_out = (uInt)room;
      took = true;
      int r = deflate(&d->tx, flush);
      ws_buf_commit(out, room - d->tx.avail_out);
      if (r == Z_STREAM_ERROR)
        goto fail;
      /* Z_BUF_ERROR: nothing new to flush; avail_out stays > 0. */
    } while (d->tx.avail_out == 0);
  } while (left);

  size_t n = ws_buf_len(out) - start;
  if (n == 0) {
    out->end -= start - base; /* nothing new: a held tail stays held */
    if (fin) {
      d->tx_held = false; /* it is the tail 7.2.1 removes */
      /* A compressed message is never empty: 0x00 plus the receiver's
       * tail is an empty stored block (RFC 7692 7.2.3.6). */
      if (d->tx_msg == 0 && ws_buf_append(out, "", 1) != 0)
        return WS_E_NOMEM;
    }
  } else {
    if (n < 4 || memcmp(ws_buf_tail(out) - 4, sync_tail, 4) != 0)
      goto fail; /* Z_SYNC_FLUSH always ends so; never seen */
    out->end -= 4;
    d->tx_held = !fin;
  }
  *produced = ws_buf_len(out) - base;
  d->tx_msg += *produced;
  if (fin) {
    d->tx_msg = 0;
    if (d->tx_reset)
      deflateReset(&d->tx);
  }
  return WS_E_NONE;

fail:
  out->end = out->start + base;
  if (took)
    d->tx_off = true;
  return WS_E_NOMEM;
}

/* Room for at least one more byte in b without its capacity passing limit
 * (ws_buf_reserve doubles, which could allocate twice the limit).  The
 * caller guarantees ws_buf_len(b) < limit. */
static int reserve_capped(ws_buf *b, size_t limit) {
  size_t len = ws_buf_len(b);
  if (b->start) {
    memmove(b->base, b->base + b->start, len);
    b->start = 0;
    b->end = len;
    if (b->cap > len)
      return 0;
  }
  size_t cap = b->cap < INFLATE_MIN_CAP       ? INFLATE_MIN_CAP
               : b->cap <= SIZE_MAX / 2 ? b->cap * 2
                                        : SIZE_MAX;
  if (cap > limit)
    cap = limit;
  if (cap <= b->cap)
    return -1;
  uint8_t *nb = realloc(b->base, cap);
  if (!nb)
    return -1;
  b->base = nb;
  b->cap = cap;
  return 0;
}

/* Inflate from in[0, len) into out, whose length must stay <= max, making
 * at most *budget bytes (decremented).  *used: the input zlib took.  Stops
 * early when the budget is spent; d->rx_more then says zlib may still owe
 * output for input it already took. */
static enum ws_error inflate_some(ws_deflate *d, const uint8_t *in, size_t len,
                                  size_t *used, ws_buf *out, size_t max,
                                  size_t *budget, const char **why) {
  *used = 0;
  while ((*used < len || d->rx_more) && *budget > 0) {
    size_t step = len - *used < ZSTEP ? len - *used : ZSTEP;
    size_t have = ws_buf_len(out);
    if (have > max)
      goto too_big;
    if (ws_buf_room(out) == 0 && reserve_capped(out, max + 1) != 0) {
      *why = "out of memory";
      return WS_E_NOMEM;
    }
    size_t room = uint_room(out);
    if (room > max - have + 1) /* one byte past max proves "too big" */
      room = max - have + 1;
    if (room > *budget)
      room = *budget;
    d->rx.next_in = step ? in + *used : sync_tail; /* never NULL + 0 */
    d->rx.avail_in = (uInt)step;
    d->rx.next_out = ws_buf_tail(out);
    d->rx.avail_out = (uInt)room;
    int r = inflate(&d->rx, Z_SYNC_FLUSH);
    size_t got = room - d->rx.avail_out;
    ws_buf_commit(out, got);
    *budget -= got;
    *used += step - d->rx.avail_in;
    /* Output space ran out: zlib may hold more for input it took. */
    d->rx_more = d->rx.avail_out == 0;
    if (ws_buf_len(out) > max)
      goto too_big;
    switch (r) {
    case Z_STREAM_END:
      d->rx_ended = true; /* the rest of the message is ignored */
      d->rx_more = false;
      *used = len;
      return WS_E_NONE;
    case Z_NEED_DICT:
    case Z_DATA_ERROR:
      *why = d->rx.msg ? d->rx.msg : "invalid compressed data";
      return WS_E_INVALID_DATA;
    case Z_MEM_ERROR:
    case Z_STREAM_ERROR:
      *why = "out of memory";
      return WS_E_NOMEM;
    case Z_BUF_ERROR: /* no progress possible: nothing was owed */
      d->rx_more = false;
      if (*used < len) { /* input left and yet no progress: never loop */
        *why = "inflate made no progress";
        return WS_E_INVALID_DATA;
      }
      break;
    default: /* Z_OK */
      break;
    }
  }
  return WS_E_NONE;
too_big:
  *why = "message over max_payload (decompressed)";
  return WS_E_TOO_BIG;
}

/* After a BFINAL block zlib's stream is over, but a peer using context
 * takeover may still refer to the window, so it is carried into the next
 * stream.  Rare (common peers never set BFINAL), so a temporary copy is
 * allocated here rather than held by every connection. */
static enum ws_error restart_inflate(ws_deflate *d, const char **why) {
  uInt n = 0;
  uint8_t *window = NULL;
  if (!d->rx_reset) {
    window = malloc((size_t)1 << d->rx_bits);
    if (!window) {
      *why = "out of memory";
      return WS_E_NOMEM;
    }
    inflateGetDictionary(&d->rx, window, &n);
  }
  inflateReset(&d->rx);
  if (n)
    inflateSetDictionary(&d->rx, window, n);
  free(window);
  return WS_E_NONE;
}

enum ws_error ws_deflate_inflate(ws_deflate *d, ws_inflate_step *st,
                                 ws_buf *out, uint64_t max, const char **why) {
  size_t lim = max >= SIZE_MAX ? SIZE_MAX - 1 : (size_t)max;
  enum ws_error e;
  *why = NULL;
  st->used = 0;
  st->done = false;
  if (!d->rx_ready) {
    if (inflateInit2(&d->rx, -d->rx_bits) != Z_OK) {
      *why = "out of memory";
      return WS_E_NOMEM;
    }
    d->rx_ready = true;
  }
  if (d->rx_ended) {
    st->used = st->len; /* after BFINAL, input is ignored */
  } else if (d->rx_tail == 0) {
    e = inflate_some(d, st->in, st->len, &st->used, out, lim, &st->budget, why);
    d->rx_msg += st->used;
    if (e)
      return e;
    if (st->used < st->len || d->rx_more)
      return WS_E_NONE; /* the budget is spent */
  }
  if (!st->fin) {
    st->done = true;
    return WS_E_NONE;
  }
  /* An empty payload is taken as an empty message (RFC 7692 wants 0x00,
   * but nothing was consumed, so the stream is still in step).  The tail
   * goes through the same budget: its own bytes make no output, but it can
   * release what zlib held back. */
  if (d->rx_msg && !d->rx_ended) {
    while (d->rx_tail < sizeof sync_tail || d->rx_more) {
      size_t took;
      e = inflate_some(d, sync_tail + d->rx_tail, sizeof sync_tail - d->rx_tail,
                       &took, out, lim, &st->budget, why);
      d->rx_tail = (uint8_t)(d->rx_tail + took);
      if (e)
        return e;
      if (d->rx_ended)
        break;
      if (st->budget == 0 && (d->rx_tail < sizeof sync_tail || d->rx_more))
        return WS_E_NONE;
    }
    if (!d->rx_ended && !(d->rx.data_type & 128)) {
      *why = "message ends inside a deflate block";
      return WS_E_INVALID_DATA;
    }
  }
  d->rx_msg = 0;
  d->rx_tail = 0;
  st->done = true;
  if (d->rx_ended) {
    d->rx_ended = false;
    return restart_inflate(d, why);
  }
  if (d->rx_reset)
    inflateReset(&d->rx);
  return WS_E_NONE;
}

enum ws_error ws_deflate_decompress(ws_deflate *d, const uint8_t *in,
                                    size_t len, bool fin, ws_buf *out,
                                    uint64_t max, const char **why) {
  ws_inflate_step st = {.in = in, .len = len, .fin = fin, .budget = SIZE_MAX};
  return ws_deflate_inflate(d, &st, out, max, why);
}

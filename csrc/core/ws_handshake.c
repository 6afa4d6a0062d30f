/*
 * ws_handshake.c -- RFC 6455 section 4 on parsed heads.  The builders judge
 * every user string before writing anything, then run the same emitter
 * twice: once to measure, once into a single reservation, so a refused
 * option or a failed allocation leaves out as it was.  SHA-1 and base64
 * are OpenSSL's (EVP_Digest, EVP_EncodeBlock).
 */
#include "ws_handshake.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define KEY_MAX 128 /* longer keys are refused; a real one is 24 bytes */
#define NOMEM (-3)

static bool ascii_ieq(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if ((x >= 'A' && x <= 'Z' ? x | 0x20 : x) !=
        (y >= 'A' && y <= 'Z' ? y | 0x20 : y))
      return false;
  }
  return true;
}

static bool is_b64(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Base64 of 16 bytes: 22 characters and "==".  The 4 unused bits of the
 * last character are not required to be zero (decoders ignore them, and so
 * do the common servers). */
static bool key_ok(const char *k, size_t n) {
  if (n != WS_KEY_LEN || k[22] != '=' || k[23] != '=')
    return false;
  for (size_t i = 0; i < 22; i++)
    if (!is_b64((unsigned char)k[i]))
      return false;
  return true;
}

int ws_handshake_make_key(char out[WS_KEY_LEN + 1], ws_random_fn random,
                          void *random_ud) {
  uint8_t raw[16];
  if ((random ? random : ws_random_default)(random_ud, raw, sizeof raw) != 0)
    return -1;
  EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw);
  return 0;
}

int ws_handshake_accept(const char *key, size_t key_len,
                        char out[WS_ACCEPT_LEN + 1]) {
  unsigned char in[KEY_MAX + sizeof WS_GUID - 1], md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (!key || key_len > KEY_MAX)
    return -1;
  memcpy(in, key, key_len);
  memcpy(in + key_len, WS_GUID, sizeof WS_GUID - 1);
  if (EVP_Digest(in, key_len + sizeof WS_GUID - 1, md, &md_len, EVP_sha1(),
                 NULL) != 1 ||
      md_len != 20)
    return -1;
  EVP_EncodeBlock((unsigned char *)out, md, 20);
  return 0;
}

/* ---- checks ---- */

/* Does any field named name carry token in its comma list?  *count gets
 * how many fields have that name. */
static bool any_has(const ws_http_header *h, size_t n, const char *name,
                    const char *token, size_t *count) {
  size_t name_len = strlen(name);
  bool found = false;
  *count = 0;
  for (size_t i = 0; i < n; i++) {
    if (h[i].name_len != name_len || !ascii_ieq(h[i].name, name, name_len))
      continue;
    (*count)++;
    if (ws_http_list_has(h[i].value, h[i].value_len, token))
      found = true;
  }
  return found;
}

static int refuse(ws_handshake_verdict *v, int status, const char *message) {
  v->status = status;
  v->message = message;
  return status;
}

int ws_handshake_check_request(const ws_http_request *req,
                               ws_handshake_verdict *v) {
  const ws_http_header *h = req->headers, *f;
  size_t n = req->num_headers, count;
  v->status = 0;
  v->message = NULL;
  v->key = NULL;
  v->key_len = 0;
  v->protocols = v->extensions = NULL;
  if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0)
    return refuse(v, 405, "method must be GET");
  if (req->version_minor < 1)
    return refuse(v, 400, "HTTP/1.1 or later is required");
  ws_http_header_find(h, n, "Host", &count);
  if (count != 1)
    return refuse(v, 400, count ? "repeated Host header" : "missing Host header");
  if (!any_has(h, n, "Upgrade", "websocket", &count))
    return count ? refuse(v, 400, "Upgrade does not name websocket")
                 : refuse(v, 426, "missing Upgrade: websocket");
  if (!any_has(h, n, "Connection", "upgrade", &count))
    return refuse(v, 400, "missing Connection: upgrade");
  f = ws_http_header_find(h, n, "Sec-WebSocket-Version", &count);
  if (!f)
    return refuse(v, 426, "missing Sec-WebSocket-Version");
  if (count != 1 || f->value_len != 2 || memcmp(f->value, "13", 2) != 0)
    return refuse(v, 426, "unsupported WebSocket version (only 13)");
  f = ws_http_header_find(h, n, "Sec-WebSocket-Key", &count);
  if (!f)
    return refuse(v, 400, "missing Sec-WebSocket-Key");
  if (count != 1)
    return refuse(v, 400, "repeated Sec-WebSocket-Key");
  if (!key_ok(f->value, f->value_len))
    return refuse(v, 400, "malformed Sec-WebSocket-Key (not base64 of 16 bytes)");
  v->key = f->value;
  v->key_len = f->value_len;
  v->protocols = ws_http_header_find(h, n, "Sec-WebSocket-Protocol", NULL);
  v->extensions = ws_http_header_find(h, n, "Sec-WebSocket-Extensions", NULL);
  return 0;
}

static int answer_fail(ws_handshake_answer *a, const char *message) {
  a->message = message;
  a->protocol = a->extensions = NULL;
  a->protocol_len = a->extensions_len = 0;
  return WS_ERROR;
}

/* Does the comma list have an element at all?  " , ," offers nothing. */
static bool offers_any(const char *list) {
  size_t pos = 0, len;
  const char *el;
  return list && ws_http_list_next(list, strlen(list), &pos, &el, &len);
}

/* Is item[0, n) exactly (case-sensitively) one element of the list? */
static bool offered(const char *list, const char *item, size_t n) {
  size_t pos = 0, len;
  const char *el;
  if (!list)
    return false;
  while (ws_http_list_next(list, strlen(list), &pos, &el, &len))
    if (len == n && memcmp(el, item, n) == 0)
      return true;
  return false;
}

int ws_handshake_check_response(const ws_http_response *res, const char *key,
                                const char *offered_protocols,
                                bool offered_extensions,
                                ws_handshake_answer *a) {
  const ws_http_header *h = res->headers, *f;
  size_t n = res->num_headers, count;
  char accept[WS_ACCEPT_LEN + 1];
  a->text[0] = '\0';
  answer_fail(a, NULL); /* clears the outputs */
  if (res->status != 101) {
    const char *reason = res->reason;
    size_t len = res->reason_len;
    if (!reason || len == 0) {
      reason = ws_http_reason_phrase(res->status);
      len = strlen(reason);
    }
    snprintf(a->text, sizeof a->text, "server answered %d %.*s", res->status,
             (int)(len < 100 ? len : 100), reason);
    return answer_fail(a, a->text);
  }
  if (!any_has(h, n, "Upgrade", "websocket", &count))
    return answer_fail(a, "missing Upgrade: websocket");
  if (!any_has(h, n, "Connection", "upgrade", &count))
    return answer_fail(a, "missing Connection: upgrade");
  f = ws_http_header_find(h, n, "Sec-WebSocket-Accept", &count);
  if (!f)
    return answer_fail(a, "missing Sec-WebSocket-Accept");
  if (count != 1)
    return answer_fail(a, "repeated Sec-WebSocket-Accept");
  if (!key || ws_handshake_accept(key, strlen(key), accept) != 0)
    return answer_fail(a, "no valid Sec-WebSocket-Key to check the answer");
  if (f->value_len != WS_ACCEPT_LEN || memcmp(f->value, accept, WS_ACCEPT_LEN))
    return answer_fail(a, "wrong Sec-WebSocket-Accept");
  const ws_http_header *proto =
      ws_http_header_find(h, n, "Sec-WebSocket-Protocol", &count);
  if (count > 1)
    return answer_fail(a, "repeated Sec-WebSocket-Protocol");
  /* RFC 6455 lets a server ignore the offer, but the browser (WHATWG
   * WebSockets, "establish a WebSocket connection") and Node's ws fail
   * such a connection: an application that asked for a subprotocol would
   * otherwise speak it to a server that never agreed. */
  if (!proto && offers_any(offered_protocols))
    return answer_fail(a, "server chose none of the offered subprotocols");
  if (proto && !offered(offered_protocols, proto->value, proto->value_len)) {
    snprintf(a->text, sizeof a->text,
             "server chose subprotocol \"%.*s\" that was not offered",
             (int)(proto->value_len < 80 ? proto->value_len : 80), proto->value);
    return answer_fail(a, a->text);
  }
  const ws_http_header *ext =
      ws_http_header_find(h, n, "Sec-WebSocket-Extensions", &count);
  if (ext && !offered_extensions)
    return answer_fail(a, "server sent Sec-WebSocket-Extensions but none were offered");
  /* The answer holds one value; a second field would be an extension in
   * force that nobody looks at. */
  if (count > 1)
    return answer_fail(a, "repeated Sec-WebSocket-Extensions");
  if (proto) {
    a->protocol = proto->value;
    a->protocol_len = proto->value_len;
  }
  if (ext) {
    a->extensions = ext->value;
    a->extensions_len = ext->value_len;
  }
  return 0;
}

/* ---- builders ---- */

typedef struct writer {
  char *p; /* NULL while measuring */
  size_t n;
  bool overflow;
} writer;

static void put(writer *w, const char *s, size_t n) {
  if (n > SIZE_MAX - w->n) {
    w->overflow = true;
    return;
  }
  if (w->p && n)
    memcpy(w->p + w->n, s, n);
  w->n += n;
}

static void put_str(writer *w, const char *s) { put(w, s, strlen(s)); }

static void put_field(writer *w, const char *name, const char *value) {
  put_str(w, name);
  put(w, ": ", 2);
  put_str(w, value);
  put(w, "\r\n", 2);
}

static void put_fields(writer *w, const ws_handshake_field *f, size_t n) {
  for (size_t i = 0; i < n; i++)
    put_field(w, f[i].name, f[i].value);
}

/* Measure, reserve once, write. */
typedef void (*emit_fn)(writer *w, const void *ctx);

static int emit(ws_buf *out, emit_fn fn, const void *ctx) {
  writer w = {NULL, 0, false};
  fn(&w, ctx);
  if (w.overflow || ws_buf_reserve(out, w.n) != 0)
    return NOMEM;
  w.p = (char *)ws_buf_tail(out);
  w.n = 0;
  fn(&w, ctx);
  ws_buf_commit(out, w.n);
  return 0;
}

static bool given(const char *s) { return s && *s; }

static bool value_ok(const char *s) {
  return ws_http_is_field_value(s, strlen(s));
}

static bool target_ok(const char *s) {
  if (!given(s))
    return false;
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || *s == 0x7f)
      return false;
  return true;
}

static bool named(const char *const *names, size_t count, const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < count; i++)
    if (strlen(names[i]) == n && ascii_ieq(names[i], name, n))
      return true;
  return false;
}

/* Fields the handshake writes itself, or that would change how the head's
 * end is found; a user copy would contradict or duplicate them.  In a 101
 * the subprotocol and the extensions are the negotiation's answer (the
 * protocols and compression options), never a plain header either. */
bool ws_handshake_reserved_field(const char *name, bool upgrade_response) {
  static const char *const names[] = {
      "Host", "Upgrade", "Connection", "Sec-WebSocket-Key",
      "Sec-WebSocket-Version", "Sec-WebSocket-Accept", "Content-Length",
      "Transfer-Encoding"};
  static const char *const negotiated[] = {"Sec-WebSocket-Protocol",
                                           "Sec-WebSocket-Extensions"};
  return named(names, sizeof names / sizeof *names, name) ||
         (upgrade_response &&
          named(negotiated, sizeof negotiated / sizeof *negotiated, name));
}

static bool fields_ok(const ws_handshake_field *f, size_t n,
                      bool upgrade_response) {
  if (n && !f)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!f[i].name || !f[i].value ||
        !ws_http_is_token(f[i].name, strlen(f[i].name)) ||
        !value_ok(f[i].value) ||
        ws_handshake_reserved_field(f[i].name, upgrade_response))
      return false;
  return true;
}

static void emit_request(writer *w, const void *ctx) {
  const ws_handshake_request_spec *s = ctx;
  put(w, "GET ", 4);
  put_str(w, s->target);
  put_str(w, " HTTP/1.1\r\n");
  put_field(w, "Host", s->host);
  put_str(w, "Upgrade: websocket\r\nConnection: Upgrade\r\n");
  put_field(w, "Sec-WebSocket-Key", s->key);
  put_str(w, "Sec-WebSocket-Version: 13\r\n");
  if (given(s->origin))
    put_field(w, "Origin", s->origin);
  if (given(s->protocols))
    put_field(w, "Sec-WebSocket-Protocol", s->protocols);
  if (given(s->extensions))
    put_field(w, "Sec-WebSocket-Extensions", s->extensions);
  put_fields(w, s->fields, s->num_fields);
  put(w, "\r\n", 2);
}

int ws_handshake_build_request(ws_buf *out, const ws_handshake_request_spec *s) {
  if (!s || !given(s->host) || !value_ok(s->host) || !target_ok(s->target) ||
      !s->key || !key_ok(s->key, strlen(s->key)) ||
      (s->origin && !value_ok(s->origin)) ||
      (s->protocols && !value_ok(s->protocols)) ||
      (s->extensions && !value_ok(s->extensions)) ||
      !fields_ok(s->fields, s->num_fields, false))
    return WS_ERROR;
  return emit(out, emit_request, s);
}

typedef struct response_ctx {
  const char *accept, *protocol, *extensions;
  const ws_handshake_field *fields;
  size_t num_fields;
} response_ctx;

static void emit_response(writer *w, const void *ctx) {
  const response_ctx *r = ctx;
  put_str(w, "HTTP/1.1 101 Switching Protocols\r\n"
             "Upgrade: websocket\r\nConnection: Upgrade\r\n");
  put_field(w, "Sec-WebSocket-Accept", r->accept);
  if (given(r->protocol))
    put_field(w, "Sec-WebSocket-Protocol", r->protocol);
  if (given(r->extensions))
    put_field(w, "Sec-WebSocket-Extensions", r->extensions);
  put_fields(w, r->fields, r->num_fields);
  put(w, "\r\n", 2);
}

/* The chosen subprotocol must be one token: a list or a stray comma would
 * make the client refuse the connection. */
int ws_handshake_build_response(ws_buf *out, const char *key, size_t key_len,
                                const char *protocol, const char *extensions,
                                const ws_handshake_field *fields,
                                size_t num_fields) {
  char accept[WS_ACCEPT_LEN + 1];
  if ((given(protocol) && !ws_http_is_token(protocol, strlen(protocol))) ||
      (extensions && !value_ok(extensions)) ||
      !fields_ok(fields, num_fields, true) ||
      ws_handshake_accept(key, key_len, accept) != 0)
    return WS_ERROR;
  response_ctx r = {accept, protocol, extensions, fields, num_fields};
  return emit(out, emit_response, &r);
}

typedef struct refusal_ctx {
  int status;
  const char *reason;
  const ws_handshake_field *fields;
  size_t num_fields;
  const char *body;
  size_t body_len;
  bool content_type; /* the user supplied one */
} refusal_ctx;

static void emit_refusal(writer *w, const void *ctx) {
  const refusal_ctx *r = ctx;
  char num[32];
  snprintf(num, sizeof num, "HTTP/1.1 %d ", r->status);
  put_str(w, num);
  put_str(w, r->reason);
  put(w, "\r\n", 2);
  if (r->status == 405)
    put_str(w, "Allow: GET\r\n");
  if (r->status == 426)
    put_str(w, "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
  put_fields(w, r->fields, r->num_fields);
  if (r->body_len && !r->content_type)
    put_str(w, "Content-Type: text/plain; charset=utf-8\r\n");
  snprintf(num, sizeof num, "%zu", r->body_len);
  put_field(w, "Content-Length", num);
  put_str(w, "Connection: close\r\n\r\n");
  put(w, r->body, r->body_len);
}

int ws_handshake_build_refusal(ws_buf *out, int status, const char *reason,
                               const ws_handshake_field *fields,
                               size_t num_fields, const char *body,
                               size_t body_len) {
  if (status < 200 || status > 599 || (reason && !value_ok(reason)) ||
      !fields_ok(fields, num_fields, false) || (body_len && !body))
    return WS_ERROR;
  refusal_ctx r = {status, given(reason) ? reason : ws_http_reason_phrase(status),
                   fields, num_fields, body, body_len, false};
  for (size_t i = 0; i < num_fields; i++)
    if (strlen(fields[i].name) == 12 && ascii_ieq(fields[i].name, "Content-Type", 12))
      r.content_type = true;
  return emit(out, emit_refusal, &r);
}

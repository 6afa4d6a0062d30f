/* fuzz_http_request.c -- ws_http_parse_request, then the server's side of
 * the handshake on what it accepts.
 *
 * The input is the request bytes, parsed from a heap copy of exactly their
 * length.  The result is WS_INCOMPLETE, WS_ERROR with a refusal status
 * (400, 431, 505) and a message, or a head length in 1..len whose pieces
 * lie inside it; shorter prefixes of an accepted head are incomplete and
 * the head alone gives the same result.  ws_handshake_check_request then
 * answers 0 or a documented status (400, 405, 426) with a message; when it
 * accepts, the full exchange must close: the 101 built for the key (with
 * the first offered subprotocol and the permessage-deflate answer) parses,
 * passes ws_handshake_check_response for that key (fails it when the offer
 * had subprotocols but the first was no token, so none was chosen), and
 * the client agrees to the extension answer. */
#include "fuzz_http.h"
#include "ws_deflate.h"
#include "ws_handshake.h"

static char *cstr(const char *p, size_t n) {
  char *s = fz_alloc(n + 1);
  if (n)
    memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

/* The server accepted: answer as a server would and check as a client. */
static void exchange(const ws_handshake_verdict *v) {
  char *key = cstr(v->key, v->key_len);
  char *offered = v->protocols ? cstr(v->protocols->value,
                                      v->protocols->value_len)
                               : NULL;
  char *protocol = NULL;
  const char *item;
  size_t pos = 0, item_len;
  if (offered && ws_http_list_next(offered, strlen(offered), &pos, &item,
                                   &item_len) &&
      ws_http_is_token(item, item_len))
    protocol = cstr(item, item_len);

  char answer[WS_DEFLATE_HEADER_MAX];
  ws_deflate_options o;
  ws_deflate_params sp, cp;
  ws_deflate_options_init(&o);
  int agreed = 0;
  if (v->extensions) {
    agreed = ws_deflate_accept(v->extensions->value, v->extensions->value_len,
                               &o, &sp, answer, sizeof answer);
    FZ_CHECK(agreed == 0 || agreed == 1);
  }

  ws_buf out = WS_BUF_INIT;
  FZ_CHECK(ws_handshake_build_response(&out, v->key, v->key_len, protocol,
                                       agreed ? answer : NULL, NULL, 0) == 0);
  size_t n = ws_buf_len(&out);
  char *resp = (char *)fz_dup(ws_buf_data(&out), n);
  ws_http_response *res = fz_alloc(sizeof *res);
  FZ_CHECK(ws_http_parse_response(resp, n, res) == (int)n);
  FZ_CHECK(res->status == 101);
  ws_handshake_answer a;
  int checked = ws_handshake_check_response(res, key, offered,
                                            v->extensions != NULL, &a);
  pos = 0;
  bool offers_any = offered && ws_http_list_next(offered, strlen(offered), &pos,
                                                 &item, &item_len);
  if (!protocol && offers_any) {
    /* The server chose none of the offered subprotocols (the first was not
     * a token): the client fails that, as the browser does. */
    FZ_CHECK(checked == WS_ERROR);
  } else {
    FZ_CHECK(checked == 0);
    FZ_CHECK(protocol ? a.protocol_len == strlen(protocol) &&
                            memcmp(a.protocol, protocol, a.protocol_len) == 0
                      : a.protocol_len == 0);
    if (agreed) {
      const char *msg;
      FZ_CHECK(a.extensions_len == strlen(answer) &&
               memcmp(a.extensions, answer, a.extensions_len) == 0);
      FZ_CHECK(ws_deflate_check_response(a.extensions, a.extensions_len,
                                         v->extensions->value,
                                         v->extensions->value_len, &cp,
                                         &msg) == 1);
      FZ_CHECK(memcmp(&sp, &cp, sizeof sp) == 0);
    } else {
      FZ_CHECK(a.extensions == NULL);
    }
  }
  free(res);
  free(resp);
  ws_buf_free(&out);
  free(protocol);
  free(offered);
  free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = (char *)fz_dup(data, size);
  ws_http_request *req = fz_alloc(sizeof *req);
  int r = ws_http_parse_request(buf, size, req);
  if (r == WS_ERROR) {
    FZ_CHECK(req->status == 400 || req->status == 431 || req->status == 505);
    FZ_CHECK(req->message != NULL && req->message[0] != '\0');
  } else if (r == WS_INCOMPLETE) {
    FZ_CHECK(req->status == 0 && req->message == NULL);
  } else {
    FZ_CHECK(r >= 1 && (size_t)r <= size);
    size_t hl = (size_t)r;
    FZ_CHECK(req->status == 0 && req->message == NULL);
    FZ_CHECK(req->method_len > 0 &&
             fz_inside(req->method, req->method_len, buf, hl));
    FZ_CHECK(ws_http_is_token(req->method, req->method_len));
    FZ_CHECK(req->target_len > 0 &&
             fz_inside(req->target, req->target_len, buf, hl));
    FZ_CHECK(req->version_minor >= 0 && req->version_minor <= 9);
    fz_check_fields(req->headers, req->num_headers, buf, hl);
    FZ_CHECK(buf[hl - 1] == '\n');

    /* Prefixes: incomplete.  The head alone: the same head. */
    ws_http_request *q = fz_alloc(sizeof *q);
    for (size_t k = 0; k < hl; k = fz_next_prefix(k, hl)) {
      char *pre = (char *)fz_dup(buf, k);
      FZ_CHECK(ws_http_parse_request(pre, k, q) == WS_INCOMPLETE);
      free(pre);
    }
    char *head = (char *)fz_dup(buf, hl);
    FZ_CHECK(ws_http_parse_request(head, hl, q) == r);
    FZ_CHECK(q->num_headers == req->num_headers);
    free(head);
    free(q);

    ws_handshake_verdict v;
    int s = ws_handshake_check_request(req, &v);
    FZ_CHECK(s == v.status);
    FZ_CHECK(s == 0 || s == 400 || s == 405 || s == 426);
    if (s) {
      FZ_CHECK(v.message != NULL && v.message[0] != '\0');
      FZ_CHECK(v.key == NULL);
    } else {
      FZ_CHECK(v.message == NULL);
      FZ_CHECK(req->method_len == 3 && memcmp(req->method, "GET", 3) == 0);
      FZ_CHECK(req->version_minor >= 1); /* 1.2 and up count as 1.1 */
      FZ_CHECK(v.key_len == WS_KEY_LEN && fz_inside(v.key, v.key_len, buf, hl));
      const ws_http_header *h0 = req->headers, *hn = h0 + req->num_headers;
      FZ_CHECK(!v.protocols || (v.protocols >= h0 && v.protocols < hn));
      FZ_CHECK(!v.extensions || (v.extensions >= h0 && v.extensions < hn));
      exchange(&v);
    }
  }
  free(req);
  free(buf);
  return 0;
}

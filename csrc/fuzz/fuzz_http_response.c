/* fuzz_http_response.c -- ws_http_parse_response, then the client's check
 * of the server's answer.
 *
 * The input is the response bytes, parsed from a heap copy of exactly their
 * length: WS_INCOMPLETE, WS_ERROR with a message, or a head length in
 * 1..len (status 100..999, pieces inside the head; prefixes incomplete; the
 * head alone parses the same).  ws_handshake_check_response then runs for
 * the RFC's sample key with and without offered subprotocols and
 * extensions: 0 or WS_ERROR with a message; an accepted answer is a 101,
 * its subprotocol one of those offered (and there, when some were offered:
 * choosing none fails, as in the browser) and its extensions inside the
 * head; offering extensions never turns an acceptance into a refusal. */
#include "fuzz_http.h"
#include "ws_handshake.h"

static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";

static int check(const ws_http_response *res, const char *buf, size_t hl,
                 const char *protocols, bool extensions) {
  ws_handshake_answer a;
  int r = ws_handshake_check_response(res, key, protocols, extensions, &a);
  FZ_CHECK(r == 0 || r == WS_ERROR);
  if (r) {
    FZ_CHECK(a.message != NULL && a.message[0] != '\0');
    FZ_CHECK(a.protocol == NULL && a.extensions == NULL);
    return r;
  }
  FZ_CHECK(res->status == 101);
  FZ_CHECK((a.protocol_len > 0) == (protocols != NULL));
  if (a.protocol_len) {
    FZ_CHECK(fz_inside(a.protocol, a.protocol_len, buf, hl));
    FZ_CHECK(protocols != NULL);
    FZ_CHECK((a.protocol_len == 4 && memcmp(a.protocol, "chat", 4) == 0) ||
             (a.protocol_len == 9 && memcmp(a.protocol, "superchat", 9) == 0));
  }
  if (a.extensions) {
    FZ_CHECK(extensions);
    FZ_CHECK(fz_inside(a.extensions, a.extensions_len, buf, hl));
  }
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = (char *)fz_dup(data, size);
  ws_http_response *res = fz_alloc(sizeof *res);
  int r = ws_http_parse_response(buf, size, res);
  if (r == WS_ERROR) {
    FZ_CHECK(res->message != NULL && res->message[0] != '\0');
  } else if (r == WS_INCOMPLETE) {
    FZ_CHECK(res->message == NULL);
  } else {
    FZ_CHECK(r >= 1 && (size_t)r <= size);
    size_t hl = (size_t)r;
    FZ_CHECK(res->message == NULL);
    FZ_CHECK(res->status >= 100 && res->status <= 999);
    FZ_CHECK(res->version_minor >= 0 && res->version_minor <= 9);
    FZ_CHECK(res->reason_len == 0 ||
             fz_inside(res->reason, res->reason_len, buf, hl));
    fz_check_fields(res->headers, res->num_headers, buf, hl);
    FZ_CHECK(buf[hl - 1] == '\n');

    ws_http_response *q = fz_alloc(sizeof *q);
    for (size_t k = 0; k < hl; k = fz_next_prefix(k, hl)) {
      char *pre = (char *)fz_dup(buf, k);
      FZ_CHECK(ws_http_parse_response(pre, k, q) == WS_INCOMPLETE);
      free(pre);
    }
    char *head = (char *)fz_dup(buf, hl);
    FZ_CHECK(ws_http_parse_response(head, hl, q) == r);
    FZ_CHECK(q->num_headers == res->num_headers && q->status == res->status);
    free(head);
    free(q);

    int bare = check(res, buf, hl, NULL, false);
    int ext = check(res, buf, hl, NULL, true);
    int proto = check(res, buf, hl, "chat, superchat", false);
    int both = check(res, buf, hl, "chat, superchat", true);
    FZ_CHECK(!(bare == 0 && ext));           /* offering extensions refuses nothing */
    FZ_CHECK(!(proto == 0 && both));
    FZ_CHECK(!(bare == 0 && (proto == 0 || both == 0))); /* no subprotocol chosen */
    FZ_CHECK(!(ext == 0 && both == 0));
  }
  free(res);
  free(buf);
  return 0;
}

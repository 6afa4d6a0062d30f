/* fuzz_deflate_negotiation.c -- ws_deflate_offer / _accept /
 * _check_response on fuzzed Sec-WebSocket-Extensions values.
 *
 * Input: [client a b] [server a b] [flags] [offers] NUL [answer]; options
 * bytes as in fuzz_deflate.h; flags bit 0 disables the server's deflate.
 * Without a NUL the same text serves as both offers and answer.
 *   - Our own offer, accepted by the server, must pass the client's check
 *     with the same parameters (fz_negotiate).
 *   - The server's answer to the fuzzed offers: 0 (and "") or 1 with an
 *     answer that is what ws_deflate_format writes, honours the server's
 *     options, re-parses, and passes the client's check against the very
 *     offers it answered, with the same parameters.
 *   - The fuzzed answer judged against our offer: 0 exactly when it names
 *     no extension (only commas and whitespace); WS_ERROR with a message;
 *     or 1 with parameters within what we offered, which format back to an
 *     answer that passes again, and make a working ws_deflate.
 *   - The fuzzed answer against the fuzzed offers: a result from that set.
 */
#include "fuzz_deflate.h"

static bool blank_list(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ',' && s[i] != ' ' && s[i] != '\t')
      return false;
  return true;
}

/* An answer that was accepted with p re-formats to one accepted alike. */
static void reparse(const ws_deflate_params *p, const char *offer,
                    size_t offer_len) {
  char buf[WS_DEFLATE_HEADER_MAX];
  ws_deflate_params q;
  const char *msg;
  int n = ws_deflate_format(p, buf, sizeof buf);
  FZ_CHECK(n > 0 && (size_t)n == strlen(buf));
  FZ_CHECK(ws_deflate_check_response(buf, (size_t)n, offer, offer_len, &q,
                                     &msg) == 1);
  FZ_CHECK(memcmp(p, &q, sizeof q) == 0);
}

static int judge(const char *answer, size_t alen, const char *offer,
                 size_t olen, ws_deflate_params *p) {
  const char *msg = "unset";
  int r = ws_deflate_check_response(answer, alen, offer, olen, p, &msg);
  FZ_CHECK(r == 0 || r == 1 || r == WS_ERROR);
  if (r == WS_ERROR) {
    FZ_CHECK(msg != NULL && msg[0] != '\0');
  } else {
    FZ_CHECK(msg == NULL);
    FZ_CHECK((r == 0) == blank_list(answer, alen));
  }
  if (r == 1) {
    FZ_CHECK(fz_bits_ok(p->server_max_window_bits) &&
             fz_bits_ok(p->client_max_window_bits));
    reparse(p, offer, olen);
  }
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  ws_deflate_options co, so;
  uint8_t ca = fz_byte(&in), cb = fz_byte(&in);
  uint8_t sa = fz_byte(&in), sb = fz_byte(&in);
  fz_deflate_options(ca, cb, &co);
  fz_deflate_options(sa, sb, &so);
  so.enabled = !(fz_byte(&in) & 1);

  const uint8_t *nul = in.n ? memchr(in.p, 0, in.n) : NULL;
  size_t olen = nul ? (size_t)(nul - in.p) : in.n;
  size_t alen = nul ? in.n - olen - 1 : in.n;
  char *offers = (char *)fz_dup(in.p, olen);
  char *answer = (char *)fz_dup(nul ? nul + 1 : in.p, alen);

  /* Our own offer through the server and back. */
  ws_deflate_params cp, sp;
  fz_negotiate(&co, &so, &cp, &sp);
  char offer[WS_DEFLATE_HEADER_MAX];
  int n = ws_deflate_offer(&co, offer, sizeof offer);
  FZ_CHECK(n > 0);
  size_t our_len = (size_t)n;

  /* The server on the fuzzed offers. */
  char buf[WS_DEFLATE_HEADER_MAX], again[WS_DEFLATE_HEADER_MAX];
  ws_deflate_params agreed, client;
  memset(buf, 0x55, sizeof buf);
  int r = ws_deflate_accept(offers, olen, &so, &agreed, buf, sizeof buf);
  FZ_CHECK(r == 0 || r == 1);
  if (r == 0) {
    static const ws_deflate_params zero;
    FZ_CHECK(buf[0] == '\0');
    FZ_CHECK(memcmp(&agreed, &zero, sizeof zero) == 0);
  } else {
    FZ_CHECK(so.enabled);
    FZ_CHECK(ws_deflate_format(&agreed, again, sizeof again) ==
             (int)strlen(buf));
    FZ_CHECK(strcmp(again, buf) == 0);
    fz_check_agreed(&agreed, NULL, &so);
    FZ_CHECK(judge(buf, strlen(buf), offers, olen, &client) == 1);
    FZ_CHECK(memcmp(&agreed, &client, sizeof client) == 0);
    ws_deflate *d = ws_deflate_new(WS_ROLE_SERVER, &agreed, &so);
    FZ_CHECK(d != NULL);
    ws_deflate_free(d);
  }

  /* The client on the fuzzed answer, against our offer. */
  r = judge(answer, alen, offer, our_len, &client);
  if (r == 1) {
    fz_check_agreed(&client, &co, NULL);
    ws_deflate *d = ws_deflate_new(WS_ROLE_CLIENT, &client, &co);
    FZ_CHECK(d != NULL);
    ws_deflate_free(d);
  }
  /* ... and against the fuzzed offers. */
  judge(answer, alen, offers, olen, &client);

  free(offers);
  free(answer);
  return 0;
}

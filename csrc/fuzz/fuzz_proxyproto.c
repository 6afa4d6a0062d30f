/* fuzz_proxyproto.c -- ws_proxyproto_parse and the address text parsers.
 *
 * Input: [mode] [cut] [bytes].  Mode bit 0 set: the bytes are an address
 * in text, and ws_proxyproto_ipv4/_ipv6 must agree with the C library's
 * inet_pton (an independent parser).  Otherwise the bytes are the start
 * of a connection, parsed from a heap copy of exactly their length.  The
 * result is WS_INCOMPLETE (only while under the bounds: len < 107 for
 * version 1's signature, < WS_PROXYPROTO_MAX for version 2's), WS_ERROR
 * with a message, or a length in 1..len; then the prefix `cut` bytes long
 * is incomplete when shorter than the header, the header alone gives the
 * same result, local headers carry no family, and a header with addresses
 * written back by this harness (v1 text or v2 binary) parses to the same
 * addresses and ports.  An error on a prefix stays an error on the whole. */
#include <arpa/inet.h>
#include <stdio.h>

#include "fuzz_common.h"
#include "ws_proxyproto.h"

static void check_text(const uint8_t *p, size_t n) {
  char *s = fz_alloc(n + 1);
  if (n)
    memcpy(s, p, n);
  s[n] = '\0';
  bool has_nul = memchr(p, 0, n) != NULL;
  uint8_t ours[16], ref[16];
  bool ok4 = ws_proxyproto_ipv4(s, n, ours);
  bool ref4 = !has_nul && inet_pton(AF_INET, s, ref) == 1;
  FZ_CHECK(ok4 == ref4);
  if (ok4)
    FZ_CHECK(memcmp(ours, ref, 4) == 0);
  bool ok6 = ws_proxyproto_ipv6(s, n, ours);
  bool ref6 = !has_nul && inet_pton(AF_INET6, s, ref) == 1;
  FZ_CHECK(ok6 == ref6);
  if (ok6)
    FZ_CHECK(memcmp(ours, ref, 16) == 0);
  free(s);
}

/* Write pp's addresses back as a header of its version; parse it again. */
static void round_trip(const ws_proxyproto *pp) {
  uint8_t buf[WS_PROXYPROTO_MAX];
  size_t n = 0;
  if (pp->version == 1) {
    char text[WS_PROXYPROTO_V1_MAX + 1], src[48], dst[48];
    if (pp->family == 4) {
      snprintf(src, sizeof src, "%u.%u.%u.%u", pp->src[0], pp->src[1], pp->src[2], pp->src[3]);
      snprintf(dst, sizeof dst, "%u.%u.%u.%u", pp->dst[0], pp->dst[1], pp->dst[2], pp->dst[3]);
    } else {
      FZ_CHECK(inet_ntop(AF_INET6, pp->src, src, sizeof src) != NULL);
      FZ_CHECK(inet_ntop(AF_INET6, pp->dst, dst, sizeof dst) != NULL);
    }
    int w = snprintf(text, sizeof text, "PROXY TCP%d %s %s %u %u\r\n", pp->family, src,
                     dst, (unsigned)pp->src_port, (unsigned)pp->dst_port);
    FZ_CHECK(w > 0 && (size_t)w < sizeof text);
    n = (size_t)w;
    memcpy(buf, text, n);
  } else {
    static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    size_t alen = pp->family == 4 ? 4 : 16;
    memcpy(buf, sig, 12);
    buf[12] = 0x21;
    buf[13] = pp->family == 4 ? 0x11 : 0x21;
    buf[14] = 0;
    buf[15] = (uint8_t)(2 * alen + 4);
    memcpy(buf + 16, pp->src, alen);
    memcpy(buf + 16 + alen, pp->dst, alen);
    uint8_t *ports = buf + 16 + 2 * alen;
    ports[0] = (uint8_t)(pp->src_port >> 8), ports[1] = (uint8_t)pp->src_port;
    ports[2] = (uint8_t)(pp->dst_port >> 8), ports[3] = (uint8_t)pp->dst_port;
    n = 16 + 2 * alen + 4;
  }
  uint8_t *copy = fz_dup(buf, n);
  ws_proxyproto again;
  FZ_CHECK(ws_proxyproto_parse(copy, n, &again) == (int)n);
  FZ_CHECK(again.version == pp->version && again.family == pp->family && !again.local);
  size_t alen = pp->family == 4 ? 4 : 16;
  FZ_CHECK(memcmp(again.src, pp->src, alen) == 0 && memcmp(again.dst, pp->dst, alen) == 0);
  FZ_CHECK(again.src_port == pp->src_port && again.dst_port == pp->dst_port);
  free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  uint8_t mode = fz_byte(&in);
  size_t cut = fz_byte(&in) | (size_t)fz_byte(&in) << 8;
  if (mode & 1) {
    check_text(in.p, in.n);
    return 0;
  }
  size_t n = in.n;
  uint8_t *buf = fz_dup(in.p, n);
  ws_proxyproto pp;
  int r = ws_proxyproto_parse(buf, n, &pp);
  FZ_CHECK(r == WS_INCOMPLETE || r == WS_ERROR || (r > 0 && (size_t)r <= n));
  if (r == WS_ERROR)
    FZ_CHECK(pp.message != NULL);
  if (r == WS_INCOMPLETE)
    FZ_CHECK(n < WS_PROXYPROTO_MAX && (n < WS_PROXYPROTO_V1_MAX || buf[0] != 'P'));
  if (r > 0) {
    FZ_CHECK(pp.version == 1 || pp.version == 2);
    FZ_CHECK(pp.local ? pp.family == 0 : (pp.family == 4 || pp.family == 6));
    ws_proxyproto alone;
    uint8_t *head = fz_dup(buf, (size_t)r);
    FZ_CHECK(ws_proxyproto_parse(head, (size_t)r, &alone) == r);
    FZ_CHECK(memcmp(&alone, &pp, sizeof pp) == 0);
    free(head);
    if (!pp.local)
      round_trip(&pp);
  }
  if (cut < n) {
    uint8_t *prefix = fz_dup(buf, cut);
    ws_proxyproto part;
    int rp = ws_proxyproto_parse(prefix, cut, &part);
    if (r > 0 && cut < (size_t)r)
      FZ_CHECK(rp == WS_INCOMPLETE);
    if (rp == WS_ERROR)
      FZ_CHECK(r == WS_ERROR);
    free(prefix);
  }
  free(buf);
  return 0;
}

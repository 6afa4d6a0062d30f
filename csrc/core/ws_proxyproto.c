/*
 * ws_proxyproto.c -- PROXY protocol headers, versions 1 and 2 (see
 * ws_proxyproto.h).  Strict: one space between version 1 fields, decimal
 * numbers without leading zeros, addresses of the announced family;
 * anything else is an error, never a guess.
 */
#include "ws_proxyproto.h"

#include <string.h>

static const uint8_t V2_SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char V1_SIG[6] = "PROXY ";

static int fail(ws_proxyproto *out, const char *message) {
  out->message = message;
  return WS_ERROR;
}

/* ---- addresses in text ---- */

/* A decimal number of 1..maxdigits digits, no leading zero, <= max. */
static bool decimal(const char *s, size_t len, unsigned max, size_t maxdigits,
                    unsigned *out) {
  if (len == 0 || len > maxdigits || (len > 1 && s[0] == '0'))
    return false;
  unsigned v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (v > max)
    return false;
  *out = v;
  return true;
}

bool ws_proxyproto_ipv4(const char *text, size_t len, uint8_t out[4]) {
  size_t start = 0;
  for (int part = 0; part < 4; part++) {
    size_t end = start;
    while (end < len && text[end] != '.')
      end++;
    if ((part < 3) != (end < len))
      return false; /* three dots, the last part runs to the end */
    unsigned v;
    if (!decimal(text + start, end - start, 255, 3, &v))
      return false;
    out[part] = (uint8_t)v;
    start = end + 1;
  }
  return true;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

bool ws_proxyproto_ipv6(const char *text, size_t len, uint8_t out[16]) {
  uint8_t words[16];
  size_t n = 0;          /* bytes filled in words */
  long gap = -1;         /* where "::" stands, in bytes */
  size_t i = 0;
  if (len >= 2 && text[0] == ':' && text[1] == ':') {
    gap = 0;
    i = 2;
    if (i == len) { /* "::" alone */
      memset(out, 0, 16);
      return true;
    }
  } else if (len == 0 || text[0] == ':') {
    return false;
  }
  for (;;) {
    /* One group: hex digits, or a dotted IPv4 tail in the last 4 bytes. */
    size_t end = i;
    while (end < len && text[end] != ':')
      end++;
    if (memchr(text + i, '.', end - i)) {
      if (end != len || n > 12 || !ws_proxyproto_ipv4(text + i, end - i, words + n))
        return false;
      n += 4;
      break;
    }
    size_t digits = end - i;
    if (digits == 0 || digits > 4 || n > 14)
      return false;
    unsigned v = 0;
    for (size_t k = i; k < end; k++) {
      int d = hex_digit(text[k]);
      if (d < 0)
        return false;
      v = v * 16 + (unsigned)d;
    }
    words[n++] = (uint8_t)(v >> 8);
    words[n++] = (uint8_t)v;
    if (end == len)
      break;
    i = end + 1; /* past ':' */
    if (i < len && text[i] == ':') {
      if (gap >= 0)
        return false; /* a second "::" */
      gap = (long)n;
      i++;
      if (i == len)
        break; /* ends with "::" */
    } else if (i == len) {
      return false; /* ends with a single ':' */
    }
  }
  if (gap < 0) {
    if (n != 16)
      return false;
    memcpy(out, words, 16);
    return true;
  }
  if (n > 14)
    return false; /* "::" must stand for at least one group */
  size_t head = (size_t)gap, tail = n - head;
  memset(out, 0, 16);
  memcpy(out, words, head);
  memcpy(out + 16 - tail, words + head, tail);
  return true;
}

/* ---- version 1 ---- */

/* The next space-separated field of line[*pos, end): *field, *flen. */
static bool v1_field(const char *line, size_t end, size_t *pos, const char **field,
                     size_t *flen, bool last) {
  size_t start = *pos, i = start;
  while (i < end && line[i] != ' ')
    i++;
  if (i == start || (last ? i != end : i == end))
    return false;
  *field = line + start;
  *flen = i - start;
  *pos = last ? i : i + 1;
  return true;
}

static int parse_v1(const uint8_t *buf, size_t len, ws_proxyproto *out) {
  const char *s = (const char *)buf;
  size_t limit = len < WS_PROXYPROTO_V1_MAX ? len : WS_PROXYPROTO_V1_MAX;
  size_t crlf = 0;
  for (size_t i = 0; i < limit; i++) {
    if (s[i] == '\n' && s[i - 1] == '\r') { /* i > 0: s begins "PROXY " */
      crlf = i - 1;
      break;
    }
    if (s[i] == '\n' || s[i] == '\0')
      return fail(out, "malformed PROXY v1 header (bad character)");
  }
  if (crlf == 0) {
    if (len < WS_PROXYPROTO_V1_MAX)
      return WS_INCOMPLETE;
    return fail(out, "PROXY v1 header longer than 107 bytes");
  }
  out->version = 1;
  size_t pos = sizeof V1_SIG;
  const char *f;
  size_t flen;
  if (crlf >= 13 && memcmp(s + pos, "UNKNOWN", 7) == 0 &&
      (crlf == pos + 7 || s[pos + 7] == ' ')) {
    out->local = true; /* whatever follows is ignored, as the spec says */
    return (int)(crlf + 2);
  }
  if (!v1_field(s, crlf, &pos, &f, &flen, false) || flen != 4 ||
      (memcmp(f, "TCP4", 4) && memcmp(f, "TCP6", 4)))
    return fail(out, "malformed PROXY v1 header (protocol)");
  out->family = f[3] == '4' ? 4 : 6;
  const char *src, *dst, *sport, *dport;
  size_t srclen, dstlen, sportlen, dportlen;
  if (!v1_field(s, crlf, &pos, &src, &srclen, false) ||
      !v1_field(s, crlf, &pos, &dst, &dstlen, false) ||
      !v1_field(s, crlf, &pos, &sport, &sportlen, false) ||
      !v1_field(s, crlf, &pos, &dport, &dportlen, true))
    return fail(out, "malformed PROXY v1 header (fields)");
  bool ok = out->family == 4 ? ws_proxyproto_ipv4(src, srclen, out->src) &&
                                   ws_proxyproto_ipv4(dst, dstlen, out->dst)
                             : ws_proxyproto_ipv6(src, srclen, out->src) &&
                                   ws_proxyproto_ipv6(dst, dstlen, out->dst);
  if (!ok)
    return fail(out, "malformed PROXY v1 header (address)");
  unsigned sp, dp;
  if (!decimal(sport, sportlen, 65535, 5, &sp) ||
      !decimal(dport, dportlen, 65535, 5, &dp))
    return fail(out, "malformed PROXY v1 header (port)");
  out->src_port = (uint16_t)sp;
  out->dst_port = (uint16_t)dp;
  return (int)(crlf + 2);
}

/* ---- version 2 ---- */

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static int parse_v2(const uint8_t *buf, size_t len, ws_proxyproto *out) {
  if (len < 16)
    return WS_INCOMPLETE;
  uint8_t ver = buf[12] >> 4, cmd = buf[12] & 0x0F;
  uint8_t fam = buf[13] >> 4, proto = buf[13] & 0x0F;
  size_t data = be16(buf + 14);
  if (ver != 2)
    return fail(out, "unsupported PROXY header version");
  if (cmd > 1)
    return fail(out, "malformed PROXY v2 header (command)");
  if (fam > 3 || proto > 2)
    return fail(out, "malformed PROXY v2 header (family or transport)");
  if (data > WS_PROXYPROTO_V2_DATA_MAX)
    return fail(out, "PROXY v2 header over its bound");
  if (len < 16 + data)
    return WS_INCOMPLETE;
  out->version = 2;
  /* LOCAL (the proxy's own connection, a health check), UNSPEC and UNIX:
   * the socket's addresses stand (the specification's rule). */
  if (cmd == 0 || fam == 0 || fam == 3) {
    out->local = true;
    return (int)(16 + data);
  }
  const uint8_t *a = buf + 16;
  if (fam == 1) {
    if (data < 12)
      return fail(out, "malformed PROXY v2 header (IPv4 addresses)");
    out->family = 4;
    memcpy(out->src, a, 4);
    memcpy(out->dst, a + 4, 4);
    out->src_port = be16(a + 8);
    out->dst_port = be16(a + 10);
  } else {
    if (data < 36)
      return fail(out, "malformed PROXY v2 header (IPv6 addresses)");
    out->family = 6;
    memcpy(out->src, a, 16);
    memcpy(out->dst, a + 16, 16);
    out->src_port = be16(a + 32);
    out->dst_port = be16(a + 34);
  }
  return (int)(16 + data);
}

int ws_proxyproto_parse(const uint8_t *buf, size_t len, ws_proxyproto *out) {
  memset(out, 0, sizeof *out);
  if (len == 0)
    return WS_INCOMPLETE;
  /* Which version: the bytes so far must begin one of the signatures. */
  size_t n1 = len < sizeof V1_SIG ? len : sizeof V1_SIG;
  if (memcmp(buf, V1_SIG, n1) == 0)
    return len < sizeof V1_SIG ? WS_INCOMPLETE : parse_v1(buf, len, out);
  size_t n2 = len < sizeof V2_SIG ? len : sizeof V2_SIG;
  if (memcmp(buf, V2_SIG, n2) == 0)
    return len < sizeof V2_SIG ? WS_INCOMPLETE : parse_v2(buf, len, out);
  return fail(out, "no PROXY protocol header");
}

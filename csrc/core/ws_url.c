/*
 * ws_url.c -- splits a WebSocket URL in place, one left-to-right pass per
 * part.  Every byte is screened first (no spaces, controls or fragment), so
 * no part handed on can smuggle a CR/LF into the request head; the host is
 * held to the characters a DNS name, IPv4 or bracketed IPv6 literal uses.
 */
#include "ws_url.h"

#include "ws_proto.h"

static int bad(ws_url *u, const char *message) {
  u->message = message;
  return WS_ERROR;
}

static bool is_alpha(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_hex(unsigned char c) {
  return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* Is s[0, n) the scheme name (lowercase) ignoring ASCII case? */
static bool scheme_is(const char *s, size_t n, const char *name) {
  size_t i = 0;
  for (; i < n && name[i]; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z' ? c | 0x20 : c) != (unsigned char)name[i])
      return false;
  }
  return i == n && name[i] == '\0';
}

static int parse_host(const char *s, size_t i, size_t end, ws_url *u,
                      size_t *next) {
  if (i < end && s[i] == '[') {
    size_t j = i + 1;
    bool colon = false;
    for (; j < end && s[j] != ']'; j++) {
      unsigned char c = (unsigned char)s[j];
      if (!is_hex(c) && c != ':' && c != '.')
        return bad(u, "invalid character in IPv6 address");
      colon |= c == ':';
    }
    if (j == end)
      return bad(u, "unterminated IPv6 address (missing ']')");
    if (!colon)
      return bad(u, "invalid IPv6 address");
    u->host = s + i + 1;
    u->host_len = j - i - 1;
    u->host_is_ipv6 = true;
    *next = j + 1;
    if (*next < end && s[*next] != ':')
      return bad(u, "unexpected characters after IPv6 address");
    return 0;
  }
  size_t j = i;
  while (j < end && s[j] != ':') {
    unsigned char c = (unsigned char)s[j];
    if (c == '%') {
      if (end - j < 3 || !is_hex((unsigned char)s[j + 1]) ||
          !is_hex((unsigned char)s[j + 2]))
        return bad(u, "invalid percent-escape in host");
      j += 3;
    } else if (is_alpha(c) || is_digit(c) || c == '-' || c == '.' ||
               c == '_' || c == '~') {
      j++;
    } else {
      return bad(u, "invalid character in host");
    }
  }
  if (j == i)
    return bad(u, "missing host");
  u->host = s + i;
  u->host_len = j - i;
  *next = j;
  return 0;
}

static int parse_port(const char *s, size_t i, size_t end, ws_url *u) {
  if (i == end)
    return bad(u, "missing port number after ':'");
  unsigned long port = 0;
  for (; i < end; i++) {
    if (!is_digit((unsigned char)s[i]))
      return bad(u, "invalid port number");
    port = port * 10 + (unsigned long)(s[i] - '0');
    if (port > 65535)
      return bad(u, "port number out of range (1-65535)");
  }
  if (port == 0)
    return bad(u, "port number out of range (1-65535)");
  u->port = (uint16_t)port;
  u->port_explicit = true;
  return 0;
}

int ws_url_parse(const char *s, size_t len, ws_url *u) {
  *u = (ws_url){0};
  if (!s && len)
    return bad(u, "missing URL");
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= ' ' || c == 0x7f)
      return bad(u, "spaces and control characters are not allowed in URLs");
    if (c == '#')
      return bad(u, "fragment identifiers are not allowed in WebSocket URLs");
  }
  size_t i = 0;
  while (i < len && s[i] != ':')
    i++;
  if (i == len)
    return bad(u, "missing scheme (ws:// or wss://)");
  if (scheme_is(s, i, "wss") || scheme_is(s, i, "https"))
    u->secure = true;
  else if (!scheme_is(s, i, "ws") && !scheme_is(s, i, "http"))
    return bad(u, "unsupported scheme (use ws:// or wss://)");
  if (len - i < 3 || s[i + 1] != '/' || s[i + 2] != '/')
    return bad(u, "missing \"//\" after the scheme");
  size_t auth = i + 3, end = auth;
  while (end < len && s[end] != '/' && s[end] != '?')
    end++;
  size_t host = auth;
  for (size_t j = auth; j < end; j++)
    if (s[j] == '@')
      host = j + 1;
  if (host > auth + 1) {
    u->userinfo = s + auth;
    u->userinfo_len = host - 1 - auth;
  }
  size_t next;
  if (parse_host(s, host, end, u, &next) != 0)
    return WS_ERROR;
  if (next < end && parse_port(s, next + 1, end, u) != 0)
    return WS_ERROR;
  if (!u->port_explicit)
    u->port = u->secure ? 443 : 80;
  if (end == len) {
    u->resource = "/";
    u->resource_len = 1;
  } else {
    u->resource = s + end;
    u->resource_len = len - end;
    u->resource_needs_slash = s[end] == '?';
  }
  return 0;
}

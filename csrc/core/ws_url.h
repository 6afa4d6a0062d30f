/*
 * ws_url.h -- WebSocket URIs (RFC 6455 3): ws://host[:port]/path?query.
 *
 * Also accepted, as the browser does: wss://, http:// and https:// (mapped
 * to ws/wss).  A fragment is an error (RFC 6455 3); an IPv6 literal comes
 * in brackets and is returned without them; userinfo ("user:pass@") is
 * returned for the caller to turn into Basic authorization.  The host is
 * not resolved or lowercased here.  Parts point into the input string.
 */
#ifndef MOONWS_WS_URL_H
#define MOONWS_WS_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ws_url {
  bool secure;         /* wss:// or https:// */
  const char *host;    /* without brackets */
  size_t host_len;
  bool host_is_ipv6;   /* was a bracketed literal */
  uint16_t port;       /* explicit, else 80 / 443 */
  bool port_explicit;
  const char *resource; /* path and query, "/" when the URL had none */
  size_t resource_len;
  bool resource_needs_slash; /* the URL had a query but no path ("ws://h?x"):
                                resource is "?x" and the request-target is
                                "/" followed by it */
  const char *userinfo; /* "user:pass" or NULL */
  size_t userinfo_len;
  const char *message;  /* on error: why, in words */
} ws_url;

/* 0, or WS_ERROR with u->message. */
int ws_url_parse(const char *s, size_t len, ws_url *u);

#endif

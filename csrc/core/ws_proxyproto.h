/*
 * ws_proxyproto.h -- the PROXY protocol header (HAProxy's proxy-protocol
 * specification, versions 1 and 2) that a load balancer writes before
 * the client's own bytes, saying whom it connected for.
 *
 * Sans-I/O, like the rest of the core: ws_proxyproto_parse looks at the
 * first bytes of a connection and says done (with the header's exact
 * length: what follows is the client's, a TLS hello or an HTTP request),
 * need more, or not a valid header.  Bounded: a version 1 header is at
 * most 107 bytes, a version 2 one at most WS_PROXYPROTO_MAX; while a
 * header is incomplete, every byte seen so far belongs to it, so a caller
 * may consume them all without reading past its end.
 */
#ifndef MOONWS_WS_PROXYPROTO_H
#define MOONWS_WS_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws_proto.h"

#define WS_PROXYPROTO_V1_MAX 107 /* the specification's bound, CRLF included */
/* Version 2: the 16-byte fixed part and at most this much address and TLV
 * data (HAProxy's TLVs -- ALPN, authority, unique id, SSL -- fit well
 * below it). */
#define WS_PROXYPROTO_V2_DATA_MAX 2048
#define WS_PROXYPROTO_MAX (16 + WS_PROXYPROTO_V2_DATA_MAX)

typedef struct ws_proxyproto {
  int version;    /* 1 or 2 */
  bool local;     /* no client address: v2 LOCAL (a health check), v1
                     UNKNOWN, or a v2 family that is not IP: keep the
                     socket's own addresses */
  int family;     /* 4 or 6 when !local */
  uint8_t src[16], dst[16]; /* network byte order; 4 bytes used for IPv4 */
  uint16_t src_port, dst_port;
  const char *message; /* on WS_ERROR: why, in words (static) */
} ws_proxyproto;

/* Parse the header at the start of buf[0, len).  Returns its length in
 * bytes (> 0; *out filled), WS_INCOMPLETE (every byte so far may still be
 * a header's: read more), or WS_ERROR (out->message says why: not a PROXY
 * header, a malformed one, or one over the bounds above). */
int ws_proxyproto_parse(const uint8_t *buf, size_t len, ws_proxyproto *out);

/* Parse text[0, len) as an IPv4 dotted quad (four decimal octets, no
 * leading zeros) into out[4]; true on success. */
bool ws_proxyproto_ipv4(const char *text, size_t len, uint8_t out[4]);

/* Parse text[0, len) as an IPv6 address (RFC 4291 2.2: hex groups, one
 * "::", an optional dotted IPv4 tail; no zone, no brackets) into out[16];
 * true on success. */
bool ws_proxyproto_ipv6(const char *text, size_t len, uint8_t out[16]);

#endif

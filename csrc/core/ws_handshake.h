/*
 * ws_handshake.h -- the opening handshake's rules (RFC 6455 4), both sides.
 *
 * Server: ws_handshake_check_request validates a parsed request and says
 * how to refuse it; ws_handshake_build_response / _build_refusal write the
 * answer.  Client: ws_handshake_build_request writes the upgrade request;
 * ws_handshake_check_response validates the server's answer.
 *
 * Keys come from the random source (OpenSSL's CSPRNG by default); the
 * accept value is SHA-1 + base64 from OpenSSL's libcrypto.  Everything a
 * user passes into a header (host, path, protocols, origin, extra headers)
 * is checked for CR/LF/NUL first, so no option can inject a header.
 */
#ifndef MOONWS_WS_HANDSHAKE_H
#define MOONWS_WS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "ws_buf.h"
#include "ws_http.h"
#include "ws_proto.h"

#define WS_KEY_LEN 24    /* base64 of 16 random bytes */
#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

/* A fresh Sec-WebSocket-Key, NUL-terminated.  random NULL = default CSPRNG.
 * 0 or -1 (the random source failed). */
int ws_handshake_make_key(char out[WS_KEY_LEN + 1], ws_random_fn random,
                          void *random_ud);

/* Sec-WebSocket-Accept for key, NUL-terminated.  0 or -1 (key NULL or
 * longer than 128 bytes). */
int ws_handshake_accept(const char *key, size_t key_len,
                        char out[WS_ACCEPT_LEN + 1]);

/* ---- server side ---- */

typedef struct ws_handshake_verdict {
  int status;          /* 0 when acceptable; else the HTTP status to answer */
  const char *message; /* why, in words */
  const char *key;     /* Sec-WebSocket-Key (when acceptable) */
  size_t key_len;
  const ws_http_header *protocols;  /* first Sec-WebSocket-Protocol, or NULL */
  const ws_http_header *extensions; /* first Sec-WebSocket-Extensions, or NULL */
} ws_handshake_verdict;

/* Check a request against RFC 6455 4.2.1, in this order (the first failed
 * rule decides): 405 not GET (answer with Allow: GET); 400 not HTTP/1.1 or
 * later; 400 no Host or a repeated one; 426 no Upgrade field, 400 Upgrade
 * fields without the token websocket; 400 no "upgrade" in Connection; 426
 * Sec-WebSocket-Version missing, repeated or not "13" (answer with
 * Sec-WebSocket-Version: 13); 400 Sec-WebSocket-Key missing, repeated, or
 * not 22 base64 characters and "==".  Returns 0 or the status (also in
 * v->status). */
int ws_handshake_check_request(const ws_http_request *req,
                               ws_handshake_verdict *v);

/* Is name (any case) a field the handshake writes itself (Host, Upgrade,
 * Connection, Sec-WebSocket-Key, -Version, -Accept, Content-Length,
 * Transfer-Encoding; in a 101 also Sec-WebSocket-Protocol and
 * -Extensions)?  The builders refuse such an extra field. */
bool ws_handshake_reserved_field(const char *name, bool upgrade_response);

/* One extra header a user supplied. */
typedef struct ws_handshake_field {
  const char *name;
  const char *value;
} ws_handshake_field;

/* 101 Switching Protocols with the accept value for key, the chosen
 * protocol (one token) and extensions (NULL or "" for none), and extra
 * fields.  Returns 0, WS_ERROR (nothing written: a string with CR, LF or
 * another control byte, a field name that is not a token, or an extra field
 * the handshake owns -- Host, Upgrade, Connection, Sec-WebSocket-Key,
 * -Version, -Accept, Content-Length, Transfer-Encoding, and in this 101
 * also Sec-WebSocket-Protocol and -Extensions, which are the negotiation's
 * answer), or -3 for no memory (out unchanged). */
int ws_handshake_build_response(ws_buf *out, const char *key, size_t key_len,
                                const char *protocol, const char *extensions,
                                const ws_handshake_field *fields,
                                size_t num_fields);

/* A refusal: status line (status 200-599; reason NULL or "" for the
 * standard phrase), the fields the status needs (Allow for 405, Upgrade and
 * Sec-WebSocket-Version for 426), extra fields, Content-Type text/plain
 * when there is a body and the extra fields name none, Content-Length,
 * Connection: close, and body (may be NULL).  Same results as
 * _build_response. */
int ws_handshake_build_refusal(ws_buf *out, int status, const char *reason,
                               const ws_handshake_field *fields,
                               size_t num_fields, const char *body,
                               size_t body_len);

/* ---- client side ---- */

typedef struct ws_handshake_request_spec {
  const char *host;       /* Host header value, e.g. "example.org:8080" */
  const char *target;     /* request-target, e.g. "/chat?x=1" */
  const char *key;        /* from ws_handshake_make_key */
  const char *protocols;  /* "chat, superchat" or NULL */
  const char *extensions; /* offer, or NULL */
  const char *origin;     /* or NULL */
  const ws_handshake_field *fields; /* extra headers */
  size_t num_fields;
} ws_handshake_request_spec;

/* Write the GET upgrade request (origin, protocols and extensions are sent
 * when neither NULL nor "").  host must be non-empty, target free of spaces
 * and control bytes, key well-formed.  Same results as _build_response. */
int ws_handshake_build_request(ws_buf *out, const ws_handshake_request_spec *s);

typedef struct ws_handshake_answer {
  const char *message;    /* on refusal: why, in words (may point at text) */
  const char *protocol;   /* chosen subprotocol (points into the response) */
  size_t protocol_len;    /* 0 when none */
  const char *extensions; /* agreed extensions, or NULL */
  size_t extensions_len;
  char text[160]; /* storage for formatted messages: copy message out
                     before copying or freeing the struct */
} ws_handshake_answer;

/* Check the server's answer (RFC 6455 4.1): status 101, Upgrade: websocket,
 * Connection: upgrade, exactly one Sec-WebSocket-Accept equal to the value
 * for key, exactly one Sec-WebSocket-Protocol whose value is exactly
 * (case-sensitively) one element of offered_protocols (comma list) when
 * it has elements, none when it is NULL or has none (as the browser
 * rules, which are stricter than RFC 6455's),
 * and no Sec-WebSocket-Extensions unless extensions were offered (then at
 * most one such field, whose value is returned).  Returns 0 or
 * WS_ERROR with a->message ("server answered 401 Unauthorized", "wrong
 * Sec-WebSocket-Accept", ...). */
int ws_handshake_check_response(const ws_http_response *res, const char *key,
                                const char *offered_protocols,
                                bool offered_extensions,
                                ws_handshake_answer *a);

#endif

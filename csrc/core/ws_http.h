/*
 * ws_http.h -- the HTTP/1.1 subset of the opening handshake (RFC 7230).
 *
 * Parses a request or response head (start line, header fields, empty
 * line) in place: names and values point into the caller's buffer, which
 * must outlive the result.  Strict where the handshake needs it: CRLF line
 * ends (a bare LF is accepted as the RFC allows a recipient to), token
 * characters in methods and header names, no whitespace before the colon,
 * no obsolete line folding, no NUL or other control bytes in values.
 * Optional whitespace around values is trimmed.
 *
 * Results: the head's length in bytes (> 0, up to and including the empty
 * line), WS_INCOMPLETE, or WS_ERROR with an HTTP status for the refusal
 * (400 malformed, 431 too many header fields, 505 not HTTP/1.x) and a
 * message.  The caller bounds the head's size (max_handshake).
 */
#ifndef MOONWS_WS_HTTP_H
#define MOONWS_WS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "ws_proto.h"

#define WS_HTTP_MAX_HEADERS 100

typedef struct ws_http_header {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} ws_http_header;

typedef struct ws_http_request {
  const char *method;
  size_t method_len;
  const char *target; /* request-target as sent, e.g. "/chat?x=1" */
  size_t target_len;
  int version_minor;  /* HTTP/1.<minor> */
  ws_http_header headers[WS_HTTP_MAX_HEADERS];
  size_t num_headers;
  int status;          /* on WS_ERROR: the HTTP status to refuse with */
  const char *message; /* on WS_ERROR: why, in words */
} ws_http_request;

typedef struct ws_http_response {
  int version_minor;
  int status;
  const char *reason;
  size_t reason_len;
  ws_http_header headers[WS_HTTP_MAX_HEADERS];
  size_t num_headers;
  const char *message; /* on WS_ERROR: why, in words */
} ws_http_response;

int ws_http_parse_request(const char *buf, size_t len, ws_http_request *req);
int ws_http_parse_response(const char *buf, size_t len, ws_http_response *res);

/* The first header named name (ASCII case-insensitive), or NULL; *count
 * (if not NULL) receives how many headers have that name. */
const ws_http_header *ws_http_header_find(const ws_http_header *headers,
                                          size_t n, const char *name,
                                          size_t *count);

/* Iterate the comma-separated list in value[0, len): each call stores the
 * next non-empty element (trimmed of spaces and tabs) in *item and *item_len
 * and returns true, or returns false at the end.  *pos starts at 0.
 * Elements are returned whole (a token with parameters, like
 * "permessage-deflate; client_max_window_bits", is one element). */
bool ws_http_list_next(const char *value, size_t len, size_t *pos,
                       const char **item, size_t *item_len);

/* Does the comma-separated list contain token (case-insensitive)? */
bool ws_http_list_has(const char *value, size_t len, const char *token);

/* Is s[0, n) an RFC 7230 token (the characters of a header name)? */
bool ws_http_is_token(const char *s, size_t n);

/* May s[0, n) be sent as a header value: no CR, LF, NUL or other control
 * bytes besides tab (prevents header injection from user options). */
bool ws_http_is_field_value(const char *s, size_t n);

/* The standard reason phrase of a status ("Bad Request"), or "Unknown". */
const char *ws_http_reason_phrase(int status);

#endif

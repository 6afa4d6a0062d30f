/*
 * ws_http.c -- one pass over an HTTP/1.x head, in the manner of
 * picohttpparser: no state survives between calls, the caller parses again
 * from the start when more bytes arrive (heads are small and bounded by
 * max_handshake).  Each byte is judged when it is first seen, so a bad head
 * fails at the byte that makes the error certain, not at the empty line.
 */
#include "ws_http.h"

#include <limits.h>
#include <string.h>

typedef struct scan {
  const char *p, *end;
  int status; /* on WS_ERROR: the HTTP status for the refusal */
  const char *message;
} scan;

static int fail(scan *s, int status, const char *message) {
  s->status = status;
  s->message = message;
  return WS_ERROR;
}

static bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
    return true;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

static bool ascii_ieq(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z')
      x |= 0x20;
    if (y >= 'A' && y <= 'Z')
      y |= 0x20;
    if (x != y)
      return false;
  }
  return true;
}

/* A line end at s->p: CRLF, or a bare LF. */
static int eol(scan *s, const char *unexpected) {
  if (s->p == s->end)
    return WS_INCOMPLETE;
  if (*s->p == '\n') {
    s->p++;
    return 0;
  }
  if (*s->p != '\r')
    return fail(s, 400, unexpected);
  if (s->p + 1 == s->end)
    return WS_INCOMPLETE;
  if (s->p[1] != '\n')
    return fail(s, 400, "CR not followed by LF");
  s->p += 2;
  return 0;
}

/* "HTTP/" DIGIT "." DIGIT.  Which version it names is judged by the
 * caller after the byte that follows, so "HTTP/2.0x" is garbage (400), not
 * an unsupported version (505). */
static int version(scan *s, char *major, char *minor) {
  static const char form[] = "HTTP/0.0";
  for (size_t i = 0; i < sizeof form - 1; i++, s->p++) {
    if (s->p == s->end)
      return WS_INCOMPLETE;
    char c = *s->p;
    if (form[i] == '0' ? !(c >= '0' && c <= '9') : c != form[i])
      return fail(s, 400, "malformed HTTP version");
    if (i == 5)
      *major = c;
    else if (i == 7)
      *minor = c;
  }
  return 0;
}

/* Header fields up to and including the empty line. */
static int fields(scan *s, ws_http_header *h, size_t *num) {
  *num = 0;
  for (;;) {
    if (s->p == s->end)
      return WS_INCOMPLETE;
    unsigned char c = (unsigned char)*s->p;
    if (c == '\r' || c == '\n')
      return eol(s, "malformed header field");
    if (c == ' ' || c == '\t')
      return fail(s, 400, "obsolete line folding is not allowed");
    if (*num == WS_HTTP_MAX_HEADERS)
      return fail(s, 431, "too many header fields");
    ws_http_header *f = &h[*num];
    f->name = s->p;
    while (s->p < s->end && is_tchar((unsigned char)*s->p))
      s->p++;
    if (s->p == s->end)
      return WS_INCOMPLETE;
    c = (unsigned char)*s->p;
    if (c != ':')
      return fail(s, 400,
                  c == ' ' || c == '\t' ? "whitespace before colon in header field"
                  : c == '\r' || c == '\n' ? "header field without colon"
                                           : "invalid character in header name");
    if (s->p == f->name)
      return fail(s, 400, "empty header name");
    f->name_len = (size_t)(s->p - f->name);
    s->p++;
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t'))
      s->p++;
    f->value = s->p;
    const char *last = s->p; /* end of the value without trailing OWS */
    for (;; s->p++) {
      if (s->p == s->end)
        return WS_INCOMPLETE;
      c = (unsigned char)*s->p;
      if (c == '\r' || c == '\n')
        break;
      if (c == ' ' || c == '\t')
        continue;
      if (is_ctl(c))
        return fail(s, 400, "control character in header value");
      last = s->p + 1;
    }
    f->value_len = (size_t)(last - f->value);
    int r = eol(s, "malformed header field");
    if (r != 0)
      return r;
    (*num)++;
  }
}

static int request_line(scan *s, ws_http_request *req) {
  req->method = s->p;
  while (s->p < s->end && is_tchar((unsigned char)*s->p))
    s->p++;
  if (s->p == s->end)
    return WS_INCOMPLETE;
  if (*s->p != ' ' || s->p == req->method)
    return fail(s, 400, "malformed method");
  req->method_len = (size_t)(s->p - req->method);
  req->target = ++s->p;
  while (s->p < s->end && (unsigned char)*s->p > ' ' && *s->p != 0x7f)
    s->p++;
  if (s->p == s->end)
    return WS_INCOMPLETE;
  if (*s->p != ' ' || s->p == req->target)
    return fail(s, 400, "malformed request target");
  req->target_len = (size_t)(s->p - req->target);
  s->p++;
  char major = 0, minor = 0;
  int r = version(s, &major, &minor);
  if (r == 0)
    r = eol(s, "malformed request line");
  if (r != 0)
    return r;
  /* RFC 7230 2.6: a higher 1.x minor version is handled as 1.1. */
  if (major != '1')
    return fail(s, 505, "unsupported HTTP version");
  req->version_minor = minor - '0';
  return 0;
}

static int status_line(scan *s, ws_http_response *res) {
  char major = 0, minor = 0;
  int r = version(s, &major, &minor);
  if (r != 0)
    return r;
  if (s->p == s->end)
    return WS_INCOMPLETE;
  if (*s->p != ' ')
    return fail(s, 400, "malformed status line");
  if (major != '1')
    return fail(s, 505, "unsupported HTTP version");
  res->version_minor = minor - '0';
  s->p++;
  int status = 0;
  for (int i = 0; i < 3; i++, s->p++) {
    if (s->p == s->end)
      return WS_INCOMPLETE;
    if (*s->p < '0' || *s->p > '9')
      return fail(s, 400, "malformed status code");
    status = status * 10 + (*s->p - '0');
  }
  if (status < 100)
    return fail(s, 400, "malformed status code");
  res->status = status;
  if (s->p == s->end)
    return WS_INCOMPLETE;
  if (*s->p == ' ')
    s->p++;
  else if (*s->p != '\r' && *s->p != '\n')
    return fail(s, 400, "malformed status code");
  res->reason = s->p;
  while (s->p < s->end && *s->p != '\r' && *s->p != '\n') {
    unsigned char c = (unsigned char)*s->p++;
    if (is_ctl(c) && c != '\t')
      return fail(s, 400, "control character in reason phrase");
  }
  res->reason_len = (size_t)(s->p - res->reason);
  return eol(s, "malformed status line");
}

/* The head's length, or the error; a head longer than INT_MAX (or input
 * that long without one) cannot be reported in an int and is refused. */
static int finish(scan *s, int r, const char *buf, size_t len) {
  if (r == 0 && s->p - buf > INT_MAX)
    r = fail(s, 431, "header section too large");
  if (r == WS_INCOMPLETE && len >= INT_MAX)
    r = fail(s, 431, "header section too large");
  return r == 0 ? (int)(s->p - buf) : r;
}

int ws_http_parse_request(const char *buf, size_t len, ws_http_request *req) {
  req->method = req->target = NULL;
  req->method_len = req->target_len = 0;
  req->version_minor = 0;
  req->num_headers = 0;
  req->status = 0;
  req->message = NULL;
  if (len == 0)
    return WS_INCOMPLETE;
  scan s = {buf, buf + len, 0, NULL};
  int r = request_line(&s, req);
  if (r == 0)
    r = fields(&s, req->headers, &req->num_headers);
  r = finish(&s, r, buf, len);
  if (r == WS_ERROR) {
    req->status = s.status;
    req->message = s.message;
  }
  return r;
}

int ws_http_parse_response(const char *buf, size_t len, ws_http_response *res) {
  res->version_minor = 0;
  res->status = 0;
  res->reason = NULL;
  res->reason_len = 0;
  res->num_headers = 0;
  res->message = NULL;
  if (len == 0)
    return WS_INCOMPLETE;
  scan s = {buf, buf + len, 0, NULL};
  int r = status_line(&s, res);
  if (r == 0)
    r = fields(&s, res->headers, &res->num_headers);
  r = finish(&s, r, buf, len);
  if (r == WS_ERROR)
    res->message = s.message;
  return r;
}

const ws_http_header *ws_http_header_find(const ws_http_header *headers,
                                          size_t n, const char *name,
                                          size_t *count) {
  size_t name_len = strlen(name), found = 0;
  const ws_http_header *first = NULL;
  for (size_t i = 0; i < n; i++) {
    if (headers[i].name_len == name_len &&
        ascii_ieq(headers[i].name, name, name_len)) {
      if (!first)
        first = &headers[i];
      found++;
    }
  }
  if (count)
    *count = found;
  return first;
}

/* Commas inside a quoted-string (an extension parameter's value) do not
 * split the list. */
bool ws_http_list_next(const char *value, size_t len, size_t *pos,
                       const char **item, size_t *item_len) {
  size_t i = *pos;
  while (i < len) {
    size_t start = i;
    bool quoted = false;
    for (; i < len; i++) {
      char c = value[i];
      if (quoted) {
        if (c == '\\' && i + 1 < len)
          i++;
        else if (c == '"')
          quoted = false;
      } else if (c == '"') {
        quoted = true;
      } else if (c == ',') {
        break;
      }
    }
    size_t stop = i;
    if (i < len)
      i++; /* the comma */
    while (start < stop && (value[start] == ' ' || value[start] == '\t'))
      start++;
    while (stop > start && (value[stop - 1] == ' ' || value[stop - 1] == '\t'))
      stop--;
    if (stop > start) {
      *item = value + start;
      *item_len = stop - start;
      *pos = i;
      return true;
    }
  }
  *pos = i;
  return false;
}

bool ws_http_list_has(const char *value, size_t len, const char *token) {
  size_t token_len = strlen(token), pos = 0, n;
  const char *item;
  while (ws_http_list_next(value, len, &pos, &item, &n))
    if (n == token_len && ascii_ieq(item, token, n))
      return true;
  return false;
}

bool ws_http_is_token(const char *s, size_t n) {
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!is_tchar((unsigned char)s[i]))
      return false;
  return true;
}

bool ws_http_is_field_value(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (is_ctl((unsigned char)s[i]) && s[i] != '\t')
      return false;
  return true;
}

const char *ws_http_reason_phrase(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 407: return "Proxy Authentication Required";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

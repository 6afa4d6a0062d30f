/*
 * ws_proto.h -- the facts of RFC 6455 that every layer of moonws shares.
 *
 * One source of truth: opcodes, close codes (with their RFC/IANA names),
 * the stable error names of the public API, default limits, and the result
 * convention of every parsing function in csrc/core.  The Lua binding
 * exports the tables below as moonws.codes and moonws.errors, and the Lua
 * layer's error constants (lua/moonws/errors.lua) are made from the
 * latter, so nothing else spells these numbers or names.
 *
 * Result convention (as picohttpparser): a parser returns the number of
 * bytes it consumed (>= 0), WS_INCOMPLETE when it needs more input, or
 * WS_ERROR for a protocol error, whose close code / HTTP status and message
 * are then in the parser's out-structure.  No return value means two things.
 */
#ifndef MOONWS_WS_PROTO_H
#define MOONWS_WS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_INCOMPLETE (-2)
#define WS_ERROR (-1)

/* Frame opcodes (RFC 6455 5.2). */
enum ws_opcode {
  WS_OP_CONTINUATION = 0x0,
  WS_OP_TEXT = 0x1,
  WS_OP_BINARY = 0x2,
  WS_OP_CLOSE = 0x8,
  WS_OP_PING = 0x9,
  WS_OP_PONG = 0xA
};
#define WS_OPCODE_IS_CONTROL(op) (((op) & 0x8) != 0)

/* RSV bits as they sit in the first header byte. */
#define WS_RSV1 0x40
#define WS_RSV2 0x20
#define WS_RSV3 0x10

/* Control frame payloads are at most 125 bytes; a close reason at most 123. */
#define WS_CONTROL_MAX 125
#define WS_CLOSE_REASON_MAX 123

/* Close codes 1000-1015 with the names moonws.codes uses (RFC 6455 7.4.1,
 * IANA "WebSocket Close Code Number Registry"). */
#define WS_CLOSE_CODES(X)                                                      \
  X(1000, NORMAL)                                                              \
  X(1001, GOING_AWAY)                                                          \
  X(1002, PROTOCOL_ERROR)                                                      \
  X(1003, UNSUPPORTED_DATA)                                                    \
  X(1004, RESERVED)                                                            \
  X(1005, NO_STATUS_RECEIVED)                                                  \
  X(1006, ABNORMAL_CLOSURE)                                                    \
  X(1007, INVALID_PAYLOAD)                                                     \
  X(1008, POLICY_VIOLATION)                                                    \
  X(1009, MESSAGE_TOO_BIG)                                                     \
  X(1010, MANDATORY_EXTENSION)                                                 \
  X(1011, INTERNAL_ERROR)                                                      \
  X(1012, SERVICE_RESTART)                                                     \
  X(1013, TRY_AGAIN_LATER)                                                     \
  X(1014, BAD_GATEWAY)                                                         \
  X(1015, TLS_HANDSHAKE)

enum ws_close_code {
#define WS_CLOSE_ENUM_(num, name) WS_CLOSE_##name = num,
  WS_CLOSE_CODES(WS_CLOSE_ENUM_)
#undef WS_CLOSE_ENUM_
};

/* The RFC name of a code in 1000..1015, or NULL. */
const char *ws_close_code_name(unsigned code);

/* May this code appear in a close frame on the wire (RFC 6455 7.4)?
 * 1000-1003, 1007-1014 and 3000-4999. 1004-1006 and 1015 never do. */
bool ws_close_code_valid_on_wire(unsigned code);

/* The text naming the codes an application may send (ws_close_code_
 * valid_on_wire): the one phrase every "not allowed" error uses. */
#define WS_CLOSE_CODES_SENDABLE "1000-1003, 1007-1014 or 3000-4999"

/* Stable machine-readable error names of the public API: runtime failures
 * return nil, message, name and error events carry event.error = name.
 * (C identifier suffix, public name, what it means.) */
#define WS_ERRORS(X)                                                           \
  X(CLOSED, "closed", "the connection is closed or closing")                   \
  X(TIMEOUT, "timeout", "an operation or the peer took too long")              \
  X(REFUSED, "refused", "the TCP connection was refused")                      \
  X(RESOLVE, "resolve", "the host name could not be resolved")                 \
  X(IO, "io", "a socket error (reset, unreachable, broken pipe)")              \
  X(HANDSHAKE, "handshake", "the HTTP upgrade was refused or invalid")         \
  X(PROTOCOL, "protocol", "the peer broke RFC 6455 (close 1002)")              \
  X(INVALID_DATA, "invalid_data", "invalid UTF-8 in text or reason (1007)")    \
  X(TOO_BIG, "too_big", "a size limit was exceeded (close 1009)")              \
  X(TLS, "tls", "the TLS layer failed")                                        \
  X(PROXY, "proxy", "the HTTP proxy refused or failed the tunnel")             \
  X(NOMEM, "nomem", "out of memory")                                           \
  X(HANDLER, "handler", "an event handler raised an error")

enum ws_error {
  WS_E_NONE = 0,
#define WS_ERROR_ENUM_(id, name, text) WS_E_##id,
  WS_ERRORS(WS_ERROR_ENUM_)
#undef WS_ERROR_ENUM_
  WS_E_COUNT_
};

/* Public name ("protocol") and one-line description of an error. */
const char *ws_error_name(enum ws_error e);
const char *ws_error_description(enum ws_error e);

/* Default limits; each is an option of the same name (docs/DESIGN.md 1.5). */
#define WS_DEFAULT_MAX_PAYLOAD ((uint64_t)64 * 1024 * 1024)
#define WS_DEFAULT_MAX_FRAME ((uint64_t)64 * 1024 * 1024)
#define WS_DEFAULT_MAX_HANDSHAKE ((size_t)16 * 1024)
/* The body of a handshake refusal: what a server's handshake callback may
 * send with it, and what a client keeps of one it receives. */
#define WS_HANDSHAKE_BODY_MAX ((size_t)4096)

/* A source of cryptographically secure random bytes: returns 0 on success.
 * Cores take one so tests and fuzzers can make runs repeatable; the default
 * (ws_random_default) is OpenSSL's CSPRNG. */
typedef int (*ws_random_fn)(void *ud, uint8_t *out, size_t n);
int ws_random_default(void *ud, uint8_t *out, size_t n);

#endif

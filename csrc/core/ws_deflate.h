/*
 * ws_deflate.h -- permessage-deflate (RFC 7692): negotiation and the
 * per-connection compressor/decompressor, on zlib's raw deflate.
 *
 * Negotiation works on header values only (no HTTP, no I/O):
 *   client  ws_deflate_offer writes the Sec-WebSocket-Extensions offer;
 *           ws_deflate_check_response judges the server's answer against
 *           that offer (a bad answer fails the connection, RFC 7692 5).
 *   server  ws_deflate_accept picks the first acceptable permessage-deflate
 *           offer of the request and writes the answer; an offer with an
 *           unknown, repeated or invalid parameter is declined and the next
 *           one considered (RFC 7692 5, 7.1).
 * Names and parameters match ASCII case-insensitively; values may be
 * tokens or quoted strings; window bits are 8..15 without leading zeros.
 *
 * Window bits 8: zlib cannot compress with a 256-byte window (1.2.9 and
 * later refuse raw windowBits 8; older ones silently used 9).  moonws still
 * agrees to 8 for its own sending side and keeps the promise by compressing
 * with windowBits 9 and the Z_RLE strategy, whose only back-reference is
 * distance 1, valid for every window (weaker compression, correct stream).
 * Inflating, moonws always allocates at least a 512-byte window, so a peer
 * that agreed to 8 and sends a 9-bit stream (old zlib) is still understood.
 *
 * Runtime (ws_deflate, one per connection, owned by its creator -- ws_conn
 * only borrows it through ws_conn_config.deflate): messages are compressed
 * with Z_SYNC_FLUSH and the final 00 00 ff ff removed (7.2.1); received
 * ones get it appended before their end is inflated (7.2.2).  Memory: the
 * zlib streams are created on first use (an idle connection holds none),
 * then kept; *_no_context_takeover resets them per message (deflateReset /
 * inflateReset, no allocation); steady traffic allocates nothing.
 * Inflation runs in bounded steps into the caller's buffer and stops as
 * soon as the output passes the limit, so a small frame cannot make the
 * process allocate more than about the limit (a deflate bomb is a 1009).
 */
#ifndef MOONWS_WS_DEFLATE_H
#define MOONWS_WS_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws_buf.h"
#include "ws_conn.h"
#include "ws_proto.h"

#define WS_DEFLATE_DEFAULT_THRESHOLD 1024
#define WS_DEFLATE_DEFAULT_MEM_LEVEL 8
/* Room for any offer or answer these functions write (with the NUL). */
#define WS_DEFLATE_HEADER_MAX 160

/* What this side wants.  Client: what to offer.  Server: what it allows.
 * Window bits: 0 = not asked, else 8..15. */
typedef struct ws_deflate_options {
  bool enabled;
  /* client: ask the server to reset its compressor per message;
   * server: always reset ours (and say so) */
  bool server_no_context_takeover;
  /* client: promise (and offer) to reset ours per message;
   * server: require the client to reset its compressor */
  bool client_no_context_takeover;
  /* client: ask the server to compress within this window (saves our
   * inflate memory); server: the largest window we compress with */
  uint8_t server_max_window_bits;
  /* client: our compressor's window (offered as a value; 0 offers the
   * parameter without one, so the server may pick); server: the largest
   * window we let the client use -- an offer that does not let us limit
   * it (no client_max_window_bits) is then declined */
  uint8_t client_max_window_bits;
  size_t threshold; /* whole messages shorter than this go uncompressed */
  int level;        /* zlib level -1 (default) .. 9 */
  int mem_level;    /* zlib memLevel 1..9; 0 = WS_DEFLATE_DEFAULT_MEM_LEVEL */
} ws_deflate_options;

/* Defaults: enabled, nothing asked, threshold 1024, level -1, mem_level 8. */
void ws_deflate_options_init(ws_deflate_options *o);

/* NULL when o is usable, else why not (a window outside 0, 8..15, a level
 * outside -1..9, a mem_level outside 0..9). */
const char *ws_deflate_options_check(const ws_deflate_options *o);

/* The agreed parameters, exactly as in the server's answer. */
typedef struct ws_deflate_params {
  bool server_no_context_takeover;
  bool client_no_context_takeover;
  uint8_t server_max_window_bits; /* 0 = absent (the server may use 15) */
  uint8_t client_max_window_bits; /* 0 = absent (the client may use 15) */
} ws_deflate_params;

/* Client: write the offer for o into buf (NUL-terminated), e.g.
 * "permessage-deflate; client_max_window_bits".  Returns its length, or
 * WS_ERROR (o invalid, or size < WS_DEFLATE_HEADER_MAX). */
int ws_deflate_offer(const ws_deflate_options *o, char *buf, size_t size);

/* Server: negotiate from offers[0, len), the request's
 * Sec-WebSocket-Extensions value (several fields joined with ", ").  On
 * agreement fills *agreed, writes the answer into buf (NUL-terminated) and
 * returns 1; returns 0 (buf = "") when no offer is acceptable, or WS_ERROR
 * when o is invalid or size < WS_DEFLATE_HEADER_MAX.  The answer honours
 * the client's *_no_context_takeover, adds ours, never raises a window the
 * client limited, and names client_max_window_bits only when offered. */
int ws_deflate_accept(const char *offers, size_t len,
                      const ws_deflate_options *o, ws_deflate_params *agreed,
                      char *buf, size_t size);

/* Client: judge the server's answer[0, len) against what was offered
 * (offer, as written by ws_deflate_offer or by hand; one of its
 * permessage-deflate elements must admit the answer).  Returns 1 with
 * *agreed filled, 0 when the answer names no extension (compression off),
 * or WS_ERROR with *message (static text) for an answer that must fail the
 * connection: another or a second extension, an unknown, repeated or
 * invalid parameter, server_max_window_bits missing or larger than asked,
 * client_max_window_bits not offered, without a value or larger than
 * offered, server_no_context_takeover asked and not confirmed. */
int ws_deflate_check_response(const char *answer, size_t len,
                              const char *offer, size_t offer_len,
                              ws_deflate_params *agreed, const char **message);

/* Write p as an extension value (the answer, and ws.extensions) into buf.
 * Returns its length, or WS_ERROR when size < WS_DEFLATE_HEADER_MAX. */
int ws_deflate_format(const ws_deflate_params *p, char *buf, size_t size);

/* ---- runtime ---- */

typedef struct ws_deflate ws_deflate;

/* A compressor/decompressor for one connection of role with the agreed
 * parameters; o gives the local choices (threshold, level, mem_level, and a
 * client's own window and no_context_takeover hints).  No zlib state is
 * allocated yet.  NULL when out of memory or o is invalid. */
ws_deflate *ws_deflate_new(ws_role role, const ws_deflate_params *agreed,
                           const ws_deflate_options *o);
/* Free it and its zlib streams; NULL is ignored. */
void ws_deflate_free(ws_deflate *d);

/* Should a whole message of len bytes go compressed?  False below the
 * threshold, for len 0, and for good once compression was abandoned (a
 * message may always be sent uncompressed, RFC 7692 6).  ws_conn asks it
 * with SIZE_MAX for fragmented messages, which are compressed whenever
 * compression works. */
bool ws_deflate_wants(const ws_deflate *d, size_t len);

/* Compress the next piece data[0, len) of an outgoing message and append
 * the bytes to send for it to out, *produced of them (possibly 0 for a
 * non-final piece); fin ends the message (the 00 00 ff ff tail is removed;
 * a non-final piece's tail is held back and sent with the next bytes).
 * Returns WS_E_NONE or WS_E_NOMEM, with out's length unchanged.  A failure
 * after zlib took input loses the context: compression is abandoned (see
 * ws_deflate_wants) and a fragmented message in progress cannot be
 * finished -- fail the connection. */
enum ws_error ws_deflate_compress(ws_deflate *d, const void *data, size_t len,
                                  bool fin, ws_buf *out, size_t *produced);

/* Decompress the next piece in[0, len) of a received compressed message,
 * appending the output to out; fin: this is its last piece (the tail is
 * appended, the message must end on a block boundary).  Returns WS_E_NONE,
 * WS_E_TOO_BIG once out would hold more than max bytes (out is never grown
 * past a capacity of max + 1), WS_E_INVALID_DATA for corrupt data, or
 * WS_E_NOMEM; *why (static text, or zlib's) says what was wrong.  After an
 * error the stream is unusable: the caller fails the connection. */
enum ws_error ws_deflate_decompress(ws_deflate *d, const uint8_t *in,
                                    size_t len, bool fin, ws_buf *out,
                                    uint64_t max, const char **why);

/* The same in bounded slices, so a deflate bomb costs one slice per call
 * and its caller can serve others between slices.  The caller fills in,
 * len, fin and budget (output bytes this call may make); the call sets
 * used (input bytes taken, <= len), lowers budget by what it made, and
 * sets done when the piece is finished (with fin: the message is whole).
 * When done is false the budget ran out: call again with a new budget and
 * in + used (the same fin), even when no input is left, since zlib may
 * still owe output.  Results as ws_deflate_decompress. */
typedef struct ws_inflate_step {
  const uint8_t *in;
  size_t len;
  bool fin;
  size_t budget;
  size_t used;
  bool done;
} ws_inflate_step;

enum ws_error ws_deflate_inflate(ws_deflate *d, ws_inflate_step *st,
                                 ws_buf *out, uint64_t max, const char **why);

/* Sharing one compressor among connections (ws_fanout.h).  Two
 * compressors of one shape that both start every message afresh (no
 * context takeover on the sending side) turn a message into the same bytes,
 * so one may compress it for all of them. */
typedef struct ws_deflate_shape {
  int bits, strategy, level, mem_level;
} ws_deflate_shape;

/* Whether d starts every message it sends from a fresh compressor; fills
 * *shape when it does.  False for NULL and once compression was abandoned. */
bool ws_deflate_fresh(const ws_deflate *d, ws_deflate_shape *shape);

/* A compressor of that shape, fresh for every message, with no threshold
 * (free with ws_deflate_free; it is never used to inflate).  NULL when out
 * of memory. */
ws_deflate *ws_deflate_new_shared(const ws_deflate_shape *shape);

/* Memory accounting, for tests and the documentation. */
typedef struct ws_deflate_stats {
  size_t zlib_bytes;      /* held by zlib now */
  size_t zlib_peak;       /* most ever held at once */
  unsigned long zlib_allocs; /* allocations zlib made so far */
  int deflate_window_bits;   /* what zlib compresses with (9..15) */
  int inflate_window_bits;   /* what zlib inflates with (9..15) */
} ws_deflate_stats;

void ws_deflate_get_stats(const ws_deflate *d, ws_deflate_stats *s);

#endif

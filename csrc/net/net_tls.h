/*
 * net_tls.h -- TLS (OpenSSL 3) as a net_transport, client and server.
 *
 * A net_tls_ctx is one configuration turned into one SSL_CTX: created once
 * (files are loaded and checked then, so a bad certificate is an error at
 * configuration time, not at the first connection) and shared by every
 * connection using it.  It is reference-counted: each transport holds a
 * reference, so the creator may drop its own while connections live.
 *
 * A TLS transport wraps a connected nonblocking socket.  Nothing blocks:
 * the handshake, reads, writes and the shutdown each return "want read" or
 * "want write" (either can come from any call: an SSL_write may need to read
 * and an SSL_read to write) and are simply called again once the fd is
 * ready.  Writes never raise SIGPIPE (the socket BIO sends with
 * MSG_NOSIGNAL).  Failures leave a message in words inside the transport
 * (t->message, valid until the transport is destroyed) and set t->err to
 * the errno when a socket call failed, else 0.
 *
 * Decrypted bytes may wait inside the transport while the fd is idle
 * (a record bigger than the read, or several records read at once):
 * after a read returned bytes, call pending() before waiting on the fd.
 * The same holds right after the handshake: the peer's first bytes may
 * have arrived with its last handshake message.  pending() is false again
 * once a read wanted the socket, so a loop "read while pending" ends.
 *
 * The transport's operations, beyond net_transport.h:
 *   read   NET_EOF on close_notify and also on a TCP close without it (as
 *          plain TCP reads a close); drives the handshake if not done.
 *   write  partial writes (one record at a time); after NET_WANT_*, call
 *          again with at least the same bytes, from any address (the
 *          caller's buffer may have grown and moved).
 *   shutdown  one nonblocking attempt to send close_notify, then
 *          shutdown(SHUT_WR): 0 done; NET_WANT_WRITE while the alert waits
 *          for the socket, or while a write is half sent (finish the
 *          write, then call again).  Never reads: reading on continues.
 *   destroy  frees the SSL, drops the context reference, closes the fd;
 *          sends nothing.
 *
 * Not thread-bound: contexts may be shared across threads; a transport is
 * used by one thread at a time.
 */
#ifndef MOONWS_NET_TLS_H
#define MOONWS_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "net_transport.h"

typedef struct net_tls_ctx net_tls_ctx;

typedef struct net_tls_config {
  bool server;
  /* Client: verify the server's chain and name (callers default it to
   * true; false accepts any certificate).  Server: require and verify a
   * client certificate (mutual TLS); needs cafile or capath. */
  bool verify;
  const char *cafile; /* PEM bundle of trusted CAs; NULL: the system store */
  const char *capath; /* c_rehash'ed directory of trusted CAs */
  const char *cert;   /* PEM chain, leaf first: server (required) / client */
  const char *key;    /* PEM private key (not encrypted); NULL: in cert */
  const char *ciphers; /* OpenSSL cipher list for TLS 1.2; NULL: defaults */
} net_tls_config;

/* A context for cfg, with one reference owned by the caller.  NULL on
 * failure with a message in err (e.g. "cannot load certificate
 * server.pem: no such file", "private key does not match the
 * certificate", "a TLS server needs a certificate (cert)"); out of memory
 * is reported the same way.  Both sides: TLS 1.2 minimum, ALPN
 * "http/1.1", no TLS-level renegotiation, a peer closing TCP without
 * close_notify reads as end of stream. */
net_tls_ctx *net_tls_ctx_new(const net_tls_config *cfg, char *err,
                             size_t errsize);
void net_tls_ctx_ref(net_tls_ctx *ctx);
/* Drop one reference; the last one frees the SSL_CTX.  NULL is ignored. */
void net_tls_ctx_unref(net_tls_ctx *ctx);
bool net_tls_ctx_is_server(const net_tls_ctx *ctx);

/* A TLS transport over the connected nonblocking socket fd, taking a
 * reference to ctx and ownership of fd (destroy closes it).  Client:
 * servername (NULL: none) is the name the certificate must match -- a DNS
 * name is also sent as SNI; an IP literal ("127.0.0.1", "::1" or "[::1]")
 * is matched against the certificate's IP addresses and sends no SNI.
 * Ignored for a server.  NULL on failure with a message in err; fd is then
 * left open and owned by the caller. */
net_transport *net_tls_transport_new(net_tls_ctx *ctx, int fd,
                                     const char *servername, char *err,
                                     size_t errsize);

/* Is t a TLS transport (made by net_tls_transport_new)? */
bool net_tls_is_tls(const net_transport *t);

/* Drive the handshake: 0 done (also on later calls), NET_WANT_READ or
 * NET_WANT_WRITE to be called again when the fd is ready, NET_FAIL with
 * t->message, e.g. "certificate verify failed: hostname mismatch",
 * "certificate verify failed: self-signed certificate", "tlsv1 alert
 * unknown ca", "connection closed during the TLS handshake" (t->err is 0),
 * or "connection reset by peer" (t->err = ECONNRESET).  A failure sticks:
 * later calls, reads and writes return NET_FAIL with the same message.
 * In TLS 1.3 a client may finish before the server checked the client's
 * certificate; a refusal then arrives as a failed read ("tlsv13 alert
 * certificate required"). */
int net_tls_handshake(net_transport *t);

/* What the handshake negotiated (for logs and tests). */
typedef struct net_tls_info {
  const char *version; /* "TLSv1.3"; static */
  const char *cipher;  /* "TLS_AES_256_GCM_SHA384"; static */
  char alpn[32];       /* "http/1.1", or "" when none was agreed */
  char peer_subject[256]; /* RFC 2253 ("CN=localhost"), "" without one */
  char servername[256];   /* SNI: sent (client) or received (server), or "" */
  bool verified;       /* a peer certificate was presented and verified */
} net_tls_info;

/* Fill *info; false when t is not TLS or its handshake is not done. */
bool net_tls_get_info(net_transport *t, net_tls_info *info);

#endif

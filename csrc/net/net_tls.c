/*
 * net_tls.c -- OpenSSL 3 behind the net_transport interface: one refcounted
 * SSL_CTX per configuration, one SSL per connection over our own socket BIO
 * (send with MSG_NOSIGNAL: OpenSSL's uses write(), which raises SIGPIPE;
 * and Winsock calls on Windows), every OpenSSL outcome mapped to bytes,
 * want read/write, end, or failure.  On Windows the default trust store is
 * the system's "ROOT" certificate store (OpenSSL 3.0 has no loader for it).
 */
#include "net_tls.h"
#include "net_sys.h"
#include "net_tcp.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef NET_SYS_WINDOWS
#include <io.h>
#include <wincrypt.h>
#define access _access
#ifndef R_OK
#define R_OK 4
#endif
#ifndef S_ISDIR
#define S_ISDIR(m) (((m) & S_IFMT) == S_IFDIR)
#endif
#define SOCK(fd) ((SOCKET)(uintptr_t)(fd))
#define LEN(n) ((int)(n))
#define IO_MAX ((size_t)INT_MAX)
#else
#include <arpa/inet.h>
#include <unistd.h>
#define SOCK(fd) (fd)
#define LEN(n) (n)
#define IO_MAX ((size_t)SSIZE_MAX)
#endif

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define MSG_SIZE 256

struct net_tls_ctx {
  SSL_CTX *ssl;
  atomic_int refs;
  bool server;
};

typedef struct tls_transport {
  net_transport base; /* first: a net_transport * is a tls_transport * */
  SSL *ssl;
  net_tls_ctx *ctx;
  int sys_err;       /* errno of the last failed recv/send in the BIO */
  bool eof;          /* the BIO read end of stream */
  bool no_read;      /* the BIO must not read (during SSL_shutdown) */
  bool done;         /* handshake complete */
  bool fatal;        /* OpenSSL failed: no further SSL calls but SSL_free */
  bool read_blocked; /* the last read wanted the socket: nothing buffered */
  bool write_pending; /* the last write wanted the socket: a record waits */
  unsigned char shut; /* 0 no close_notify yet, 1 queued, 2 sent */
  char msg[MSG_SIZE];
} tls_transport;

static const unsigned char alpn_wire[] = "\x08http/1.1";

/* ---- messages ---- */

#ifdef __GNUC__
static void set_msg(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#endif
static void set_msg(char *buf, size_t size, const char *fmt, ...) {
  if (!buf || !size)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, size, fmt, ap);
  va_end(ap);
}

/* The oldest error queued by OpenSSL (the root cause; later entries are
 * the callers' "PEM lib" and the like) in words; clears the queue. */
static const char *openssl_reason(char *buf, size_t size) {
  unsigned long e = ERR_peek_error();
  const char *r = NULL;
  if (e == 0)
    r = "unknown error";
  else if (ERR_SYSTEM_ERROR(e))
    r = net_errno_text((int)ERR_GET_REASON(e));
  else
    r = ERR_reason_error_string(e);
  if (r)
    snprintf(buf, size, "%s", r);
  else
    ERR_error_string_n(e, buf, size);
  ERR_clear_error();
  return buf;
}

/* Checked before OpenSSL opens the file: its loaders reduce the errno to
 * "system lib", and a directory opens fine and then reads as garbage. */
static bool file_check(const char *what, const char *path, char *err,
                       size_t errsize, bool want_dir) {
  struct stat st;
  int e = 0;
  if (stat(path, &st) != 0)
    e = errno;
  else if (want_dir && !S_ISDIR(st.st_mode))
    e = ENOTDIR;
  else if (!want_dir && S_ISDIR(st.st_mode))
    e = EISDIR;
  else if (access(path, R_OK) != 0)
    e = errno;
  if (e == 0)
    return true;
  char buf[128];
  const char *why = e == ENOTDIR ? "not a directory"
                    : e == ENOENT || e == EACCES || e == EISDIR
                        ? net_errno_text(e)
                        : net_sys_strerror(e, buf, sizeof buf);
  set_msg(err, errsize, "cannot load %s %s: %s", what, path, why);
  return false;
}

/* ---- the socket BIO ---- */

static BIO_METHOD *sock_method;
static net_once sock_once = NET_ONCE_INIT;

/* When the module is unloaded (dlclose at lua_close) or the process ends:
 * the method would otherwise be lost with the static pointer. */
#ifdef __GNUC__
__attribute__((destructor))
#endif
static void free_sock_method(void) {
  BIO_meth_free(sock_method);
  sock_method = NULL;
}

static int sock_read(BIO *b, char *buf, size_t n, size_t *got) {
  tls_transport *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  *got = 0;
  if (t->no_read) {
    BIO_set_retry_read(b);
    return 0;
  }
  if (n > IO_MAX)
    n = IO_MAX;
  for (;;) {
    ssize_t r = recv(SOCK(t->base.fd), buf, LEN(n), 0);
    if (r > 0) {
      *got = (size_t)r;
      return 1;
    }
    if (r == 0) {
      t->eof = true;
      return 0;
    }
    int e = net_sys_error();
    if (e == EINTR)
      continue;
    if (e == EAGAIN || e == EWOULDBLOCK)
      BIO_set_retry_read(b);
    else
      t->sys_err = e;
    return 0;
  }
}

static int sock_write(BIO *b, const char *buf, size_t n, size_t *put) {
  tls_transport *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  *put = 0;
  if (n > IO_MAX)
    n = IO_MAX;
  for (;;) {
    net_sigpipe g;
    net_sigpipe_block(&g);
    ssize_t r = send(SOCK(t->base.fd), buf, LEN(n), NET_SEND_FLAGS);
    int e = r < 0 ? net_sys_error() : 0;
    net_sigpipe_restore(&g, e);
    if (r >= 0) {
      *put = (size_t)r;
      return r > 0;
    }
    if (e == EINTR)
      continue;
    if (e == EAGAIN || e == EWOULDBLOCK)
      BIO_set_retry_write(b);
    else
      t->sys_err = e;
    return 0;
  }
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr) {
  tls_transport *t = BIO_get_data(b);
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1;
  case BIO_CTRL_EOF: /* with SSL_OP_IGNORE_UNEXPECTED_EOF: a clean end */
    return t && t->eof;
  case BIO_C_GET_FD:
    if (!t)
      return -1;
    if (ptr)
      *(int *)ptr = t->base.fd;
    return t->base.fd;
  default:
    return 0;
  }
}

static void make_sock_method(void) {
  int type = BIO_get_new_index();
  if (type == -1)
    return;
  BIO_METHOD *m =
      BIO_meth_new(type | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                   "moonws socket");
  if (!m)
    return;
  if (!BIO_meth_set_read_ex(m, sock_read) ||
      !BIO_meth_set_write_ex(m, sock_write) ||
      !BIO_meth_set_ctrl(m, sock_ctrl)) {
    BIO_meth_free(m);
    return;
  }
  sock_method = m;
}

/* ---- contexts ---- */

/* Never prompt on a terminal for a passphrase: an encrypted key fails
 * (and *ud, when given, records that one was asked for). */
static int no_password(char *buf, int size, int rwflag, void *ud) {
  if (ud)
    *(bool *)ud = true;
  return -1;
}

/* Server ALPN: "http/1.1" when the client offers it, else no ALPN at all
 * (a client that offers only h2 still gets HTTP/1.1, as without ALPN). */
static int alpn_select(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  unsigned int i = 0;
  while (i < inlen) {
    unsigned int len = in[i];
    if (len == 0 || len > inlen - i - 1)
      break; /* malformed list: ignore the rest */
    if (len == alpn_wire[0] && memcmp(in + i + 1, alpn_wire + 1, len) == 0) {
      *out = in + i + 1;
      *outlen = (unsigned char)len;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

static bool load_cert_and_key(SSL_CTX *ssl, const net_tls_config *cfg,
                              char *err, size_t errsize) {
  char why[200];
  const char *keyfile = cfg->key ? cfg->key : cfg->cert;
  if (!file_check("certificate", cfg->cert, err, errsize, false))
    return false;
  if (SSL_CTX_use_certificate_chain_file(ssl, cfg->cert) != 1) {
    set_msg(err, errsize, "cannot load certificate %s: %s", cfg->cert,
            openssl_reason(why, sizeof why));
    return false;
  }
  if (!file_check("private key", keyfile, err, errsize, false))
    return false;
  bool asked = false;
  BIO *bio = BIO_new_file(keyfile, "r");
  EVP_PKEY *pkey =
      bio ? PEM_read_bio_PrivateKey(bio, NULL, no_password, &asked) : NULL;
  BIO_free(bio);
  if (!pkey) {
    unsigned long e = ERR_peek_error();
    bool none = ERR_GET_LIB(e) == ERR_LIB_OSSL_DECODER ||
                (ERR_GET_LIB(e) == ERR_LIB_PEM &&
                 ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
    set_msg(err, errsize, "cannot load private key %s: %s", keyfile,
            asked  ? "it is encrypted (passphrases are not supported)"
            : none ? "no PEM private key in the file"
                   : openssl_reason(why, sizeof why));
    ERR_clear_error();
    return false;
  }
  /* Checked here, before OpenSSL's own check inside use_PrivateKey, to
   * say which mistake it is rather than "key values mismatch". */
  X509 *leaf = SSL_CTX_get0_certificate(ssl);
  bool ok = leaf && X509_check_private_key(leaf, pkey) == 1 &&
            SSL_CTX_use_PrivateKey(ssl, pkey) == 1 &&
            SSL_CTX_check_private_key(ssl) == 1;
  EVP_PKEY_free(pkey);
  if (!ok) {
    ERR_clear_error();
    set_msg(err, errsize,
            "private key does not match the certificate (key %s, "
            "certificate %s)",
            keyfile, cfg->cert);
  }
  return ok;
}

#ifdef NET_SYS_WINDOWS
/* Every certificate of the system's "ROOT" store into ssl's trust store;
 * false when the store cannot be opened. */
static bool load_windows_roots(SSL_CTX *ssl) {
  HCERTSTORE store = CertOpenSystemStoreW(0, L"ROOT");
  if (!store)
    return false;
  X509_STORE *trust = SSL_CTX_get_cert_store(ssl);
  const CERT_CONTEXT *c = NULL;
  while ((c = CertEnumCertificatesInStore(store, c)) != NULL) {
    const unsigned char *der = c->pbCertEncoded;
    X509 *x = d2i_X509(NULL, &der, (long)c->cbCertEncoded);
    if (x) {
      X509_STORE_add_cert(trust, x); /* a duplicate is harmless */
      X509_free(x);
    }
  }
  CertCloseStore(store, 0);
  ERR_clear_error();
  return true;
}
#endif

static bool load_trust(SSL_CTX *ssl, const net_tls_config *cfg, char *err,
                       size_t errsize) {
  char why[200];
  if (!cfg->cafile && !cfg->capath) {
    if (cfg->server)
      return true;
#ifdef NET_SYS_WINDOWS
    if (!load_windows_roots(ssl)) {
      set_msg(err, errsize, "cannot open the Windows ROOT certificate store");
      return false;
    }
    return true;
#endif
    if (SSL_CTX_set_default_verify_paths(ssl) != 1) {
      set_msg(err, errsize, "cannot load the system trust store: %s",
              openssl_reason(why, sizeof why));
      return false;
    }
    return true;
  }
  if (cfg->cafile && !file_check("CA file", cfg->cafile, err, errsize, false))
    return false;
  if (cfg->capath &&
      !file_check("CA directory", cfg->capath, err, errsize, true))
    return false;
  if (SSL_CTX_load_verify_locations(ssl, cfg->cafile, cfg->capath) != 1) {
    set_msg(err, errsize, "cannot load CA %s: %s",
            cfg->cafile ? cfg->cafile : cfg->capath,
            openssl_reason(why, sizeof why));
    return false;
  }
  /* A server names the CAs it accepts, so clients pick the right cert. */
  if (cfg->server && cfg->cafile) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->cafile);
    if (names)
      SSL_CTX_set_client_CA_list(ssl, names);
    ERR_clear_error();
  }
  return true;
}

static bool configure(SSL_CTX *ssl, const net_tls_config *cfg, char *err,
                      size_t errsize) {
  char why[200];
  SSL_CTX_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF |
                               SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_NO_COMPRESSION);
  /* Partial writes and a moving buffer: the caller's output buffer grows
   * (and may move) between a write that wanted the socket and its retry. */
  SSL_CTX_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  /* One recv for many records instead of two per record; what this reads
   * beyond the current record is reported by pending(). */
  SSL_CTX_set_read_ahead(ssl, 1);
  SSL_CTX_set_default_passwd_cb(ssl, no_password);
  if (SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION) != 1) {
    set_msg(err, errsize, "cannot require TLS 1.2: %s",
            openssl_reason(why, sizeof why));
    return false;
  }
  if (cfg->ciphers && SSL_CTX_set_cipher_list(ssl, cfg->ciphers) != 1) {
    ERR_clear_error();
    set_msg(err, errsize, "no usable cipher in \"%s\"", cfg->ciphers);
    return false;
  }
  if (cfg->server) {
    if (!cfg->cert) {
      set_msg(err, errsize, "a TLS server needs a certificate (cert)");
      return false;
    }
    if (cfg->verify && !cfg->cafile && !cfg->capath) {
      set_msg(err, errsize,
              "verifying client certificates needs cafile or capath");
      return false;
    }
    /* No session resumption: every connection is a full handshake, and no
     * TLS 1.3 ticket follows it -- a client that never reads the tickets
     * resets the connection when it closes, and the server then loses
     * the client's last bytes. */
    SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ssl, 0);
    static const unsigned char sid[] = "moonws";
    SSL_CTX_set_session_id_context(ssl, sid, sizeof sid - 1);
    SSL_CTX_set_alpn_select_cb(ssl, alpn_select, NULL);
    SSL_CTX_set_verify(ssl,
                       cfg->verify ? SSL_VERIFY_PEER |
                                         SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                   : SSL_VERIFY_NONE,
                       NULL);
  } else {
    if (cfg->key && !cfg->cert) {
      set_msg(err, errsize, "a client key needs its certificate (cert)");
      return false;
    }
    SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set_alpn_protos(ssl, alpn_wire, sizeof alpn_wire - 1) != 0) {
      set_msg(err, errsize, "cannot set ALPN: %s",
              openssl_reason(why, sizeof why));
      return false;
    }
    SSL_CTX_set_verify(ssl, cfg->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                       NULL);
  }
  if (cfg->cert && !load_cert_and_key(ssl, cfg, err, errsize))
    return false;
  if ((cfg->verify || cfg->cafile || cfg->capath) &&
      !load_trust(ssl, cfg, err, errsize))
    return false;
  return true;
}

net_tls_ctx *net_tls_ctx_new(const net_tls_config *cfg, char *err,
                             size_t errsize) {
  ERR_clear_error();
  net_tls_ctx *ctx = malloc(sizeof *ctx);
  if (!ctx) {
    set_msg(err, errsize, "out of memory");
    return NULL;
  }
  ctx->ssl = SSL_CTX_new(cfg->server ? TLS_server_method() : TLS_client_method());
  if (!ctx->ssl) {
    char why[200];
    set_msg(err, errsize, "cannot create a TLS context: %s",
            openssl_reason(why, sizeof why));
    free(ctx);
    return NULL;
  }
  if (!configure(ctx->ssl, cfg, err, errsize)) {
    SSL_CTX_free(ctx->ssl);
    free(ctx);
    ERR_clear_error();
    return NULL;
  }
  atomic_init(&ctx->refs, 1);
  ctx->server = cfg->server;
  ERR_clear_error();
  return ctx;
}

void net_tls_ctx_ref(net_tls_ctx *ctx) {
  atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
}

void net_tls_ctx_unref(net_tls_ctx *ctx) {
  if (!ctx ||
      atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
    return;
  SSL_CTX_free(ctx->ssl);
  free(ctx);
}

bool net_tls_ctx_is_server(const net_tls_ctx *ctx) { return ctx->server; }

/* ---- the transport ---- */

static const net_transport_ops tls_ops;

bool net_tls_is_tls(const net_transport *t) { return t && t->ops == &tls_ops; }

static void begin(tls_transport *t) {
  ERR_clear_error();
  t->sys_err = 0;
}

/* Record why OpenSSL failed (ssl_error from SSL_get_error) in t->msg and
 * return NET_FAIL.  A failed chain or name check is named by the verify
 * result: the error queue only says "certificate verify failed". */
static ssize_t tls_fail(tls_transport *t, int ssl_error) {
  char why[200];
  t->fatal = true;
  t->base.err = 0;
  unsigned long e = ERR_peek_error();
  if (e == 0 && t->sys_err) {
    /* The socket failed (SSL_get_error may still say ZERO_RETURN when the
     * peer had closed first). */
    t->base.err = t->sys_err;
    snprintf(t->msg, sizeof t->msg, "%s", net_errno_text(t->sys_err));
  } else if (ssl_error == SSL_ERROR_SYSCALL && e == 0) {
    snprintf(t->msg, sizeof t->msg, "%s",
             t->done ? "connection closed"
                     : "connection closed during the TLS handshake");
  } else if (ssl_error == SSL_ERROR_ZERO_RETURN) {
    snprintf(t->msg, sizeof t->msg, "%s",
             t->done ? "the peer closed the TLS session"
                     : "connection closed during the TLS handshake");
  } else if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
             ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
             SSL_get_verify_result(t->ssl) != X509_V_OK) {
    snprintf(t->msg, sizeof t->msg, "certificate verify failed: %s",
             X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
  } else {
    snprintf(t->msg, sizeof t->msg, "%s", openssl_reason(why, sizeof why));
  }
  ERR_clear_error();
  t->base.message = t->msg;
  return NET_FAIL;
}

static ssize_t tls_misuse(tls_transport *t, int e, const char *what) {
  t->base.err = e;
  snprintf(t->msg, sizeof t->msg, "%s", what);
  t->base.message = t->msg;
  return NET_FAIL;
}

int net_tls_handshake(net_transport *bt) {
  tls_transport *t = (tls_transport *)bt;
  if (!net_tls_is_tls(bt))
    return NET_FAIL;
  if (t->done)
    return 0;
  if (t->fatal)
    return NET_FAIL;
  begin(t);
  int r = SSL_do_handshake(t->ssl);
  if (r == 1) {
    t->done = true;
    t->read_blocked = false; /* application data may have come with it */
    ERR_clear_error();
    return 0;
  }
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ) {
    t->read_blocked = true; /* what is buffered is a partial record */
    return NET_WANT_READ;
  }
  if (e == SSL_ERROR_WANT_WRITE)
    return NET_WANT_WRITE;
  return (int)tls_fail(t, e);
}

static ssize_t tls_read(net_transport *bt, void *buf, size_t n) {
  tls_transport *t = (tls_transport *)bt;
  if (n == 0)
    return tls_misuse(t, EINVAL, "invalid argument");
  if (t->fatal)
    return NET_FAIL; /* the message of the failure stays */
  if (n > SSIZE_MAX)
    n = SSIZE_MAX;
  begin(t);
  size_t got = 0;
  if (SSL_read_ex(t->ssl, buf, n, &got) == 1) {
    t->done = true;
    t->read_blocked = false;
    return (ssize_t)got;
  }
  int e = SSL_get_error(t->ssl, 0);
  switch (e) {
  case SSL_ERROR_WANT_READ:
    t->read_blocked = true;
    return NET_WANT_READ;
  case SSL_ERROR_WANT_WRITE:
    return NET_WANT_WRITE;
  case SSL_ERROR_ZERO_RETURN:
    if (!t->done)
      return tls_fail(t, e);
    return NET_EOF;
  case SSL_ERROR_SYSCALL:
    /* End of stream without close_notify (when OpenSSL did not already
     * turn it into ZERO_RETURN): an end, as for plain TCP. */
    if (t->done && !t->sys_err && ERR_peek_error() == 0) {
      t->fatal = true; /* no SSL_shutdown after SSL_ERROR_SYSCALL */
      t->base.message = "connection closed";
      return NET_EOF;
    }
    return tls_fail(t, e);
  default:
    return tls_fail(t, e);
  }
}

static ssize_t tls_write(net_transport *bt, const void *buf, size_t n) {
  tls_transport *t = (tls_transport *)bt;
  if (n == 0)
    return tls_misuse(t, EINVAL, "invalid argument");
  if (t->fatal)
    return NET_FAIL;
  if (t->shut)
    return tls_misuse(t, EPIPE, "write after shutdown");
  if (n > SSIZE_MAX)
    n = SSIZE_MAX;
  begin(t);
  size_t put = 0;
  if (SSL_write_ex(t->ssl, buf, n, &put) == 1) {
    t->done = true;
    t->write_pending = false;
    return (ssize_t)put;
  }
  int e = SSL_get_error(t->ssl, 0);
  t->write_pending = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
  if (e == SSL_ERROR_WANT_READ)
    return NET_WANT_READ;
  if (e == SSL_ERROR_WANT_WRITE)
    return NET_WANT_WRITE;
  return tls_fail(t, e);
}

/* Decrypted bytes, or whole records read ahead, that a read would return
 * without the socket.  has_pending also counts a partial record; once a
 * read wanted the socket, that is all it can be (AUTO_RETRY processes every
 * complete record), so it is not reported again until a read succeeds. */
static bool tls_pending(net_transport *bt) {
  tls_transport *t = (tls_transport *)bt;
  if (t->fatal)
    return false;
  return SSL_pending(t->ssl) > 0 ||
         (!t->read_blocked && SSL_has_pending(t->ssl) == 1);
}

/* One attempt to send close_notify, then half-close TCP like the plain
 * transport.  Not while a record of a write is half sent: the alert cannot
 * pass it, and SSL_shutdown would then fail the session ("bad write
 * retry"); the caller completes the write first (NET_WANT_WRITE).
 * SSL_shutdown is called again only while the alert is queued
 * (state 1): once sent, another call would read the peer's data and drop
 * it while waiting for its close_notify; the BIO refuses to read during the
 * call in any case.  Before the handshake or after a failure there is no
 * session to close: only TCP is. */
static int tls_shutdown(net_transport *bt) {
  tls_transport *t = (tls_transport *)bt;
  if (t->shut == 2)
    return 0;
  if (t->write_pending && !t->fatal)
    return NET_WANT_WRITE;
  if (t->done && !t->fatal) {
    begin(t);
    t->no_read = true;
    int r = SSL_shutdown(t->ssl);
    t->no_read = false;
    if (r < 0) {
      int e = SSL_get_error(t->ssl, r);
      if (e == SSL_ERROR_WANT_WRITE) {
        t->shut = 1;
        ERR_clear_error();
        return NET_WANT_WRITE;
      }
      if (e != SSL_ERROR_WANT_READ) /* WANT_READ: sent, awaiting the peer's */
        return (int)tls_fail(t, e);
    }
    ERR_clear_error();
  }
  t->shut = 2;
  if (shutdown(t->base.fd, SHUT_WR) != 0 && errno != ENOTCONN)
    return (int)tls_misuse(t, errno, net_errno_text(errno));
  return 0;
}

static void tls_destroy(net_transport *bt) {
  tls_transport *t = (tls_transport *)bt;
  if (!t)
    return;
  SSL_free(t->ssl); /* frees the BIO too */
  ERR_clear_error();
  net_tls_ctx_unref(t->ctx);
  if (t->base.fd >= 0)
    close(t->base.fd);
  free(t);
}

static const net_transport_ops tls_ops = {
    tls_read, tls_write, tls_pending, tls_shutdown, tls_destroy, NULL,
};

/* Set the name the server's certificate must carry: an IP literal is
 * matched against its IP addresses and not sent as SNI (RFC 6066 3 forbids
 * literals there); a DNS name is both. */
static bool set_peer_name(SSL *ssl, const char *name, char *err,
                          size_t errsize) {
  char host[256];
  size_t len = strlen(name);
  if (len >= 2 && name[0] == '[' && name[len - 1] == ']') {
    name++;
    len -= 2;
  }
  if (len && name[len - 1] == '.') /* "example.org." is example.org */
    len--;
  if (len == 0)
    return true;
  if (len >= sizeof host) {
    set_msg(err, errsize, "server name too long");
    return false;
  }
  memcpy(host, name, len);
  host[len] = '\0';
  unsigned char addr[16];
  if (inet_pton(AF_INET, host, addr) == 1 ||
      inet_pton(AF_INET6, host, addr) == 1) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1) {
      set_msg(err, errsize, "invalid IP address %s", host);
      return false;
    }
    return true;
  }
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (SSL_set_tlsext_host_name(ssl, host) != 1 ||
      SSL_set1_host(ssl, host) != 1) {
    set_msg(err, errsize, "invalid server name %s", host);
    return false;
  }
  return true;
}

net_transport *net_tls_transport_new(net_tls_ctx *ctx, int fd,
                                     const char *servername, char *err,
                                     size_t errsize) {
  net_run_once(&sock_once, make_sock_method);
  ERR_clear_error();
  if (!sock_method) {
    set_msg(err, errsize, "out of memory");
    return NULL;
  }
  tls_transport *t = calloc(1, sizeof *t);
  if (!t) {
    set_msg(err, errsize, "out of memory");
    return NULL;
  }
  t->base.ops = &tls_ops;
  t->base.fd = fd;
  t->ssl = SSL_new(ctx->ssl);
  BIO *bio = t->ssl ? BIO_new(sock_method) : NULL;
  if (!bio) {
    set_msg(err, errsize, "out of memory");
    goto fail;
  }
  BIO_set_data(bio, t);
  BIO_set_init(bio, 1);
  SSL_set_bio(t->ssl, bio, bio); /* one reference, owned by the SSL */
  if (ctx->server) {
    SSL_set_accept_state(t->ssl);
  } else {
    SSL_set_connect_state(t->ssl);
    if (servername && !set_peer_name(t->ssl, servername, err, errsize))
      goto fail;
  }
  net_tls_ctx_ref(ctx);
  t->ctx = ctx;
  ERR_clear_error();
  return &t->base;
fail:
  SSL_free(t->ssl);
  free(t);
  ERR_clear_error();
  return NULL;
}

bool net_tls_get_info(net_transport *bt, net_tls_info *info) {
  tls_transport *t = (tls_transport *)bt;
  memset(info, 0, sizeof *info);
  if (!net_tls_is_tls(bt) || !t->done)
    return false;
  info->version = SSL_get_version(t->ssl);
  const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
  info->cipher = c ? SSL_CIPHER_get_name(c) : "";
  const unsigned char *alpn = NULL;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
  if (alpn && alpn_len < sizeof info->alpn) {
    memcpy(info->alpn, alpn, alpn_len);
    info->alpn[alpn_len] = '\0';
  }
  const char *sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
  if (sni)
    snprintf(info->servername, sizeof info->servername, "%s", sni);
  X509 *peer = SSL_get0_peer_certificate(t->ssl);
  if (peer) {
    BIO *mem = BIO_new(BIO_s_mem());
    if (mem && X509_NAME_print_ex(mem, X509_get_subject_name(peer), 0,
                                  XN_FLAG_RFC2253) >= 0) {
      int n = BIO_read(mem, info->peer_subject,
                       (int)sizeof info->peer_subject - 1);
      info->peer_subject[n > 0 ? n : 0] = '\0';
    }
    BIO_free(mem);
    info->verified = SSL_get_verify_result(t->ssl) == X509_V_OK;
  }
  ERR_clear_error();
  return true;
}

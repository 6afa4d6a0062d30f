/*
 * test_tls.c -- TLS transports and contexts over real 127.0.0.1 TCP, both
 * ends nonblocking in this one thread, waited on with poll().  Certificates
 * (a throwaway CA, valid/expired/self-signed server certs, client certs, an
 * untrusted CA) are made with the OpenSSL API into a mkdtemp directory.
 */
#include "net_tcp.h"
#include "net_tls.h"
#include "net_transport.h"
#include "test_harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static char dir[64];
static int listen_fd = -1;

/* ---- certificates ---- */

static char *path(const char *name) {
  static char bufs[8][160];
  static int next;
  char *p = bufs[next++ % 8];
  snprintf(p, sizeof bufs[0], "%s/%s", dir, name);
  return p;
}

static bool add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value) {
  X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, v3, nid, value);
  if (!ext)
    return false;
  bool ok = X509_add_ext(x, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

/* A certificate for key named cn, signed by issuer (NULL: self-signed),
 * valid from..to days from now. */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer,
                       EVP_PKEY *issuer_key, long from, long to,
                       const char *san, bool ca) {
  static long serial = 1;
  X509 *x = X509_new();
  if (!x)
    return NULL;
  X509_set_version(x, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), from * 86400L);
  X509_gmtime_adj(X509_getm_notAfter(x), to * 86400L);
  X509_set_pubkey(x, key);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
  bool ok = add_ext(x, &v3, NID_basic_constraints,
                    ca ? "critical,CA:TRUE" : "CA:FALSE") &&
            add_ext(x, &v3, NID_subject_key_identifier, "hash") &&
            (!ca || add_ext(x, &v3, NID_key_usage,
                            "critical,keyCertSign,cRLSign")) &&
            (!san || add_ext(x, &v3, NID_subject_alt_name, san)) &&
            X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
  if (!ok) {
    X509_free(x);
    return NULL;
  }
  return x;
}

static bool write_pem(const char *name, X509 *cert, EVP_PKEY *key,
                      const char *passphrase) {
  FILE *f = fopen(path(name), "w");
  if (!f)
    return false;
  bool ok = true;
  if (cert)
    ok = PEM_write_X509(f, cert) == 1;
  if (key)
    ok = ok && PEM_write_PrivateKey(
                   f, key, passphrase ? EVP_aes_128_cbc() : NULL,
                   (const unsigned char *)passphrase,
                   passphrase ? (int)strlen(passphrase) : 0, NULL, NULL) == 1;
  return fclose(f) == 0 && ok;
}

static bool make_certs(void) {
  EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *ca2_key = EVP_EC_gen("P-256");
  EVP_PKEY *srv_key = EVP_EC_gen("P-256"), *cli_key = EVP_EC_gen("P-256");
  EVP_PKEY *other_key = EVP_EC_gen("P-256");
  X509 *ca = NULL, *ca2 = NULL, *srv = NULL, *expired = NULL, *self = NULL,
       *cli = NULL, *cli_rogue = NULL;
  bool ok = ca_key && ca2_key && srv_key && cli_key && other_key;
  const char *san = "DNS:localhost,IP:127.0.0.1,IP:::1";
  ok = ok && (ca = make_cert("moonws test CA", ca_key, NULL, NULL, -1, 30,
                             NULL, true));
  ok = ok && (ca2 = make_cert("untrusted CA", ca2_key, NULL, NULL, -1, 30,
                              NULL, true));
  ok = ok && (srv = make_cert("localhost", srv_key, ca, ca_key, -1, 30, san,
                              false));
  ok = ok && (expired = make_cert("localhost", srv_key, ca, ca_key, -10, -1,
                                  san, false));
  ok = ok && (self = make_cert("localhost", srv_key, NULL, NULL, -1, 30, san,
                               false));
  ok = ok && (cli = make_cert("test client", cli_key, ca, ca_key, -1, 30,
                              NULL, false));
  ok = ok && (cli_rogue = make_cert("rogue client", cli_key, ca2, ca2_key, -1,
                                    30, NULL, false));
  ok = ok && write_pem("ca.pem", ca, NULL, NULL) &&
       write_pem("ca2.pem", ca2, NULL, NULL) &&
       write_pem("server.pem", srv, NULL, NULL) &&
       write_pem("server.key", NULL, srv_key, NULL) &&
       write_pem("both.pem", srv, srv_key, NULL) &&
       write_pem("expired.pem", expired, NULL, NULL) &&
       write_pem("self.pem", self, NULL, NULL) &&
       write_pem("client.pem", cli, NULL, NULL) &&
       write_pem("client.key", NULL, cli_key, NULL) &&
       write_pem("rogue.pem", cli_rogue, NULL, NULL) &&
       write_pem("other.key", NULL, other_key, NULL) &&
       write_pem("secret.key", NULL, srv_key, "passphrase");
  FILE *f = fopen(path("garbage.pem"), "w");
  ok = ok && f && fputs("not a certificate\n", f) >= 0;
  if (f)
    fclose(f);
  X509_free(ca);
  X509_free(ca2);
  X509_free(srv);
  X509_free(expired);
  X509_free(self);
  X509_free(cli);
  X509_free(cli_rogue);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(ca2_key);
  EVP_PKEY_free(srv_key);
  EVP_PKEY_free(cli_key);
  EVP_PKEY_free(other_key);
  return ok;
}

static void remove_certs(void) {
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.')
      unlink(path(e->d_name));
  closedir(d);
  rmdir(dir);
}

/* ---- contexts and connections ---- */

static net_tls_ctx *ctx_or_fail(net_tls_config cfg) {
  char err[256] = "";
  net_tls_ctx *ctx = net_tls_ctx_new(&cfg, err, sizeof err);
  if (!ctx)
    fprintf(stderr, "  context: %s\n", err);
  CHECK(ctx != NULL);
  return ctx;
}

/* Creation must fail with a message containing want. */
static void ctx_fails(net_tls_config cfg, const char *want) {
  char err[256] = "";
  net_tls_ctx *ctx = net_tls_ctx_new(&cfg, err, sizeof err);
  CHECK(ctx == NULL);
  net_tls_ctx_unref(ctx);
  if (!strstr(err, want))
    fprintf(stderr, "  message \"%s\", expected \"%s\"\n", err, want);
  CHECK(strstr(err, want) != NULL);
}

static net_tls_ctx *server_ctx(const char *cert) {
  return ctx_or_fail((net_tls_config){
      .server = true, .cert = path(cert), .key = path("server.key")});
}

static net_tls_ctx *client_ctx(const char *cafile) {
  return ctx_or_fail((net_tls_config){.verify = true, .cafile = path(cafile)});
}

static bool tcp_pair(int *cfd, int *sfd) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)net_tcp_local_port(listen_fd));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int err = 0;
  *cfd = net_tcp_connect((struct sockaddr *)&a, sizeof a, &err);
  if (*cfd < 0)
    return false;
  struct pollfd p = {*cfd, POLLOUT, 0};
  struct pollfd l = {listen_fd, POLLIN, 0};
  if (poll(&p, 1, 2000) != 1 || net_tcp_connect_result(*cfd) != 0 ||
      poll(&l, 1, 2000) != 1 ||
      (*sfd = net_tcp_accept(listen_fd, NULL, NULL, &err)) < 0) {
    close(*cfd);
    return false;
  }
  return true;
}

typedef struct pair {
  net_transport *c, *s;
} pair;

static bool make_pair(net_tls_ctx *cctx, const char *servername,
                      net_tls_ctx *sctx, pair *p) {
  char err[256];
  int cfd, sfd;
  p->c = p->s = NULL;
  if (!cctx || !sctx || !tcp_pair(&cfd, &sfd)) {
    CHECK(!"a TCP pair and two contexts");
    return false;
  }
  p->c = net_tls_transport_new(cctx, cfd, servername, err, sizeof err);
  p->s = net_tls_transport_new(sctx, sfd, NULL, err, sizeof err);
  CHECK(p->c && p->s);
  if (!p->c || !p->s) {
    if (p->c)
      p->c->ops->destroy(p->c);
    else
      close(cfd);
    if (p->s)
      p->s->ops->destroy(p->s);
    else
      close(sfd);
    return false;
  }
  return true;
}

static void free_pair(pair *p) {
  if (p->c)
    p->c->ops->destroy(p->c);
  if (p->s)
    p->s->ops->destroy(p->s);
  p->c = p->s = NULL;
}

static short events_for(int want) {
  return want == NET_WANT_WRITE ? POLLOUT : POLLIN;
}

/* Drive both handshakes until each is done or failed; a failed side
 * half-closes so its peer does not wait for it.  *rc, *rs: 0, NET_FAIL, or
 * the want of a side still waiting after 2 s of silence. */
static void handshake(pair *p, int *rc, int *rs) {
  bool cdone = false, sdone = false;
  *rc = *rs = NET_WANT_READ;
  for (int round = 0; round < 10000 && !(cdone && sdone); round++) {
    if (!cdone) {
      *rc = net_tls_handshake(p->c);
      /* Waiting for the socket means nothing usable is buffered. */
      if (*rc == NET_WANT_READ)
        CHECK(!p->c->ops->pending(p->c));
      cdone = *rc == 0 || *rc == NET_FAIL;
      if (*rc == NET_FAIL)
        shutdown(p->c->fd, SHUT_WR);
    }
    if (!sdone) {
      *rs = net_tls_handshake(p->s);
      if (*rs == NET_WANT_READ)
        CHECK(!p->s->ops->pending(p->s));
      sdone = *rs == 0 || *rs == NET_FAIL;
      if (*rs == NET_FAIL)
        shutdown(p->s->fd, SHUT_WR);
    }
    struct pollfd pf[2];
    nfds_t n = 0;
    if (!cdone)
      pf[n++] = (struct pollfd){p->c->fd, events_for(*rc), 0};
    if (!sdone)
      pf[n++] = (struct pollfd){p->s->fd, events_for(*rs), 0};
    if (n && poll(pf, n, 2000) <= 0)
      break;
  }
}

static bool has(const char *message, const char *want) {
  bool ok = message && strstr(message, want);
  if (!ok)
    fprintf(stderr, "  message \"%s\", expected \"%s\"\n",
            message ? message : "(null)", want);
  return ok;
}

/* Connect cctx/servername to sctx and expect the client to fail with
 * want (the server fails too, on the client's alert). */
static void client_refuses(net_tls_ctx *cctx, const char *servername,
                           net_tls_ctx *sctx, const char *want) {
  pair p;
  int rc, rs;
  if (!make_pair(cctx, servername, sctx, &p))
    return;
  handshake(&p, &rc, &rs);
  CHECK_EQ_INT(rc, NET_FAIL);
  CHECK(has(p.c->message, want));
  CHECK_EQ_INT(p.c->err, 0);
  CHECK_EQ_INT(rs, NET_FAIL);
  /* The failure sticks, and reads and writes report it. */
  char b[8];
  CHECK_EQ_INT(net_tls_handshake(p.c), NET_FAIL);
  CHECK_EQ_INT(p.c->ops->read(p.c, b, sizeof b), NET_FAIL);
  CHECK_EQ_INT(p.c->ops->write(p.c, "x", 1), NET_FAIL);
  CHECK(has(p.c->message, want));
  CHECK_EQ_INT(p.c->ops->shutdown(p.c), 0); /* no session: TCP only */
  free_pair(&p);
}

/* Read exactly n bytes into buf, waiting with poll; false on failure. */
static bool read_all(net_transport *t, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = t->ops->read(t, (char *)buf + got, n - got);
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    if (r != NET_WANT_READ && r != NET_WANT_WRITE)
      return false;
    struct pollfd p = {t->fd, events_for((int)r), 0};
    if (poll(&p, 1, 2000) != 1)
      return false;
  }
  return true;
}

static bool write_all(net_transport *t, const void *buf, size_t n) {
  size_t put = 0;
  while (put < n) {
    ssize_t r = t->ops->write(t, (const char *)buf + put, n - put);
    if (r > 0) {
      put += (size_t)r;
      continue;
    }
    if (r != NET_WANT_READ && r != NET_WANT_WRITE)
      return false;
    struct pollfd p = {t->fd, events_for((int)r), 0};
    if (poll(&p, 1, 2000) != 1)
      return false;
  }
  return true;
}

/* ---- cases ---- */

static void test_verify_by_name_and_ip(void) {
  net_tls_ctx *sctx = server_ctx("server.pem");
  net_tls_ctx *cctx = client_ctx("ca.pem");
  static const struct {
    const char *name, *sni;
  } cases[] = {{"localhost", "localhost"},
               {"localhost.", "localhost"},
               {"127.0.0.1", ""},
               {"[::1]", ""},
               {"::1", ""}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pair p;
    int rc, rs;
    if (!make_pair(cctx, cases[i].name, sctx, &p))
      break;
    handshake(&p, &rc, &rs);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(rs, 0);
    CHECK_EQ_INT(net_tls_handshake(p.c), 0); /* done stays done */
    net_tls_info ci, si;
    CHECK(net_tls_get_info(p.c, &ci));
    CHECK(net_tls_get_info(p.s, &si));
    CHECK(ci.verified);
    CHECK(strcmp(ci.peer_subject, "CN=localhost") == 0);
    CHECK(strcmp(ci.alpn, "http/1.1") == 0);
    CHECK(strcmp(si.alpn, "http/1.1") == 0);
    CHECK(strcmp(ci.version, "TLSv1.3") == 0);
    CHECK(ci.cipher && ci.cipher[0]);
    CHECK(!si.verified && si.peer_subject[0] == '\0'); /* no client cert */
    /* SNI carries DNS names only, never an IP literal. */
    CHECK(strcmp(si.servername, cases[i].sni) == 0);
    /* One message each way. */
    char buf[5] = "";
    CHECK(write_all(p.c, "hello", 5) && read_all(p.s, buf, 5));
    CHECK_MEM(buf, "hello", 5);
    CHECK(write_all(p.s, "world", 5) && read_all(p.c, buf, 5));
    CHECK_MEM(buf, "world", 5);
    free_pair(&p);
  }
  net_tls_ctx_unref(cctx);
  net_tls_ctx_unref(sctx);
}

static void test_verify_failures(void) {
  net_tls_ctx *sctx = server_ctx("server.pem");
  net_tls_ctx *cctx = client_ctx("ca.pem");
  client_refuses(cctx, "example.org", sctx,
                 "certificate verify failed: hostname mismatch");
  client_refuses(cctx, "127.0.0.2", sctx,
                 "certificate verify failed: IP address mismatch");
  net_tls_ctx *untrusted = client_ctx("ca2.pem");
  client_refuses(untrusted, "localhost", sctx,
                 "certificate verify failed: unable to get local issuer "
                 "certificate");
  net_tls_ctx *self = server_ctx("self.pem");
  client_refuses(cctx, "localhost", self,
                 "certificate verify failed: self-signed certificate");
  net_tls_ctx *expired = server_ctx("expired.pem");
  client_refuses(cctx, "localhost", expired,
                 "certificate verify failed: certificate has expired");
  net_tls_ctx_unref(expired);
  net_tls_ctx_unref(self);
  net_tls_ctx_unref(untrusted);
  net_tls_ctx_unref(cctx);
  net_tls_ctx_unref(sctx);
}

/* verify = false accepts any certificate, and says it did not verify. */
static void test_no_verify(void) {
  net_tls_ctx *self = server_ctx("self.pem");
  net_tls_ctx *cctx = ctx_or_fail((net_tls_config){.verify = false});
  pair p;
  int rc, rs;
  if (make_pair(cctx, "example.org", self, &p)) {
    handshake(&p, &rc, &rs);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(rs, 0);
    net_tls_info ci;
    CHECK(net_tls_get_info(p.c, &ci));
    CHECK(!ci.verified);
    CHECK(strcmp(ci.peer_subject, "CN=localhost") == 0);
    free_pair(&p);
  }
  net_tls_ctx_unref(cctx);
  net_tls_ctx_unref(self);
}

static void test_mutual_tls(void) {
  net_tls_ctx *sctx = ctx_or_fail((net_tls_config){
      .server = true, .verify = true, .cafile = path("ca.pem"),
      .cert = path("server.pem"), .key = path("server.key")});
  net_tls_ctx *with_cert = ctx_or_fail(
      (net_tls_config){.verify = true, .cafile = path("ca.pem"),
                       .cert = path("client.pem"), .key = path("client.key")});
  net_tls_ctx *without = client_ctx("ca.pem");
  net_tls_ctx *rogue = ctx_or_fail(
      (net_tls_config){.verify = true, .cafile = path("ca.pem"),
                       .cert = path("rogue.pem"), .key = path("client.key")});
  pair p;
  int rc, rs;
  /* Accepted: the server sees who the client is. */
  if (make_pair(with_cert, "localhost", sctx, &p)) {
    handshake(&p, &rc, &rs);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(rs, 0);
    net_tls_info si;
    CHECK(net_tls_get_info(p.s, &si));
    CHECK(si.verified);
    CHECK(strcmp(si.peer_subject, "CN=test client") == 0);
    char buf[2];
    CHECK(write_all(p.c, "ok", 2) && read_all(p.s, buf, 2));
    free_pair(&p);
  }
  /* Refused: no certificate, or one from a CA the server does not trust.
   * In TLS 1.3 the client may finish before the server has checked its
   * certificate: it then learns of the refusal on its first read. */
  static const char *const server_says[] = {
      "peer did not return a certificate",
      "certificate verify failed: unable to get local issuer certificate"};
  net_tls_ctx *clients[] = {without, rogue};
  for (int i = 0; i < 2; i++) {
    if (!make_pair(clients[i], "localhost", sctx, &p))
      continue;
    handshake(&p, &rc, &rs);
    CHECK_EQ_INT(rs, NET_FAIL);
    CHECK(has(p.s->message, server_says[i]));
    if (rc == 0) {
      char b[4];
      CHECK(!read_all(p.c, b, sizeof b));
    }
    CHECK(has(p.c->message, "alert"));
    free_pair(&p);
  }
  net_tls_ctx_unref(rogue);
  net_tls_ctx_unref(without);
  net_tls_ctx_unref(with_cert);
  net_tls_ctx_unref(sctx);
}

static void test_context_errors(void) {
  char missing[200];
  snprintf(missing, sizeof missing, "cannot load certificate %s: no such file",
           path("nope.pem"));
  ctx_fails((net_tls_config){.server = true, .cert = path("nope.pem"),
                             .key = path("server.key")},
            missing);
  ctx_fails((net_tls_config){.server = true, .cert = path("server.pem"),
                             .key = path("other.key")},
            "private key does not match the certificate");
  ctx_fails((net_tls_config){.cert = path("client.pem"),
                             .key = path("server.key")},
            "private key does not match the certificate");
  ctx_fails((net_tls_config){.server = true, .cert = path("server.pem"),
                             .key = path("nope.key")},
            "cannot load private key");
  ctx_fails((net_tls_config){.server = true, .cert = path("garbage.pem"),
                             .key = path("server.key")},
            "cannot load certificate");
  ctx_fails((net_tls_config){.server = true, .cert = path("server.pem")},
            "server.pem: no PEM private key in the file");
  ctx_fails((net_tls_config){.server = true, .cert = path("server.pem"),
                             .key = path("garbage.pem")},
            "garbage.pem: no PEM private key in the file");
  /* Never a prompt on the terminal. */
  ctx_fails((net_tls_config){.server = true, .cert = path("server.pem"),
                             .key = path("secret.key")},
            "secret.key: it is encrypted (passphrases are not supported)");
  ctx_fails((net_tls_config){.server = true, .cert = dir,
                             .key = path("server.key")},
            "is a directory");
  ctx_fails((net_tls_config){.server = true}, "needs a certificate");
  ctx_fails((net_tls_config){.server = true, .verify = true,
                             .cert = path("server.pem"),
                             .key = path("server.key")},
            "needs cafile or capath");
  ctx_fails((net_tls_config){.verify = true, .cafile = path("nope.pem")},
            "cannot load CA file");
  ctx_fails((net_tls_config){.verify = true, .capath = path("ca.pem")},
            "not a directory");
  ctx_fails((net_tls_config){.verify = true, .ciphers = "NO-SUCH-CIPHER"},
            "no usable cipher");
  ctx_fails((net_tls_config){.key = path("client.key")}, "needs its certificate");
  /* Key and certificate in one file, the key defaulting to the cert. */
  net_tls_ctx *both = ctx_or_fail(
      (net_tls_config){.server = true, .cert = path("both.pem")});
  CHECK(both && net_tls_ctx_is_server(both));
  net_tls_ctx_unref(both);
  /* A CA directory and the system store load. */
  net_tls_ctx *sys = ctx_or_fail((net_tls_config){.verify = true});
  CHECK(sys && !net_tls_ctx_is_server(sys));
  net_tls_ctx_unref(sys);
  net_tls_ctx *capath = ctx_or_fail((net_tls_config){.verify = true,
                                                     .capath = dir});
  net_tls_ctx_unref(capath);
}

/* The creator's reference can go first: the connection keeps the
 * context alive (valgrind proves nothing is freed early or leaked). */
static void test_context_refcount(void) {
  net_tls_ctx *sctx = server_ctx("server.pem");
  net_tls_ctx *cctx = client_ctx("ca.pem");
  pair p;
  int rc, rs;
  bool made = make_pair(cctx, "localhost", sctx, &p);
  net_tls_ctx_unref(cctx);
  net_tls_ctx_unref(sctx);
  if (!made)
    return;
  handshake(&p, &rc, &rs);
  CHECK_EQ_INT(rc, 0);
  CHECK_EQ_INT(rs, 0);
  free_pair(&p);
}

/* Bytes of direction seed at offset i. */
static uint8_t pattern(size_t i, unsigned seed) {
  return (uint8_t)(i * 7u + (i >> 11) + seed);
}

typedef struct flow {
  net_transport *t;
  const uint8_t *src;  /* what this side sends */
  uint8_t *copy;       /* the same bytes elsewhere: a moved buffer */
  unsigned peer_seed;  /* what it must receive */
  size_t total, sent, recvd;
  size_t last_len;     /* length of a write that wanted the socket */
  int step;
  short events;
  bool failed, partial, wanted_write;
} flow;

/* One round of one side: write until the socket is full, read until
 * empty; sets f->events for poll. */
static void flow_step(flow *f) {
  static const size_t wsizes[] = {1, 7, 1000, 16384, 16385, 65536, 300000, 5};
  static const size_t rsizes[] = {1, 13, 4096, 16384, 70000, 3};
  static uint8_t rbuf[70000];
  f->events = 0;
  while (f->sent < f->total) {
    size_t len = wsizes[f->step++ % 8];
    /* A retry passes at least the bytes of the try that wanted the
     * socket, from a buffer that may have moved (as ws_buf does). */
    if (len < f->last_len)
      len = f->last_len;
    if (len > f->total - f->sent)
      len = f->total - f->sent;
    const uint8_t *from = f->src + f->sent;
    if (f->last_len) {
      memcpy(f->copy, from, len);
      from = f->copy;
    }
    ssize_t w = f->t->ops->write(f->t, from, len);
    if (w > 0) {
      if ((size_t)w < len)
        f->partial = true;
      f->sent += (size_t)w;
      f->last_len = 0;
      continue;
    }
    if (w == NET_WANT_WRITE || w == NET_WANT_READ) {
      f->wanted_write = f->wanted_write || w == NET_WANT_WRITE;
      f->last_len = len;
      f->events |= events_for((int)w);
      break;
    }
    fprintf(stderr, "  write: %s\n", f->t->message);
    f->failed = true;
    return;
  }
  while (f->recvd < f->total) {
    size_t len = rsizes[f->step % 6];
    ssize_t r = f->t->ops->read(f->t, rbuf, len);
    if (r > 0) {
      for (size_t i = 0; i < (size_t)r; i++)
        if (rbuf[i] != pattern(f->recvd + i, f->peer_seed)) {
          f->failed = true;
          return;
        }
      f->recvd += (size_t)r;
      f->step++;
      continue;
    }
    if (r == NET_WANT_READ || r == NET_WANT_WRITE) {
      f->events |= events_for((int)r);
      break;
    }
    fprintf(stderr, "  read: %zd %s\n", r, f->t->message);
    f->failed = true;
    return;
  }
}

static void test_transfer_16mib_both_ways(void) {
  const size_t total = 16u << 20;
  net_tls_ctx *sctx = server_ctx("server.pem");
  net_tls_ctx *cctx = client_ctx("ca.pem");
  uint8_t *a = malloc(total), *b = malloc(total);
  uint8_t *ca = malloc(300000), *cb = malloc(300000);
  pair p = {0};
  int rc, rs;
  if (!a || !b || !ca || !cb || !make_pair(cctx, "localhost", sctx, &p)) {
    CHECK(!"memory and a pair");
    goto out;
  }
  for (size_t i = 0; i < total; i++) {
    a[i] = pattern(i, 1);
    b[i] = pattern(i, 2);
  }
  /* Small kernel buffers: many partial writes and full sockets. */
  int small = 32768;
  setsockopt(p.c->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  setsockopt(p.s->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  handshake(&p, &rc, &rs);
  CHECK_EQ_INT(rc, 0);
  CHECK_EQ_INT(rs, 0);
  flow fc = {.t = p.c, .src = a, .copy = ca, .peer_seed = 2, .total = total};
  flow fs = {.t = p.s, .src = b, .copy = cb, .peer_seed = 1, .total = total};
  while (!fc.failed && !fs.failed &&
         (fc.sent < total || fc.recvd < total || fs.sent < total ||
          fs.recvd < total)) {
    flow_step(&fc);
    flow_step(&fs);
    struct pollfd pf[2] = {{p.c->fd, fc.events, 0}, {p.s->fd, fs.events, 0}};
    bool pending = p.c->ops->pending(p.c) || p.s->ops->pending(p.s);
    if (!fc.events && !fs.events && !pending)
      continue;
    if (poll(pf, 2, pending ? 0 : 5000) < 0 || (!pending && !pf[0].revents &&
                                                 !pf[1].revents)) {
      CHECK(!"progress within 5 s");
      break;
    }
  }
  CHECK(!fc.failed && !fs.failed);
  CHECK(fc.recvd == total && fs.recvd == total);
  CHECK(fc.partial && fs.partial);
  CHECK(fc.wanted_write || fs.wanted_write);
out:
  free_pair(&p);
  free(a);
  free(b);
  free(ca);
  free(cb);
  net_tls_ctx_unref(cctx);
  net_tls_ctx_unref(sctx);
}

/* Decrypted bytes wait in the transport while the socket is idle. */
static void test_pending(void) {
  net_tls_ctx *sctx = server_ctx("server.pem");
  net_tls_ctx *cctx = client_ctx("ca.pem");
  pair p;
  int rc, rs;
  if (!make_pair(cctx, "localhost", sctx, &p))
    goto out;
  handshake(&p, &rc, &rs);
  CHECK(!p.c->ops->pending(p.c));
  static uint8_t big[16000], got[16000];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = pattern(i, 3);
  CHECK(write_all(p.s, big, sizeof big)); /* one record */
  CHECK(read_all(p.c, got, 100));
  CHECK(p.c->ops->pending(p.c));
  struct pollfd pf = {p.c->fd, POLLIN, 0};
  CHECK_EQ_INT(poll(&pf, 1, 0), 0); /* the kernel has nothing more */
  size_t n = 100;
  while (n < sizeof got && p.c->ops->pending(p.c)) {
    ssize_t r = p.c->ops->read(p.c, got + n, sizeof got - n);
    CHECK(r > 0);
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  CHECK_EQ_INT(n, sizeof got);
  CHECK_MEM(got, big, sizeof big);
  CHECK(!p.c->ops->pending(p.c));
  /* Two records read ahead in one recv: the second is pending. */
  CHECK(write_all(p.s, "first", 5) && write_all(p.s, "second", 6));
  CHECK_EQ_INT(poll(&pf, 1, 2000), 1);
  usleep(20000); /* both records in the socket before the first read */
  char buf[64];
  CHECK_EQ_INT(p.c->ops->read(p.c, buf, sizeof buf), 5);
  CHECK(p.c->ops->pending(p.c));
  CHECK_EQ_INT(p.c->ops->read(p.c, buf, sizeof buf), 6);
  CHECK_MEM(buf, "second", 6);
  CHECK(!p.c->ops->pending(p.c));
  CHECK_EQ_INT(p.c->ops->read(p.c, buf, sizeof buf), NET_WANT_READ);
  /* A partial record is not pending (poll wakes for the rest). */
  CHECK(!p.c->ops->pending(p.c));
  free_pair(&p);
out:
  net_tls_ctx_unref(cctx);
  net_tls_ctx_unref(sctx);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* shutdown() never waits: with the socket full it says "want write";
 * the close_notify follows every byte written, and the peer reads them
 * all, then the end. */
static void test_shutdown_never_blocks(void) {
  net_tls_ctx *sctx = server_ctx("server.pem");
  net_tls_ctx *cctx = client_ctx("ca.pem");
  pair p;
  int rc, rs;
  if (!make_pair(cctx, "localhost", sctx, &p))
    goto out;
  handshake(&p, &rc, &rs);
  int small = 16384;
  setsockopt(p.c->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  setsockopt(p.s->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  static uint8_t chunk[50000];
  memset(chunk, 'z', sizeof chunk);
  size_t sent = 0;
  ssize_t w;
  while ((w = p.c->ops->write(p.c, chunk, sizeof chunk)) > 0)
    sent += (size_t)w;
  CHECK_EQ_INT(w, NET_WANT_WRITE);
  /* A write is pending: nothing can be sent before it completes. */
  double t0 = now_ms();
  CHECK_EQ_INT(p.c->ops->shutdown(p.c), NET_WANT_WRITE);
  /* Drain a little on the server and complete the pending write. */
  static uint8_t sink[65536];
  size_t received = 0;
  for (int i = 0; i < 1000 && w <= 0; i++) {
    ssize_t r = p.s->ops->read(p.s, sink, 1000);
    if (r > 0)
      received += (size_t)r;
    w = p.c->ops->write(p.c, chunk, sizeof chunk);
    if (r <= 0 && w <= 0) {
      struct pollfd pf = {p.s->fd, POLLIN, 0};
      poll(&pf, 1, 100);
    }
  }
  CHECK(w > 0);
  sent += w > 0 ? (size_t)w : 0;
  int sh = p.c->ops->shutdown(p.c);
  CHECK(sh == 0 || sh == NET_WANT_WRITE);
  CHECK(now_ms() - t0 < 1000);
  CHECK_EQ_INT(p.c->ops->write(p.c, "x", 1), NET_FAIL); /* after shutdown */
  /* The server reads everything, then the end; the client keeps calling
   * shutdown until the close_notify went out. */
  ssize_t r;
  for (int i = 0; i < 100000; i++) {
    if (sh == NET_WANT_WRITE)
      sh = p.c->ops->shutdown(p.c);
    r = p.s->ops->read(p.s, sink, sizeof sink);
    if (r > 0) {
      received += (size_t)r;
      continue;
    }
    if (r != NET_WANT_READ)
      break;
    struct pollfd pf = {p.s->fd, POLLIN, 0};
    poll(&pf, 1, sh == NET_WANT_WRITE ? 10 : 2000);
  }
  CHECK_EQ_INT(sh, 0);
  CHECK_EQ_INT(r, NET_EOF);
  CHECK_EQ_INT(received, sent);
  CHECK_EQ_INT(p.c->ops->shutdown(p.c), 0); /* once is enough */
  /* The server may still answer on its half, and the client read it. */
  CHECK(write_all(p.s, "bye", 3));
  char bye[3];
  CHECK(read_all(p.c, bye, 3));
  CHECK_MEM(bye, "bye", 3);
  CHECK_EQ_INT(p.s->ops->shutdown(p.s), 0);
  char b[4];
  struct pollfd pf = {p.c->fd, POLLIN, 0};
  CHECK_EQ_INT(poll(&pf, 1, 2000), 1);
  CHECK_EQ_INT(p.c->ops->read(p.c, b, sizeof b), NET_EOF);
  free_pair(&p);
out:
  net_tls_ctx_unref(cctx);
  net_tls_ctx_unref(sctx);
}

/* A peer that closes TCP without close_notify: end of stream, as TCP.
 * A peer that resets: a failure with the errno, and no SIGPIPE. */
static void test_abrupt_close(void) {
  net_tls_ctx *sctx = server_ctx("server.pem");
  net_tls_ctx *cctx = client_ctx("ca.pem");
  pair p;
  int rc, rs;
  if (make_pair(cctx, "localhost", sctx, &p)) {
    handshake(&p, &rc, &rs);
    CHECK(write_all(p.s, "last", 4));
    p.s->ops->destroy(p.s);
    p.s = NULL;
    char b[8];
    CHECK(read_all(p.c, b, 4));
    struct pollfd pf = {p.c->fd, POLLIN, 0};
    CHECK_EQ_INT(poll(&pf, 1, 2000), 1);
    CHECK_EQ_INT(p.c->ops->read(p.c, b, sizeof b), NET_EOF);
    /* Writing to the closed peer: the first write draws a reset. */
    ssize_t w = 0;
    for (int i = 0; i < 50 && w != NET_FAIL; i++) {
      w = p.c->ops->write(p.c, "data", 4);
      usleep(2000);
    }
    CHECK_EQ_INT(w, NET_FAIL);
    CHECK(p.c->err == EPIPE || p.c->err == ECONNRESET);
    CHECK(p.c->message && p.c->message[0]);
    free_pair(&p);
  }
  /* Closed during the handshake: cleanly (FIN), then with the ClientHello
   * unread (close() answers it with a reset). */
  for (int reset = 0; reset < 2; reset++) {
    if (!make_pair(cctx, "localhost", sctx, &p))
      break;
    CHECK_EQ_INT(net_tls_handshake(p.c), NET_WANT_READ);
    if (reset) {
      struct pollfd ps = {p.s->fd, POLLIN, 0};
      CHECK_EQ_INT(poll(&ps, 1, 2000), 1);
      p.s->ops->destroy(p.s);
      p.s = NULL;
    } else {
      shutdown(p.s->fd, SHUT_WR);
    }
    struct pollfd pf = {p.c->fd, POLLIN, 0};
    CHECK_EQ_INT(poll(&pf, 1, 2000), 1);
    CHECK_EQ_INT(net_tls_handshake(p.c), NET_FAIL);
    CHECK(has(p.c->message, reset ? "connection reset by peer"
                                  : "connection closed during the TLS handshake"));
    CHECK_EQ_INT(p.c->err, reset ? ECONNRESET : 0);
    free_pair(&p);
  }
  net_tls_ctx_unref(cctx);
  net_tls_ctx_unref(sctx);
}

/* Plain HTTP to a TLS server fails its handshake with a reason. */
static void test_not_tls(void) {
  net_tls_ctx *sctx = server_ctx("server.pem");
  int cfd, sfd;
  char err[256];
  if (!sctx || !tcp_pair(&cfd, &sfd)) {
    CHECK(!"pair");
    net_tls_ctx_unref(sctx);
    return;
  }
  net_transport *s = net_tls_transport_new(sctx, sfd, NULL, err, sizeof err);
  CHECK(s != NULL);
  const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK_EQ_INT(send(cfd, req, sizeof req - 1, 0), sizeof req - 1);
  int r = NET_WANT_READ;
  for (int i = 0; i < 100 && r == NET_WANT_READ; i++) {
    struct pollfd pf = {sfd, POLLIN, 0};
    poll(&pf, 1, 2000);
    r = net_tls_handshake(s);
  }
  CHECK_EQ_INT(r, NET_FAIL);
  CHECK(s && s->message && s->message[0]);
  CHECK(s && s->err == 0);
  if (s)
    s->ops->destroy(s);
  close(cfd);
  net_tls_ctx_unref(sctx);
}

/* TLS takes the socket over from plain TCP. */
static void test_tcp_release(void) {
  int fds[2];
  CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  net_transport *t = net_tcp_transport_new(fds[0]);
  CHECK(t != NULL);
  CHECK(!net_tls_is_tls(t));
  CHECK_EQ_INT(net_tls_handshake(t), NET_FAIL);
  CHECK_EQ_INT(net_tcp_transport_release(t), fds[0]);
  CHECK(fcntl(fds[0], F_GETFD) >= 0); /* still open */
  CHECK_EQ_INT(net_tcp_transport_release(NULL), -1);
  net_tls_ctx *cctx = ctx_or_fail((net_tls_config){.verify = false});
  char err[64];
  net_transport *tls =
      cctx ? net_tls_transport_new(cctx, fds[0], "localhost", err, sizeof err)
           : NULL;
  CHECK(tls && net_tls_is_tls(tls));
  CHECK_EQ_INT(net_tcp_transport_release(tls), -1);
  net_tls_info info;
  CHECK(!net_tls_get_info(tls, &info)); /* no handshake yet */
  if (tls)
    tls->ops->destroy(tls); /* closes fds[0] */
  else
    close(fds[0]);
  CHECK(fcntl(fds[0], F_GETFD) < 0);
  close(fds[1]);
  net_tls_ctx_unref(cctx);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/moonws-tls-XXXXXX");
  if (!mkdtemp(dir) || !make_certs()) {
    fprintf(stderr, "cannot make the test certificates in %s\n", dir);
    remove_certs();
    printf("0 passed, 1 failed\n");
    return 1;
  }
  int err = 0;
  listen_fd = net_tcp_listen("127.0.0.1", 0, 64, &err);
  if (listen_fd < 0) {
    remove_certs();
    printf("0 passed, 1 failed\n");
    return 1;
  }
  TEST_RUN(test_verify_by_name_and_ip);
  TEST_RUN(test_verify_failures);
  TEST_RUN(test_no_verify);
  TEST_RUN(test_mutual_tls);
  TEST_RUN(test_context_errors);
  TEST_RUN(test_context_refcount);
  TEST_RUN(test_transfer_16mib_both_ways);
  TEST_RUN(test_pending);
  TEST_RUN(test_shutdown_never_blocks);
  TEST_RUN(test_abrupt_close);
  TEST_RUN(test_not_tls);
  TEST_RUN(test_tcp_release);
  close(listen_fd);
  remove_certs();
  return TEST_REPORT();
}

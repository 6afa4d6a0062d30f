/*
 * test_tcp.c -- nonblocking TCP sockets and the plain-TCP transport over
 * real loopback connections (127.0.0.1 and ::1), waited on with poll().
 */
#include "net_tcp.h"
#include "net_transport.h"
#include "test_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

/* poll() one fd; returns revents (0 on timeout). */
static short wait_fd(int fd, short events, int ms) {
  struct pollfd p = {fd, events, 0};
  return poll(&p, 1, ms) == 1 ? p.revents : 0;
}

static int make_addr(const char *host, int port, struct sockaddr_storage *ss,
                     socklen_t *len) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    *len = sizeof *a4;
    return 0;
  }
  if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    *len = sizeof *a6;
    return 0;
  }
  return -1;
}

static int get_int_opt(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, level, name, &v, &len) < 0)
    return -1;
  return v;
}

static void check_fd_flags(int fd) {
  CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
  CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  CHECK(get_int_opt(fd, IPPROTO_TCP, TCP_NODELAY) > 0);
}

/* Connect a client to a listener on host; fills *cfd, *sfd (accepted). */
static int connect_pair(const char *host, int lfd, int *cfd, int *sfd) {
  struct sockaddr_storage ss;
  socklen_t len = 0;
  int err = 0, port = net_tcp_local_port(lfd);
  CHECK(port > 0);
  CHECK_EQ_INT(make_addr(host, port, &ss, &len), 0);
  *cfd = net_tcp_connect((struct sockaddr *)&ss, len, &err);
  CHECK(*cfd >= 0);
  if (*cfd < 0)
    return -1;
  CHECK(wait_fd(*cfd, POLLOUT, 2000) & POLLOUT);
  CHECK_EQ_INT(net_tcp_connect_result(*cfd), 0);
  CHECK(wait_fd(lfd, POLLIN, 2000) & POLLIN);
  struct sockaddr_storage peer;
  socklen_t peerlen = 0;
  *sfd = net_tcp_accept(lfd, &peer, &peerlen, &err);
  CHECK(*sfd >= 0);
  if (*sfd < 0) {
    close(*cfd);
    return -1;
  }
  /* The peer's family is the listener's (a dual-stack listener sees IPv4
   * clients as v4-mapped IPv6). */
  struct sockaddr_storage lss;
  socklen_t llen = sizeof lss;
  getsockname(lfd, (struct sockaddr *)&lss, &llen);
  CHECK_EQ_INT(peer.ss_family, lss.ss_family);
  CHECK(peerlen > 0 && peerlen <= sizeof peer);
  return 0;
}

static void roundtrip(const char *host, const char *expect_prefix) {
  int err = 0, cfd, sfd;
  int lfd = net_tcp_listen(host, 0, 16, &err);
  CHECK(lfd >= 0);
  if (lfd < 0)
    return;
  if (connect_pair(host, lfd, &cfd, &sfd) < 0) {
    close(lfd);
    return;
  }
  check_fd_flags(cfd);
  check_fd_flags(sfd);
  CHECK(fcntl(lfd, F_GETFL) & O_NONBLOCK);

  /* No connection pending now: EAGAIN, not a block. */
  err = 0;
  CHECK_EQ_INT(net_tcp_accept(lfd, NULL, NULL, &err), -1);
  CHECK_EQ_INT(err, EAGAIN);

  /* The server sees the client's local address as its peer. */
  char a[64], b[64], want[64];
  snprintf(want, sizeof want, "%s%d", expect_prefix, net_tcp_local_port(cfd));
  CHECK(strcmp(net_peer_format(sfd, a, sizeof a), want) == 0);
  snprintf(want, sizeof want, "%s%d", expect_prefix, net_tcp_local_port(lfd));
  CHECK(strcmp(net_peer_format(cfd, b, sizeof b), want) == 0);

  net_transport *c = net_tcp_transport_new(cfd);
  net_transport *s = net_tcp_transport_new(sfd);
  CHECK(c && s);
  if (!c || !s)
    return;
  CHECK_EQ_INT(c->fd, cfd);
  CHECK(!c->ops->pending(c));

  char buf[64];
  CHECK_EQ_INT(s->ops->read(s, buf, sizeof buf), NET_WANT_READ);
  CHECK_EQ_INT(c->ops->write(c, "hello", 5), 5);
  CHECK(wait_fd(sfd, POLLIN, 2000) & POLLIN);
  CHECK_EQ_INT(s->ops->read(s, buf, sizeof buf), 5);
  CHECK_MEM(buf, "hello", 5);
  CHECK_EQ_INT(s->ops->read(s, buf, sizeof buf), NET_WANT_READ);

  CHECK_EQ_INT(s->ops->write(s, "world!", 6), 6);
  CHECK(wait_fd(cfd, POLLIN, 2000) & POLLIN);
  CHECK_EQ_INT(c->ops->read(c, buf, 3), 3);
  CHECK_MEM(buf, "wor", 3);
  CHECK_EQ_INT(c->ops->read(c, buf, sizeof buf), 3);
  CHECK_MEM(buf, "ld!", 3);

  /* Half-close: the server reads EOF but can still send. */
  CHECK_EQ_INT(c->ops->shutdown(c), 0);
  CHECK(wait_fd(sfd, POLLIN, 2000) & POLLIN);
  CHECK_EQ_INT(s->ops->read(s, buf, sizeof buf), NET_EOF);
  CHECK_EQ_INT(s->ops->write(s, "late", 4), 4);
  CHECK(wait_fd(cfd, POLLIN, 2000) & POLLIN);
  CHECK_EQ_INT(c->ops->read(c, buf, sizeof buf), 4);
  CHECK_MEM(buf, "late", 4);

  /* A full close also reads as EOF. */
  s->ops->destroy(s);
  CHECK(wait_fd(cfd, POLLIN, 2000) & POLLIN);
  CHECK_EQ_INT(c->ops->read(c, buf, sizeof buf), NET_EOF);
  CHECK_EQ_INT(c->err, 0);
  c->ops->destroy(c);
  close(lfd);
}

static void test_roundtrip_v4(void) { roundtrip("127.0.0.1", "127.0.0.1:"); }

static void test_roundtrip_v6(void) { roundtrip("::1", "[::1]:"); }

/* The peer stops reading: writes fill both buffers and then say
 * NET_WANT_WRITE; once the peer drains, every byte arrives in order. */
static void test_want_write(void) {
  int err = 0, cfd, sfd;
  int lfd = net_tcp_listen("127.0.0.1", 0, 4, &err);
  CHECK(lfd >= 0);
  if (lfd < 0 || connect_pair("127.0.0.1", lfd, &cfd, &sfd) < 0)
    return;
  close(lfd);
  net_transport *c = net_tcp_transport_new(cfd);
  net_transport *s = net_tcp_transport_new(sfd);
  enum { CHUNK = 65536, LIMIT = 64 << 20 };
  unsigned char *out = malloc(CHUNK), *in = malloc(CHUNK);
  for (int i = 0; i < CHUNK; i++)
    out[i] = (unsigned char)(i * 7 + 3);
  size_t sent = 0;
  ssize_t r = 0;
  while (sent < LIMIT) {
    r = c->ops->write(c, out + sent % CHUNK, CHUNK - sent % CHUNK);
    if (r <= 0)
      break;
    sent += (size_t)r;
  }
  CHECK_EQ_INT(r, NET_WANT_WRITE);
  CHECK(sent > 0 && sent < LIMIT);
  CHECK(!(wait_fd(cfd, POLLOUT, 0) & POLLOUT));

  /* Drain and verify the byte pattern. */
  size_t got = 0;
  int bad = 0;
  while (got < sent) {
    r = s->ops->read(s, in, CHUNK);
    if (r == NET_WANT_READ) {
      if (!(wait_fd(sfd, POLLIN, 2000) & POLLIN))
        break;
      continue;
    }
    if (r <= 0)
      break;
    for (ssize_t i = 0; i < r; i++)
      bad |= in[i] != out[(got + (size_t)i) % CHUNK];
    got += (size_t)r;
  }
  CHECK_EQ_INT(got, sent);
  CHECK_EQ_INT(bad, 0);
  CHECK(wait_fd(cfd, POLLOUT, 2000) & POLLOUT);
  CHECK_EQ_INT(c->ops->write(c, "x", 1), 1);
  free(out);
  free(in);
  c->ops->destroy(c);
  s->ops->destroy(s);
}

static void test_refused(void) {
  int err = 0;
  int lfd = net_tcp_listen("127.0.0.1", 0, 1, &err);
  CHECK(lfd >= 0);
  int port = net_tcp_local_port(lfd);
  close(lfd);
  struct sockaddr_storage ss;
  socklen_t len = 0;
  make_addr("127.0.0.1", port, &ss, &len);
  int fd = net_tcp_connect((struct sockaddr *)&ss, len, &err);
  if (fd < 0) {
    /* Some kernels refuse loopback connects synchronously. */
    CHECK_EQ_INT(err, ECONNREFUSED);
    return;
  }
  CHECK(wait_fd(fd, POLLOUT, 2000) != 0);
  CHECK_EQ_INT(net_tcp_connect_result(fd), ECONNREFUSED);
  close(fd);
}

/* Writing to a connection the peer reset must fail cleanly: with SIGPIPE
 * at its default action, a missing MSG_NOSIGNAL would kill this process. */
static void test_sigpipe(void) {
  signal(SIGPIPE, SIG_DFL);
  int err = 0, cfd, sfd;
  int lfd = net_tcp_listen("127.0.0.1", 0, 4, &err);
  CHECK(lfd >= 0);
  if (lfd < 0 || connect_pair("127.0.0.1", lfd, &cfd, &sfd) < 0)
    return;
  close(lfd);
  struct linger lg = {1, 0};
  CHECK_EQ_INT(setsockopt(sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  close(sfd); /* sends RST */
  CHECK(wait_fd(cfd, POLLIN, 2000) != 0);
  net_transport *c = net_tcp_transport_new(cfd);
  ssize_t r = 0;
  for (int i = 0; i < 4 && r != NET_FAIL; i++)
    r = c->ops->write(c, "data", 4);
  CHECK_EQ_INT(r, NET_FAIL);
  CHECK(c->err == ECONNRESET || c->err == EPIPE);
  /* The reset is consumed now; the next write is EPIPE proper. */
  CHECK_EQ_INT(c->ops->write(c, "data", 4), NET_FAIL);
  CHECK_EQ_INT(c->err, EPIPE);
  CHECK(c->message && strcmp(c->message, "broken pipe") == 0);
  char buf[8];
  r = c->ops->read(c, buf, sizeof buf);
  CHECK(r == NET_EOF || r == NET_FAIL);
  c->ops->destroy(c);
}

static void test_reset_read(void) {
  int err = 0, cfd, sfd;
  int lfd = net_tcp_listen("127.0.0.1", 0, 4, &err);
  if (lfd < 0 || connect_pair("127.0.0.1", lfd, &cfd, &sfd) < 0)
    return;
  close(lfd);
  struct linger lg = {1, 0};
  setsockopt(sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(sfd);
  CHECK(wait_fd(cfd, POLLIN, 2000) != 0);
  net_transport *c = net_tcp_transport_new(cfd);
  char buf[8];
  CHECK_EQ_INT(c->ops->read(c, buf, sizeof buf), NET_FAIL);
  CHECK_EQ_INT(c->err, ECONNRESET);
  CHECK(c->message && strcmp(c->message, "connection reset by peer") == 0);
  c->ops->destroy(c);
}

static void test_listen_variants(void) {
  int err = 0;
  CHECK_EQ_INT(net_tcp_listen("localhost", 0, 4, &err), -1);
  CHECK_EQ_INT(err, EINVAL);
  err = 0;
  CHECK_EQ_INT(net_tcp_listen("[::1]", 0, 4, &err), -1);
  CHECK_EQ_INT(err, EINVAL);
  err = 0;
  CHECK_EQ_INT(net_tcp_listen("127.0.0.1", 65536, 4, &err), -1);
  CHECK_EQ_INT(err, EINVAL);
  err = 0;
  CHECK_EQ_INT(net_tcp_listen("127.0.0.1", -1, 4, &err), -1);
  CHECK_EQ_INT(err, EINVAL);

  /* A second listener on a live port: EADDRINUSE despite SO_REUSEADDR. */
  int lfd = net_tcp_listen("127.0.0.1", 0, 4, &err);
  CHECK(lfd >= 0);
  CHECK_EQ_INT(get_int_opt(lfd, SOL_SOCKET, SO_REUSEADDR) > 0, 1);
  err = 0;
  CHECK_EQ_INT(net_tcp_listen("127.0.0.1", net_tcp_local_port(lfd), 4, &err),
               -1);
  CHECK_EQ_INT(err, EADDRINUSE);
  close(lfd);

  /* NULL and "*" are dual-stack: IPv4 and IPv6 clients both get in. */
  const char *any[] = {NULL, "*"};
  for (int i = 0; i < 2; i++) {
    lfd = net_tcp_listen(any[i], 0, 4, &err);
    CHECK(lfd >= 0);
    if (lfd < 0)
      continue;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(lfd, (struct sockaddr *)&ss, &len);
    CHECK_EQ_INT(ss.ss_family, AF_INET6);
    int cfd, sfd;
    char a[64], want[64];
    if (connect_pair("127.0.0.1", lfd, &cfd, &sfd) == 0) {
      /* The IPv4 client shows up as a v4-mapped address. */
      snprintf(want, sizeof want, "[::ffff:127.0.0.1]:%d",
               net_tcp_local_port(cfd));
      CHECK(strcmp(net_peer_format(sfd, a, sizeof a), want) == 0);
      close(cfd);
      close(sfd);
    }
    if (connect_pair("::1", lfd, &cfd, &sfd) == 0) {
      close(cfd);
      close(sfd);
    }
    close(lfd);
  }
  /* Explicit wildcards are numeric hosts too. */
  lfd = net_tcp_listen("0.0.0.0", 0, 4, &err);
  CHECK(lfd >= 0);
  close(lfd);
  lfd = net_tcp_listen("::", 0, 4, &err);
  CHECK(lfd >= 0);
  close(lfd);
}

static void test_format(void) {
  char out[64];
  struct sockaddr_storage ss;
  socklen_t len = 0;
  make_addr("127.0.0.1", 8080, &ss, &len);
  CHECK(strcmp(net_addr_format((struct sockaddr *)&ss, out, sizeof out),
               "127.0.0.1:8080") == 0);
  make_addr("::1", 8080, &ss, &len);
  CHECK(strcmp(net_addr_format((struct sockaddr *)&ss, out, sizeof out),
               "[::1]:8080") == 0);
  make_addr("2001:db8::ff00:42:8329", 65535, &ss, &len);
  CHECK(strcmp(net_addr_format((struct sockaddr *)&ss, out, sizeof out),
               "[2001:db8::ff00:42:8329]:65535") == 0);
  make_addr("10.1.2.3", 0, &ss, &len);
  CHECK(strcmp(net_addr_format((struct sockaddr *)&ss, out, sizeof out),
               "10.1.2.3:0") == 0);
  /* Truncated output stays terminated. */
  char small[6];
  make_addr("127.0.0.1", 8080, &ss, &len);
  CHECK(strcmp(net_addr_format((struct sockaddr *)&ss, small, sizeof small),
               "127.0") == 0);
  ss.ss_family = AF_UNIX;
  CHECK(strcmp(net_addr_format((struct sockaddr *)&ss, out, sizeof out), "?") ==
        0);
  CHECK(strcmp(net_addr_format(NULL, out, sizeof out), "?") == 0);
  CHECK(net_addr_format(NULL, NULL, 0) == NULL);
  CHECK(strcmp(net_peer_format(-1, out, sizeof out), "?") == 0);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(strcmp(net_peer_format(fd, out, sizeof out), "?") == 0);
  CHECK_EQ_INT(net_tcp_local_port(-1), -1);
  close(fd);
}

static void test_transport_misc(void) {
  /* An unconnected socket: shutdown is a no-op, reads fail cleanly. */
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  net_transport *t = net_tcp_transport_new(fd);
  CHECK(t != NULL);
  CHECK_EQ_INT(t->ops->shutdown(t), 0);
  char buf[4];
  CHECK_EQ_INT(t->ops->read(t, buf, 0), NET_FAIL);
  CHECK_EQ_INT(t->err, EINVAL);
  CHECK_EQ_INT(t->ops->write(t, buf, 0), NET_FAIL);
  CHECK_EQ_INT(t->ops->read(t, buf, sizeof buf), NET_FAIL);
  CHECK_EQ_INT(t->err, ENOTCONN);
  CHECK(strcmp(t->message, "socket is not connected") == 0);
  t->ops->destroy(t);
  /* The fd is closed by destroy. */
  CHECK_EQ_INT(fcntl(fd, F_GETFD), -1);
}

int main(void) {
  TEST_RUN(test_roundtrip_v4);
  TEST_RUN(test_roundtrip_v6);
  TEST_RUN(test_want_write);
  TEST_RUN(test_refused);
  TEST_RUN(test_sigpipe);
  TEST_RUN(test_reset_read);
  TEST_RUN(test_listen_variants);
  TEST_RUN(test_format);
  TEST_RUN(test_transport_misc);
  return TEST_REPORT();
}

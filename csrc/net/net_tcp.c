/*
 * net_tcp.c -- nonblocking TCP sockets and the plain-TCP transport.
 *
 * Thin wrappers over the socket calls that fix the flags once (nonblocking,
 * close-on-exec, TCP_NODELAY, no SIGPIPE) and turn errno into the
 * transport's three outcomes: bytes moved, "wait for readiness", failure.
 */
#include "net_tcp.h"
#include "net_transport.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef NET_SYS_WINDOWS
/* Winsock: SOCKET handles, char * option values, WSASend for the gather
 * write, errors through net_sys_error(). */
#define SOCK(fd) ((SOCKET)(uintptr_t)(fd))
#define OPT(p) ((const char *)(p))
#define LEN(n) ((int)(n))
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/uio.h>
#include <unistd.h>
#define SOCK(fd) (fd)
#define OPT(p) (p)
#define LEN(n) (n)
#endif

void net_tcp_close(int fd) { net_sys_close(fd); }

static int fail(int *err, int e, int fd) {
  if (fd >= 0)
    net_sys_close(fd);
  if (err)
    *err = e;
  return -1;
}

static void set_nodelay(int fd) {
  int one = 1;
  /* Best effort: a socket without it still works, only slower. */
  (void)setsockopt(SOCK(fd), IPPROTO_TCP, TCP_NODELAY, OPT(&one), sizeof one);
}

int net_tcp_connect(const struct sockaddr *addr, socklen_t addrlen, int *err) {
  if (!addr)
    return fail(err, EINVAL, -1);
  int e = 0;
  int fd = net_sys_socket(addr->sa_family, &e);
  if (fd < 0)
    return fail(err, e, -1);
  /* EINTR on a nonblocking connect leaves it going on in the background,
   * exactly like EINPROGRESS; retrying would only say EALREADY.  Winsock
   * says WSAEWOULDBLOCK (EAGAIN) for the same. */
  if (connect(SOCK(fd), addr, addrlen) == 0)
    return fd;
  e = net_sys_error();
#ifdef NET_SYS_WINDOWS
  if (e == EAGAIN)
    return fd;
#endif
  if (e == EINPROGRESS || e == EINTR)
    return fd;
  return fail(err, e, fd);
}

int net_tcp_connect_result(int fd) {
  int soerr = 0;
  socklen_t len = sizeof soerr;
  if (getsockopt(SOCK(fd), SOL_SOCKET, SO_ERROR, (void *)&soerr, &len) < 0)
    return net_sys_error();
  if (soerr == 0)
    set_nodelay(fd);
  return net_sys_errno(soerr);
}

/* Bind and listen one socket; returns the fd or -1 with *e. */
static int listen_on(const struct sockaddr *sa, socklen_t salen, bool dual,
                     int backlog, int flags, int *e) {
#if defined(NET_SYS_WINDOWS) || !defined(SO_REUSEPORT)
  if (flags & NET_TCP_REUSEPORT)
    return fail(e, ENOPROTOOPT, -1);
#endif
  int fd = net_sys_socket(sa->sa_family, e);
  if (fd < 0)
    return -1;
  int one = 1, zero = 0;
#if defined(SO_REUSEPORT) && !defined(NET_SYS_WINDOWS)
  if ((flags & NET_TCP_REUSEPORT) &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
    return fail(e, errno, fd);
#endif
#ifdef NET_SYS_WINDOWS
  /* Windows' SO_REUSEADDR would let another socket bind the same port
   * (and take its connections); a restarted server binds at once anyway,
   * since Windows does not hold the port in TIME_WAIT for a listener. */
  int reuse_opt = SO_EXCLUSIVEADDRUSE;
#else
  int reuse_opt = SO_REUSEADDR;
#endif
  if (setsockopt(SOCK(fd), SOL_SOCKET, reuse_opt, OPT(&one), sizeof one) < 0 ||
      (dual && setsockopt(SOCK(fd), IPPROTO_IPV6, IPV6_V6ONLY, OPT(&zero),
                          sizeof zero) < 0) ||
      bind(SOCK(fd), sa, salen) < 0 || listen(SOCK(fd), backlog) < 0)
    return fail(e, net_sys_error(), fd);
  return fd;
}

int net_tcp_listen(const char *host, int port, int backlog, int *err) {
  return net_tcp_listen_flags(host, port, backlog, 0, err);
}

int net_tcp_listen_flags(const char *host, int port, int backlog, int flags,
                         int *err) {
  if (port < 0 || port > 65535 || (flags & ~NET_TCP_REUSEPORT))
    return fail(err, EINVAL, -1);
  struct sockaddr_in in4;
  struct sockaddr_in6 in6;
  memset(&in4, 0, sizeof in4);
  memset(&in6, 0, sizeof in6);
  in4.sin_family = AF_INET;
  in4.sin_port = htons((uint16_t)port);
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons((uint16_t)port);

  if (!host || strcmp(host, "*") == 0) {
    int e = 0;
    in6.sin6_addr = in6addr_any;
    int fd = listen_on((struct sockaddr *)&in6, sizeof in6, true, backlog,
                       flags, &e);
    if (fd >= 0)
      return fd;
    /* No IPv6 on this host (disabled in the kernel or the namespace):
     * every address then means every IPv4 address. */
    if (e != EAFNOSUPPORT && e != EPROTONOSUPPORT && e != EADDRNOTAVAIL)
      return fail(err, e, -1);
    in4.sin_addr.s_addr = htonl(INADDR_ANY);
    return listen_on((struct sockaddr *)&in4, sizeof in4, false, backlog,
                     flags, err);
  }
  if (inet_pton(AF_INET, host, &in4.sin_addr) == 1)
    return listen_on((struct sockaddr *)&in4, sizeof in4, false, backlog,
                     flags, err);
  if (inet_pton(AF_INET6, host, &in6.sin6_addr) == 1)
    return listen_on((struct sockaddr *)&in6, sizeof in6, false, backlog,
                     flags, err);
  return fail(err, EINVAL, -1);
}

int net_tcp_accept(int listen_fd, struct sockaddr_storage *addr,
                   socklen_t *addrlen, int *err) {
  for (;;) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
#if defined(NET_SYS_LINUX)
    int fd = accept4(listen_fd, (struct sockaddr *)&ss, &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
#elif defined(NET_SYS_WINDOWS)
    SOCKET s = accept(SOCK(listen_fd), (struct sockaddr *)&ss, &len);
    int fd = s == INVALID_SOCKET ? -1 : (int)s;
#else
    int fd = accept(listen_fd, (struct sockaddr *)&ss, &len);
#endif
    if (fd >= 0) {
      int e = net_sys_prepare(fd);
      if (e)
        return fail(err, e, fd);
      set_nodelay(fd);
      if (addr)
        memcpy(addr, &ss, (size_t)len < sizeof ss ? (size_t)len : sizeof ss);
      if (addrlen)
        *addrlen = len;
      return fd;
    }
    /* A connection reset while queued is gone, not an error of the
     * listener: try the next one; with none left this ends in EAGAIN. */
    int e = net_sys_error();
    if (e == EINTR || e == ECONNABORTED || e == EPROTO || e == ECONNRESET)
      continue;
    return fail(err, e == EWOULDBLOCK ? EAGAIN : e, -1);
  }
}

int net_tcp_local_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(SOCK(fd), (struct sockaddr *)&ss, &len) < 0)
    return -1;
  if (ss.ss_family == AF_INET)
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -1;
}

char *net_addr_format(const struct sockaddr *addr, char *out, size_t size) {
  char host[INET6_ADDRSTRLEN];
  if (!out || size == 0)
    return out;
  if (addr && addr->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
    if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof host)) {
      snprintf(out, size, "%s:%u", host, (unsigned)ntohs(a->sin_port));
      return out;
    }
  } else if (addr && addr->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
    if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host)) {
      snprintf(out, size, "[%s]:%u", host, (unsigned)ntohs(a->sin6_port));
      return out;
    }
  }
  snprintf(out, size, "?");
  return out;
}

const char *net_ip_format(const uint8_t *addr, size_t len, char *out, size_t size) {
  if (len != 4 && len != 16)
    return NULL;
  return inet_ntop(len == 4 ? AF_INET : AF_INET6, addr, out, (socklen_t)size);
}

char *net_peer_format(int fd, char *out, size_t size) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getpeername(SOCK(fd), (struct sockaddr *)&ss, &len) < 0) {
    if (out && size)
      snprintf(out, size, "?");
    return out;
  }
  return net_addr_format((struct sockaddr *)&ss, out, size);
}

/* ---- the plain-TCP transport ---- */

/* strerror is not thread-safe and strerror_r has two signatures; the
 * errors a socket (or a configuration file) really meets are few. */
const char *net_errno_text(int e) {
  switch (e) {
  case ECONNRESET: return "connection reset by peer";
  case EPIPE: return "broken pipe";
  case ECONNREFUSED: return "connection refused";
  case ECONNABORTED: return "connection aborted";
  case ETIMEDOUT: return "connection timed out";
  case ENOTCONN: return "socket is not connected";
  case EHOSTUNREACH: return "no route to host";
  case ENETUNREACH: return "network is unreachable";
  case ENETDOWN: return "network is down";
  case ENETRESET: return "connection reset by network";
  case EBADF: return "bad file descriptor";
  case EINVAL: return "invalid argument";
  case ENOMEM: return "out of memory";
  case ENOBUFS: return "no buffer space available";
  case EACCES: return "permission denied";
  case ENOENT: return "no such file";
  case EISDIR: return "is a directory";
  case EIO: return "input/output error";
  default: return "socket error";
  }
}

static ssize_t tcp_fail(net_transport *t, int e) {
  t->err = e;
  t->message = net_errno_text(e);
  return NET_FAIL;
}

static ssize_t tcp_recv(net_transport *t, void *buf, size_t n, int flags) {
  /* recv of 0 bytes returns 0, which would read as EOF. */
  if (n == 0)
    return tcp_fail(t, EINVAL);
  if (n > SSIZE_MAX)
    n = SSIZE_MAX;
#ifdef NET_SYS_WINDOWS
  if (n > INT_MAX)
    n = INT_MAX;
#endif
  for (;;) {
    ssize_t r = recv(SOCK(t->fd), buf, LEN(n), flags);
    if (r > 0)
      return r;
    if (r == 0)
      return NET_EOF;
    int e = net_sys_error();
    if (e == EINTR)
      continue;
    if (e == EAGAIN || e == EWOULDBLOCK)
      return NET_WANT_READ;
    return tcp_fail(t, e);
  }
}

static ssize_t tcp_read(net_transport *t, void *buf, size_t n) {
  return tcp_recv(t, buf, n, 0);
}

#ifdef NET_SYS_WINDOWS
typedef WSABUF net_iovec;
#define IOV(p, n) {(ULONG)(n), (char *)(p)}
#define IOV_MAX_LEN ((size_t)ULONG_MAX)
#else
typedef struct iovec net_iovec;
#define IOV(p, n) {(void *)(p), (n)}
#define IOV_MAX_LEN ((size_t)SSIZE_MAX)
#endif

/* Send the pieces in iov[0, n) as one system call: bytes taken, or
 * NET_WANT_WRITE, or NET_FAIL. */
static ssize_t tcp_sendv(net_transport *t, net_iovec *iov, size_t n) {
  for (;;) {
#ifdef NET_SYS_WINDOWS
    DWORD sent = 0;
    ssize_t r = WSASend(SOCK(t->fd), iov, (DWORD)n, &sent, 0, NULL, NULL) == 0
                    ? (ssize_t)sent
                    : -1;
#else
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = n};
    net_sigpipe g;
    net_sigpipe_block(&g);
    ssize_t r = sendmsg(t->fd, &m, NET_SEND_FLAGS);
    int e = r < 0 ? errno : r == 0 ? EIO : 0;
    net_sigpipe_restore(&g, e);
#endif
    if (r > 0)
      return r;
#ifdef NET_SYS_WINDOWS
    int e = r < 0 ? net_sys_error() : EIO;
#endif
    if (e == EINTR)
      continue;
    if (e == EAGAIN || e == EWOULDBLOCK)
      return NET_WANT_WRITE;
    return tcp_fail(t, e);
  }
}

static ssize_t tcp_write(net_transport *t, const void *buf, size_t n) {
  /* 0 would read as NET_EOF, which write never returns. */
  if (n == 0)
    return tcp_fail(t, EINVAL);
  if (n > IOV_MAX_LEN)
    n = IOV_MAX_LEN;
  net_iovec iov = IOV(buf, n);
  return tcp_sendv(t, &iov, 1);
}

/* A big message's header and payload in one system call, the payload
 * straight from the caller's memory (no copy into an output buffer). */
static ssize_t tcp_write2(net_transport *t, const void *a, size_t na,
                          const void *b, size_t nb) {
  if (na == 0 || na > IOV_MAX_LEN || nb > IOV_MAX_LEN ||
      nb > (size_t)SSIZE_MAX - na)
    return tcp_fail(t, EINVAL);
  net_iovec iov[2] = {IOV(a, na), IOV(b, nb)};
  return tcp_sendv(t, iov, 2);
}

static bool tcp_pending(net_transport *t) { return false; }

static int tcp_shutdown(net_transport *t) {
  if (shutdown(SOCK(t->fd), SHUT_WR) == 0)
    return 0;
  int e = net_sys_error();
  if (e == ENOTCONN)
    return 0;
  return (int)tcp_fail(t, e);
}

static void tcp_destroy(net_transport *t) {
  if (!t)
    return;
  if (t->fd >= 0)
    net_sys_close(t->fd);
  free(t);
}

static const net_transport_ops tcp_ops = {
    tcp_read, tcp_write, tcp_pending, tcp_shutdown, tcp_destroy, tcp_write2,
};

int net_tcp_transport_release(net_transport *t) {
  if (!t || t->ops != &tcp_ops)
    return -1;
  int fd = t->fd;
  free(t);
  return fd;
}

ssize_t net_tcp_peek(net_transport *t, void *buf, size_t n) {
  if (!t || t->ops != &tcp_ops)
    return NET_FAIL;
  return tcp_recv(t, buf, n, MSG_PEEK);
}

net_transport *net_tcp_transport_new(int fd) {
  net_transport *t = malloc(sizeof *t);
  if (!t)
    return NULL;
  t->ops = &tcp_ops;
  t->fd = fd;
  t->err = 0;
  t->message = NULL;
  return t;
}

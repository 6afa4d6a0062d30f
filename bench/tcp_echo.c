/*
 * tcp_echo.c -- the ceiling row: a plain TCP echo server on 127.0.0.1, one
 * thread, level-triggered epoll, no WebSocket at all.  What a server cannot
 * beat on this machine with the same client.  Bytes are echoed from one
 * shared read buffer; only a peer that stops reading gets a buffer of its
 * own (and is not read from until it drains).
 *
 *   tcp_echo PORT
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

typedef struct peer {
  int fd;
  char *pending; /* bytes the kernel would not take yet */
  size_t len, off;
} peer;

static char buf[256 * 1024];
static int ep;

static void drop(peer *p) {
  close(p->fd);
  free(p->pending);
  free(p);
}

/* Write what is pending; 1 when all is out, 0 when blocked, -1 on error. */
static int drain(peer *p) {
  while (p->off < p->len) {
    ssize_t w = send(p->fd, p->pending + p->off, p->len - p->off, MSG_NOSIGNAL);
    if (w < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    p->off += (size_t)w;
  }
  free(p->pending);
  p->pending = NULL, p->len = p->off = 0;
  return 1;
}

static void on_readable(peer *p) {
  ssize_t r = read(p->fd, buf, sizeof buf);
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return drop(p);
  if (r < 0) return;
  size_t off = 0;
  while (off < (size_t)r) {
    ssize_t w = send(p->fd, buf + off, (size_t)r - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN) return drop(p);
    if (w < 0) break;
    off += (size_t)w;
  }
  if (off == (size_t)r) return;
  /* The peer is not reading: keep the rest, stop reading, wait to write. */
  p->len = (size_t)r - off, p->off = 0;
  if (!(p->pending = malloc(p->len))) return drop(p);
  memcpy(p->pending, buf + off, p->len);
  struct epoll_event e = { .events = EPOLLOUT, .data.ptr = p };
  epoll_ctl(ep, EPOLL_CTL_MOD, p->fd, &e);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: tcp_echo PORT\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 4096) < 0) {
    perror("tcp_echo: listen");
    return 1;
  }
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);
  for (;;) {
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      peer *p = evs[i].data.ptr;
      if (!p) {
        for (int k = 0; k < 64; k++) {
          int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          peer *np = calloc(1, sizeof *np);
          if (!np) {
            close(fd);
            continue;
          }
          np->fd = fd;
          struct epoll_event pe = { .events = EPOLLIN, .data.ptr = np };
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &pe);
        }
      } else if (p->pending) {
        int d = drain(p);
        if (d < 0) {
          drop(p);
        } else if (d > 0) {
          struct epoll_event pe = { .events = EPOLLIN, .data.ptr = p };
          epoll_ctl(ep, EPOLL_CTL_MOD, p->fd, &pe);
        }
      } else {
        on_readable(p);
      }
    }
  }
}

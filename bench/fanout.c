/*
 * fanout.c -- the fan-out benchmark's client: one publisher and N
 * subscribers on one server, written apart from moonws (its own upgrade
 * request, masking, frame parser; zlib to inflate).
 *
 *   fanout -u ws://127.0.0.1:PORT -n SUBS -s SIZE [-z] [-r RATE] [-w WINDOW]
 *          [-t SECS] [-p SERVER_PID]
 *
 * Subscribers connect to /sub, the publisher to /pub; the server sends
 * every message the publisher sends to every subscriber.  Message k
 * carries k in its first 8 bytes, this run's id in the next 8 (a message
 * of an earlier run still in the server is skipped), and a fixed filler
 * after: every
 * subscriber checks every byte, and that it gets k, k+1, ... with no gap.
 * The publisher keeps at most WINDOW messages ahead of the slowest
 * subscriber (so no server buffers without bound), and at most RATE
 * messages a second when RATE > 0.  -z offers permessage-deflate with
 * server_no_context_takeover and client_no_context_takeover, so every
 * message inflates alone (one zlib stream serves all subscribers).
 * After a 0.5 s warm-up it measures SECS seconds and prints one JSON
 * line: delivered messages/s, publishes/s, the server's CPU time per
 * delivered message (/proc/PID/stat utime+stime), and failures.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define RBUF (256 * 1024)
#define RING 4096

typedef struct sub {
  int fd;
  uint64_t next;   /* the sequence number it must get next */
  uint8_t *part;   /* bytes of an incomplete frame */
  size_t plen, pcap;
} sub;

static struct {
  char host[64];
  int port, n, size, deflate, window, pid;
  double rate, secs;
} opt = {"127.0.0.1", 0, 1000, 64, 0, 64, 0, 0, 2};

static sub *subs;
static int pub_fd, ep;
static uint8_t *filler;
static uint32_t ring[RING]; /* subscribers that got message k (k % RING) */
static uint8_t done[RING];  /* ... all of them */
static uint64_t completed;  /* every subscriber got every message below */
static uint64_t sent;       /* messages the publisher sent */
static uint64_t delivered;  /* messages subscribers got */
static z_stream zs;
static uint8_t *zout;
static char failure[200];

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long long server_ticks(void) {
  char path[64], buf[1024];
  if (!opt.pid)
    return 0;
  snprintf(path, sizeof path, "/proc/%d/stat", opt.pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  long long ut = 0, st = 0;
  if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &ut,
                  &st) == 2)
    return ut + st;
  return 0;
}

static void die(const char *why) {
  if (!failure[0])
    snprintf(failure, sizeof failure, "%s", why);
  printf("{\"ok\":false,\"error\":\"%s\"}\n", failure);
  exit(1);
}

/* Connect and upgrade (blocking), then make the socket nonblocking. */
static int open_ws(const char *path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
  inet_pton(AF_INET, opt.host, &a.sin_addr);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
    die("connect failed");
  char req[512];
  int len = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     path, opt.host, opt.port,
                     opt.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                   "server_no_context_takeover; client_no_context_takeover\r\n"
                                 : "");
  if (write(fd, req, (size_t)len) != len)
    die("upgrade request not sent");
  char resp[4096] = "";
  size_t got = 0;
  while (!strstr(resp, "\r\n\r\n")) { /* byte by byte: nothing after it is taken */
    if (got + 1 >= sizeof resp || read(fd, resp + got, 1) != 1)
      die("no upgrade response");
    resp[++got] = 0;
  }
  if (strncmp(resp, "HTTP/1.1 101", 12) != 0)
    die("upgrade refused");
  if (opt.deflate != (strcasestr(resp, "permessage-deflate") != NULL))
    die("compression not as asked");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

/* One message for subscriber s: check it, count it. */
static void on_message(sub *s, const uint8_t *p, size_t n, int compressed) {
  if (compressed) {
    static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
    inflateReset(&zs);
    zs.next_in = (uint8_t *)p;
    zs.avail_in = (uInt)n;
    zs.next_out = zout;
    zs.avail_out = (uInt)opt.size + 64;
    int r = inflate(&zs, Z_SYNC_FLUSH);
    zs.next_in = (uint8_t *)tail;
    zs.avail_in = 4;
    if (r == Z_OK || r == Z_BUF_ERROR)
      r = inflate(&zs, Z_SYNC_FLUSH);
    if (r != Z_OK && r != Z_BUF_ERROR && r != Z_STREAM_END)
      die("corrupt compressed message");
    p = zout;
    n = (size_t)opt.size + 64 - zs.avail_out;
  }
  char want[9];
  snprintf(want, sizeof want, "%08llu", (unsigned long long)(s->next % 100000000u));
  if (n == (size_t)opt.size && memcmp(p + 8, filler + 8, 8) != 0)
    return; /* another run's message, still on its way through the server */
  if (n != (size_t)opt.size || memcmp(p, want, 8) != 0 ||
      memcmp(p + 8, filler + 8, n - 8) != 0)
    die("a subscriber got a wrong message (gap, order or bytes)");
  s->next++;
  delivered++;
  if (++ring[(s->next - 1) % RING] == (uint32_t)opt.n) {
    done[(s->next - 1) % RING] = 1;
    while (done[completed % RING]) {
      done[completed % RING] = 0;
      ring[completed % RING] = 0;
      completed++;
    }
  }
}

/* Parse the frames in p[0, n); returns bytes taken (the rest is partial). */
static size_t parse(sub *s, const uint8_t *p, size_t n) {
  size_t pos = 0;
  for (;;) {
    if (n - pos < 2)
      return pos;
    uint8_t b0 = p[pos], b1 = p[pos + 1];
    size_t hs = 2;
    uint64_t len = b1 & 0x7f;
    if (b1 & 0x80)
      die("masked frame from the server");
    if (len == 126) {
      if (n - pos < 4)
        return pos;
      len = (uint64_t)p[pos + 2] << 8 | p[pos + 3];
      hs = 4;
    } else if (len == 127) {
      if (n - pos < 10)
        return pos;
      len = 0;
      for (int i = 0; i < 8; i++)
        len = len << 8 | p[pos + 2 + i];
      hs = 10;
    }
    if (n - pos - hs < len)
      return pos;
    uint8_t op = b0 & 0x0f;
    if (!(b0 & 0x80))
      die("fragmented message (not expected here)");
    if (op == 1 || op == 2)
      on_message(s, p + pos + hs, (size_t)len, (b0 & 0x40) != 0);
    else if (op == 8)
      die("the server closed a subscriber");
    pos += hs + (size_t)len;
  }
}

static uint8_t *rbuf;

static void on_readable(sub *s) {
  for (;;) {
    size_t have = s->plen;
    if (have)
      memcpy(rbuf, s->part, have);
    ssize_t r = read(s->fd, rbuf + have, RBUF - have);
    if (r == 0)
      die("a subscriber's connection ended");
    if (r < 0) {
      if (errno == EAGAIN)
        return;
      die("read failed");
    }
    size_t total = have + (size_t)r, used = parse(s, rbuf, total);
    s->plen = total - used;
    if (s->plen) {
      if (s->plen > s->pcap) {
        s->pcap = s->plen < 4096 ? 4096 : s->plen * 2;
        s->part = realloc(s->part, s->pcap);
        if (!s->part)
          die("out of memory");
      }
      memmove(s->part, rbuf + used, s->plen);
    }
    if ((size_t)r < RBUF - have)
      return;
  }
}

/* Send every message the window and the rate allow. */
static uint8_t *frame;
static void publish_some(uint64_t start, uint64_t t) {
  while (sent < completed + (uint64_t)opt.window && sent - completed < RING - 1) {
    if (opt.rate > 0 && (double)sent >= (double)(t - start) / 1e9 * opt.rate + 1)
      return;
    size_t hs = opt.size < 126 ? 6 : opt.size < 65536 ? 8 : 14;
    uint8_t *f = frame;
    f[0] = 0x82;
    if (opt.size < 126) {
      f[1] = (uint8_t)(0x80 | opt.size);
    } else if (opt.size < 65536) {
      f[1] = 0x80 | 126;
      f[2] = (uint8_t)(opt.size >> 8);
      f[3] = (uint8_t)opt.size;
    } else {
      f[1] = 0x80 | 127;
      for (int i = 0; i < 8; i++)
        f[2 + i] = (uint8_t)((uint64_t)opt.size >> (56 - 8 * i));
    }
    static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(f + hs - 4, key, 4);
    char seq[9];
    snprintf(seq, sizeof seq, "%08llu", (unsigned long long)(sent % 100000000u));
    memcpy(filler, seq, 8);
    for (size_t i = 0; i < (size_t)opt.size; i++)
      f[hs + i] = filler[i] ^ key[i & 3];
    size_t len = hs + (size_t)opt.size, off = 0;
    while (off < len) { /* small: the socket takes it, or we wait a little */
      ssize_t w = write(pub_fd, f + off, len - off);
      if (w > 0)
        off += (size_t)w;
      else if (w < 0 && errno != EAGAIN)
        die("publish failed");
    }
    sent++;
  }
}

int main(int argc, char **argv) {
  int c;
  while ((c = getopt(argc, argv, "u:n:s:zr:w:t:p:")) != -1) {
    switch (c) {
    case 'u':
      if (sscanf(optarg, "ws://%63[^:]:%d", opt.host, &opt.port) != 2)
        die("-u ws://host:port");
      break;
    case 'n': opt.n = atoi(optarg); break;
    case 's': opt.size = atoi(optarg); break;
    case 'z': opt.deflate = 1; break;
    case 'r': opt.rate = atof(optarg); break;
    case 'w': opt.window = atoi(optarg); break;
    case 't': opt.secs = atof(optarg); break;
    case 'p': opt.pid = atoi(optarg); break;
    default: die("usage: fanout -u ws://host:port -n SUBS -s SIZE [-z] [-r RATE] [-w W] [-t S] [-p PID]");
    }
  }
  if (opt.size < 16 || opt.n < 1 || !opt.port)
    die("bad arguments");
  filler = malloc((size_t)opt.size);
  frame = malloc((size_t)opt.size + 14);
  zout = malloc((size_t)opt.size + 64);
  rbuf = malloc(RBUF);
  subs = calloc((size_t)opt.n, sizeof *subs);
  if (!filler || !frame || !zout || !rbuf || !subs)
    die("out of memory");
  for (int i = 0; i < opt.size; i++)
    filler[i] = (uint8_t)("the quick brown fox jumps over the lazy dog "[i % 44] ^ (i / 44 % 3));
  /* Bytes 8-15 say which run a message belongs to. */
  char run_id[9];
  snprintf(run_id, sizeof run_id, "%08x", (unsigned)(now_ns() ^ (uint64_t)getpid() << 16));
  memcpy(filler + 8, run_id, 8);
  if (inflateInit2(&zs, -15) != Z_OK)
    die("zlib");
  ep = epoll_create1(0);
  for (int i = 0; i < opt.n; i++) {
    subs[i].fd = open_ws("/sub");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &subs[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, subs[i].fd, &ev);
  }
  pub_fd = open_ws("/pub");
  usleep(200000); /* the last subscriptions settle */
  static struct epoll_event evs[1024];
  uint64_t start = now_ns(), warm_end = start + 500000000u,
           end = warm_end + (uint64_t)(opt.secs * 1e9);
  uint64_t d0 = 0, s0 = 0;
  long long t0 = 0;
  int measuring = 0;
  for (;;) {
    uint64_t t = now_ns();
    if (!measuring && t >= warm_end) {
      measuring = 1;
      d0 = delivered, s0 = sent, t0 = server_ticks();
    }
    if (t >= end)
      break;
    publish_some(start, t);
    int k = epoll_wait(ep, evs, 1024, 1);
    for (int i = 0; i < k; i++)
      on_readable(evs[i].data.ptr);
  }
  long long t1 = server_ticks();
  double secs = opt.secs, dd = (double)(delivered - d0);
  double cpu_ns = (double)(t1 - t0) * (1e9 / (double)sysconf(_SC_CLK_TCK));
  printf("{\"ok\":true,\"subs\":%d,\"size\":%d,\"deflate\":%d,\"rate\":%g,"
         "\"delivered_per_s\":%.0f,\"publishes_per_s\":%.1f,"
         "\"server_cpu_s\":%.3f,\"server_ns_per_delivery\":%.1f}\n",
         opt.n, opt.size, opt.deflate, opt.rate, dd / secs, (double)(sent - s0) / secs,
         cpu_ns / 1e9, dd > 0 ? cpu_ns / dd : 0.0);
  return 0;
}

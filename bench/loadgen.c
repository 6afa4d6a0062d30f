/*
 * loadgen.c -- the benchmark's one load generator: an epoll client with its
 * own minimal RFC 6455 framing (upgrade request, masked frames, a streaming
 * parser of server frames), written apart from moonws so that it shares none
 * of moonws's code or bugs.  Its own cost stays small so the server is what
 * gets measured: frames are masked once and resent, the clock is read once
 * per wakeup, and echoes are checked byte for byte as they stream past.
 * Every run is bounded in time and prints one JSON line (see usage()).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "malloc_count.h"

#define MAX_PIDS 16
#define RESP_MAX 4096     /* an upgrade response longer than this is refused */
#define RBUF_SIZE (256 * 1024)
#define SLICES 5          /* the measured window is cut in 5 for a median */
#define HIST_N 2048

/* ------------------------------------------------------------ settings */

enum scheme { S_TCP, S_WS, S_WSS };
enum mode { M_ECHO, M_IDLE, M_HANDSHAKE, M_WAIT };

static struct {
  enum scheme scheme;
  char host[300], port[300], path[512];
  struct sockaddr_storage addr;
  socklen_t addrlen;
} url;

static struct {
  enum mode mode;
  const char *mode_name, *url_text, *labels, *mc_path;
  const char *hook_open, *hook_close; /* echo -n: shell commands at the window's edges;
                                          idle: before the connections open, and
                                          once they have settled */
  int conns, depth, binary;
  uint64_t count, warm_count;         /* echo -n/-W: measured and warm-up messages */
  size_t size;
  double secs, warm, timeout;
  pid_t pids[MAX_PIDS];
  int npids;
} opt = { .conns = 1, .depth = 1, .size = 64, .secs = 3, .warm = 0.3, .timeout = 30 };

static void usage(void) {
  fprintf(stderr,
    "usage: loadgen MODE URL [options]\n"
    "  URL: ws://127.0.0.1:PORT/path, wss://... (no certificate check), tcp://127.0.0.1:PORT\n"
    "  echo       -c conns -d depth -s size [-b]: echo round trips; msgs/s, p50/p99, MB/s\n"
    "  idle       -c N: hold N open connections; server RSS per connection (needs -p)\n"
    "  handshake  -c concurrency: connect, upgrade, close per second (tcp: connect,\n"
    "             one byte each way, close)\n"
    "  wait       retry one handshake until it works or -T seconds pass (exit status)\n"
    "  -t secs measured  -w secs warm-up  -T secs setup timeout  -b binary frames\n"
    "  -p PID[,PID..] server processes: CPU per message, RSS\n"
    "  -L k=v[,k=v..] extra string fields for the JSON line\n"
    "  -n N [-W M]  echo: a window of exactly N messages after M of warm-up (instead\n"
    "           of -t/-w), each phase begun with a full window and ended once every\n"
    "           echo is back, so the server is idle at both edges of the window\n"
    "  -x CMD / -X CMD  echo -n: shell command run at the idle edge before / after\n"
    "           the measured messages; idle: before the connections open / once they\n"
    "           have settled, before RSS is read (a failing command fails the run)\n"
    "  -m FILE  echo: allocation calls per message, by calling object, from the\n"
    "           counters of a server run with LD_PRELOAD=malloc_count.so\n"
    "           MALLOC_COUNT_FILE=FILE\n"
    "loadgen port: print a free TCP port of 127.0.0.1 (below the ephemeral range)\n");
  exit(2);
}

/* ------------------------------------------------------------ clock, /proc */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t sec_ns(double s) { return (uint64_t)(s * 1e9); }

/* utime + stime of the server processes, in clock ticks; -1 if unreadable. */
static long long server_ticks(void) {
  long long sum = 0;
  for (int i = 0; i < opt.npids; i++) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)opt.pids[i]);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                     &ut, &st) != 2)
      return -1;
    sum += (long long)(ut + st);
  }
  return sum;
}

/* Resident set of the server processes, KiB; -1 if unreadable. */
static long long server_rss_kib(void) {
  long long sum = 0;
  for (int i = 0; i < opt.npids; i++) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)opt.pids[i]);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long long kib = -1;
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "VmRSS: %lld", &kib) == 1) break;
    fclose(f);
    if (kib < 0) return -1;
    sum += kib;
  }
  return sum;
}

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
         ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* Allocation counters of a server under malloc_count.so: a copy of the
 * shared file, or used = 0 when there is none. */
static void mc_snapshot(mc_file *out) {
  memset(out, 0, sizeof *out);
  if (!opt.mc_path) return;
  FILE *f = fopen(opt.mc_path, "rb");
  if (!f) return;
  if (fread(out, sizeof *out, 1, f) != 1 || out->magic != MC_MAGIC || out->used > MC_SLOTS)
    memset(out, 0, sizeof *out);
  fclose(f);
}

/* ,"allocs_per_msg":"name=calls ..." for the objects that allocated in
 * the window (every slot of a known object, zero or not, when none did). */
static void mc_print(const mc_file *a, const mc_file *b, uint64_t msgs) {
  if (!opt.mc_path || !msgs) return;
  printf(",\"allocs_per_msg\":\"");
  for (uint64_t i = 0; i < b->used; i++) {
    uint64_t before = i < a->used ? a->slot[i].calls : 0;
    printf("%s%.*s=%.3f", i ? " " : "", MC_NAME, b->slot[i].name,
           (double)(b->slot[i].calls - before) / (double)msgs);
  }
  printf("\"");
}

/* ------------------------------------------------------------ latency */

/* Log-linear buckets: exact below 64 ns, then 32 per power of two (~3%). */
static uint64_t hist[HIST_N], hist_n;

static unsigned bucket_of(uint64_t v) {
  if (v < 64) return (unsigned)v;
  unsigned e = 63u - (unsigned)__builtin_clzll(v);
  return 64u + (e - 6u) * 32u + (unsigned)((v >> (e - 5u)) & 31u);
}

static double bucket_mid(unsigned b) {
  if (b < 64) return b;
  unsigned e = (b - 64u) / 32u + 6u, sub = (b - 64u) % 32u;
  double lo = (double)(1ull << e) + (double)sub * (double)(1ull << (e - 5u));
  return lo + (double)(1ull << (e - 5u)) / 2;
}

static void hist_add(uint64_t v) { hist[bucket_of(v)]++, hist_n++; }

static double hist_pct_us(double p) {
  if (!hist_n) return 0;
  uint64_t want = (uint64_t)(p * (double)hist_n), seen = 0;
  if (want >= hist_n) want = hist_n - 1;
  for (unsigned b = 0; b < HIST_N; b++) {
    seen += hist[b];
    if (seen > want) return bucket_mid(b) / 1000;
  }
  return 0;
}

/* ------------------------------------------------------------ failures */

static char failure[256]; /* first fatal error of the run, for the JSON line */
static long errors;       /* failed connections (handshake, idle modes) */

static void fail(const char *fmt, ...) {
  if (failure[0]) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(failure, sizeof failure, fmt, ap);
  va_end(ap);
  for (char *p = failure; *p; p++)
    if (*p == '"' || *p == '\\' || (unsigned char)*p < 32) *p = '\'';
}

/* ------------------------------------------------------------ wire data */

static char request[2048];        /* the upgrade request, one for all */
static size_t request_len;
static char accept_value[64];     /* the Sec-WebSocket-Accept it must get */
static uint8_t mask_key[4];
static uint8_t *payload;          /* what every echo must carry back */
static uint8_t *txbuf;            /* copies of one masked frame, sent in a loop */
static size_t frame_len, txbuf_len;
static uint8_t close_frame[8];    /* masked close, code 1000 */
static SSL_CTX *tls_ctx;

static void make_wire_data(void) {
  uint8_t raw[16], digest[20];
  char key[32], both[128];
  unsigned dlen = 0;
  if (RAND_bytes(raw, sizeof raw) != 1 || RAND_bytes(mask_key, 4) != 1) {
    fprintf(stderr, "loadgen: RAND_bytes failed\n");
    exit(1);
  }
  EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
  snprintf(both, sizeof both, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
  EVP_Digest(both, strlen(both), digest, &dlen, EVP_sha1(), NULL);
  EVP_EncodeBlock((unsigned char *)accept_value, digest, 20);
  request_len = (size_t)snprintf(request, sizeof request,
    "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
    "User-Agent: moonws-loadgen\r\n\r\n", url.path, url.host, url.port, key);

  /* Text is printable ASCII; binary is a pattern no byte-for-byte mix-up
   * (offset, truncation, another message) can reproduce. */
  payload = malloc(opt.size ? opt.size : 1);
  if (!payload) exit(1);
  for (size_t i = 0; i < opt.size; i++)
    payload[i] = opt.binary ? (uint8_t)((i * 2654435761u) >> 13)
                            : (uint8_t)('a' + (i * 7 + i / 26) % 26);

  size_t hlen = 0;
  uint8_t hdr[14];
  if (url.scheme != S_TCP) {
    hdr[0] = (uint8_t)(0x80 | (opt.binary ? 2 : 1));
    if (opt.size < 126) {
      hdr[1] = (uint8_t)(0x80 | opt.size), hlen = 2;
    } else if (opt.size < 65536) {
      hdr[1] = 0x80 | 126, hdr[2] = (uint8_t)(opt.size >> 8), hdr[3] = (uint8_t)opt.size;
      hlen = 4;
    } else {
      hdr[1] = 0x80 | 127;
      for (int i = 0; i < 8; i++) hdr[2 + i] = (uint8_t)((uint64_t)opt.size >> (56 - 8 * i));
      hlen = 10;
    }
    hlen += 4; /* the key follows */
  }
  frame_len = hlen + opt.size;
  /* Enough copies to cover a full window of in-flight messages in one
   * write (up to 256 KiB), and at least 4 so that back-to-back frames
   * never share a key: each copy is masked with its own random key, so
   * the client masks nothing while it runs. */
  size_t copies = (size_t)opt.depth;
  if (copies * frame_len > RBUF_SIZE) copies = RBUF_SIZE / frame_len;
  if (copies < 4) copies = 4;
  txbuf_len = copies * frame_len;
  txbuf = malloc(txbuf_len);
  if (!txbuf) exit(1);
  for (size_t c = 0; c < copies; c++) {
    uint8_t *f = txbuf + c * frame_len, k[4] = { 0, 0, 0, 0 };
    if (url.scheme != S_TCP) {
      if (RAND_bytes(k, 4) != 1) exit(1);
      memcpy(f, hdr, hlen - 4);
      memcpy(f + hlen - 4, k, 4);
    }
    for (size_t i = 0; i < opt.size; i++) f[hlen + i] = payload[i] ^ k[i & 3];
  }

  close_frame[0] = 0x88, close_frame[1] = 0x82;
  memcpy(close_frame + 2, mask_key, 4);
  close_frame[6] = 0x03 ^ mask_key[0], close_frame[7] = 0xE8 ^ mask_key[1];
}

static void parse_url(const char *u) {
  const char *p;
  if (!strncmp(u, "ws://", 5)) url.scheme = S_WS, p = u + 5;
  else if (!strncmp(u, "wss://", 6)) url.scheme = S_WSS, p = u + 6;
  else if (!strncmp(u, "tcp://", 6)) url.scheme = S_TCP, p = u + 6;
  else usage();
  const char *slash = strchr(p, '/');
  snprintf(url.path, sizeof url.path, "%s", slash ? slash : "/");
  size_t hp = slash ? (size_t)(slash - p) : strlen(p);
  char hostport[300];
  if (hp >= sizeof hostport) usage();
  memcpy(hostport, p, hp);
  hostport[hp] = 0;
  char *colon = strrchr(hostport, ':');
  if (!colon) usage();
  *colon = 0;
  char *h = hostport;
  if (*h == '[' && colon > h && colon[-1] == ']') h++, colon[-1] = 0;
  snprintf(url.host, sizeof url.host, "%s", h);
  snprintf(url.port, sizeof url.port, "%s", colon + 1);
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
  if (getaddrinfo(url.host, url.port, &hints, &res) != 0) {
    fprintf(stderr, "loadgen: cannot resolve %s\n", url.host);
    exit(2);
  }
  memcpy(&url.addr, res->ai_addr, res->ai_addrlen);
  url.addrlen = res->ai_addrlen;
  freeaddrinfo(res);
}

/* ------------------------------------------------------------ connections */

enum cstate { C_FREE, C_CONNECT, C_TLS, C_UPGRADE, C_OPEN, C_CLOSING };

typedef struct conn {
  int fd;
  enum cstate st;
  SSL *ssl;
  uint32_t ev;               /* events registered with epoll */
  const uint8_t *out;        /* one-shot bytes to send (request, close) */
  size_t out_len, out_off;
  uint64_t tx_left;          /* bytes of the looping frame stream to send */
  size_t tx_pos;             /* where the stream stands within txbuf */
  char *resp;                /* upgrade response so far */
  size_t resp_len;
  uint8_t hdr[14];           /* a frame header split across reads */
  unsigned hdr_len;
  int in_payload, op, fin, in_msg;
  uint64_t pay_left, msg_off;
  uint64_t *ring;            /* send times of the messages in flight */
  unsigned ring_head, ring_n;
  uint64_t t0;               /* when this connection started */
  int deferred;              /* in deferred[], to be flushed after the batch */
} conn;

static int ep = -1;
static conn *conns;
static int nconns;
static uint8_t *rbuf;
static uint64_t now;         /* read once per wakeup */
static conn *deferred[512];  /* one wakeup's connections with bytes to send */
static int ndeferred;

/* Mode hooks: a connection finished its upgrade, a whole message arrived,
 * the server sent a close frame or EOF, or the connection failed. */
static void on_open(conn *c);
static void on_message(conn *c);
static void on_end(conn *c, int clean);

static void set_events(conn *c, uint32_t ev) {
  if (c->ev == ev) return;
  struct epoll_event e = { .events = ev, .data.ptr = c };
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
  c->ev = ev;
}

static void conn_free(conn *c) {
  if (c->ssl) {
    if (c->st == C_CLOSING || c->st == C_OPEN) SSL_shutdown(c->ssl); /* once, no wait */
    SSL_free(c->ssl);
  }
  if (c->fd >= 0) close(c->fd);
  free(c->resp);
  uint64_t *ring = c->ring;
  memset(c, 0, sizeof *c);
  c->ring = ring;
  c->fd = -1;
  c->st = C_FREE;
}

static void conn_fail(conn *c, const char *what) {
  if (opt.mode == M_ECHO || opt.mode == M_IDLE) fail("%s", what);
  on_end(c, -1);
}

static int conn_start(conn *c) {
  c->fd = socket(url.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    fail("socket: %s", strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->t0 = now;
  c->st = C_CONNECT;
  c->ev = EPOLLOUT;
  struct epoll_event e = { .events = EPOLLOUT, .data.ptr = c };
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) < 0) {
    fail("epoll_ctl: %s", strerror(errno));
    return -1;
  }
  if (connect(c->fd, (struct sockaddr *)&url.addr, url.addrlen) < 0 && errno != EINPROGRESS) {
    char msg[128];
    snprintf(msg, sizeof msg, "connect: %s", strerror(errno));
    conn_fail(c, msg);
    return -1;
  }
  return 0;
}

/* Reads and writes: n > 0 bytes; 0 end of stream; -1 would block (wait for
 * *want); -2 error. */
static ssize_t io_read(conn *c, void *buf, size_t n, uint32_t *want) {
  *want = EPOLLIN;
  if (!c->ssl) {
    ssize_t r = read(c->fd, buf, n);
    if (r >= 0) return r;
    return errno == EAGAIN || errno == EINTR ? -1 : -2;
  }
  int r = SSL_read(c->ssl, buf, (int)n);
  if (r > 0) return r;
  switch (SSL_get_error(c->ssl, r)) {
  case SSL_ERROR_WANT_READ: return -1;
  case SSL_ERROR_WANT_WRITE: *want = EPOLLOUT; return -1;
  case SSL_ERROR_ZERO_RETURN: return 0;
  default: ERR_clear_error(); return -2;
  }
}

static ssize_t io_write(conn *c, const void *buf, size_t n, uint32_t *want) {
  *want = EPOLLOUT;
  if (!c->ssl) {
    ssize_t r = send(c->fd, buf, n, MSG_NOSIGNAL);
    if (r >= 0) return r;
    return errno == EAGAIN || errno == EINTR ? -1 : -2;
  }
  int r = SSL_write(c->ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n));
  if (r > 0) return r;
  switch (SSL_get_error(c->ssl, r)) {
  case SSL_ERROR_WANT_WRITE: return -1;
  case SSL_ERROR_WANT_READ: *want = EPOLLIN; return -1;
  default: ERR_clear_error(); return -2;
  }
}

/* Send what is queued; 0 when done or blocked, -1 on error. */
static int flush(conn *c) {
  uint32_t want = 0;
  while (c->out_off < c->out_len) {
    ssize_t w = io_write(c, c->out + c->out_off, c->out_len - c->out_off, &want);
    if (w == -1) goto blocked;
    if (w < 0) return -1;
    c->out_off += (size_t)w;
  }
  while (c->tx_left) {
    size_t n = txbuf_len - c->tx_pos;
    if (n > c->tx_left) n = (size_t)c->tx_left;
    ssize_t w = io_write(c, txbuf + c->tx_pos, n, &want);
    if (w == -1) goto blocked;
    if (w < 0) return -1;
    c->tx_left -= (uint64_t)w;
    c->tx_pos = (c->tx_pos + (size_t)w) % txbuf_len;
  }
  set_events(c, EPOLLIN);
  return 0;
blocked:
  set_events(c, EPOLLIN | want);
  return 0;
}

static void send_once(conn *c, const void *p, size_t n) {
  c->out = p, c->out_len = n, c->out_off = 0;
}

/* Queue one more echo message and note when it left. */
static void queue_message(conn *c) {
  unsigned cap = (unsigned)opt.depth;
  c->ring[(c->ring_head + c->ring_n) % cap] = now;
  c->ring_n++;
  c->tx_left += frame_len;
}

/* Header bytes needed so far: 2, then 4 or 10 once the length says so. */
static size_t hdr_need(const conn *c) {
  if (c->hdr_len < 2) return 2;
  unsigned l7 = c->hdr[1] & 0x7f;
  return l7 == 126 ? 4 : l7 == 127 ? 10 : 2;
}

/* Feed server bytes to the frame parser; -1 on a protocol error.  Payload
 * is compared with what was sent as it streams by, never buffered. */
static int feed(conn *c, const uint8_t *p, size_t n) {
  if (url.scheme == S_TCP) {
    while (n) {
      size_t k = opt.size - (size_t)c->msg_off;
      if (k > n) k = n;
      if (memcmp(p, payload + c->msg_off, k)) return fail("echo differs from what was sent"), -1;
      p += k, n -= k, c->msg_off += k;
      if (c->msg_off == opt.size) {
        c->msg_off = 0;
        on_message(c);
        if (c->st == C_FREE) return 0;
      }
    }
    return 0;
  }
  while (n) {
    if (!c->in_payload) {
      while (n && c->hdr_len < hdr_need(c)) c->hdr[c->hdr_len++] = *p++, n--;
      if (c->hdr_len < hdr_need(c)) return 0;
      if (c->hdr[1] & 0x80) return fail("server sent a masked frame"), -1;
      unsigned l7 = c->hdr[1] & 0x7f;
      uint64_t len = l7;
      if (l7 == 126) len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
      if (l7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++) len = len << 8 | c->hdr[2 + i];
      }
      c->op = c->hdr[0] & 0x0f;
      c->fin = c->hdr[0] & 0x80;
      c->hdr_len = 0;
      c->pay_left = len;
      c->in_payload = 1;
      if (c->op >= 8) {
        if (len > 125 || !c->fin) return fail("bad control frame from server"), -1;
      } else if (c->op == 0 ? !c->in_msg : c->in_msg || c->op > 2) {
        return fail("bad data frame sequence from server (opcode %d)", c->op), -1;
      } else {
        if (c->op && c->op != (opt.binary ? 2 : 1)) return fail("echo has the wrong opcode"), -1;
        if (len > opt.size - c->msg_off) return fail("echo is longer than what was sent"), -1;
        c->in_msg = 1;
      }
    }
    size_t k = c->pay_left < n ? (size_t)c->pay_left : n;
    if (c->op < 8) {
      if (memcmp(p, payload + c->msg_off, k)) return fail("echo differs from what was sent"), -1;
      c->msg_off += k;
    }
    p += k, n -= k, c->pay_left -= k;
    if (c->pay_left) return 0;
    c->in_payload = 0;
    if (c->op == 8) {
      on_end(c, 1);
      return 0;
    }
    if (c->op >= 8) continue; /* pings are not expected and are ignored */
    if (c->fin) {
      if (c->msg_off != opt.size) return fail("echo is shorter than what was sent"), -1;
      c->msg_off = 0;
      c->in_msg = 0;
      on_message(c);
      if (c->st == C_FREE) return 0;
    }
  }
  return 0;
}

/* Check the 101 response once its header block is complete; leftover
 * bytes are the first frames. */
static int read_upgrade(conn *c) {
  if (!c->resp && !(c->resp = malloc(RESP_MAX + 1))) return fail("out of memory"), -1;
  for (;;) {
    uint32_t want;
    ssize_t r = io_read(c, c->resp + c->resp_len, RESP_MAX - c->resp_len, &want);
    if (r == -1) {
      set_events(c, want);
      return 0;
    }
    if (r <= 0) {
      conn_fail(c, "server closed during the upgrade");
      return -1;
    }
    c->resp_len += (size_t)r;
    c->resp[c->resp_len] = 0;
    char *end = strstr(c->resp, "\r\n\r\n");
    if (!end) {
      if (c->resp_len == RESP_MAX) return conn_fail(c, "upgrade response too long"), -1;
      continue;
    }
    if (strncmp(c->resp, "HTTP/1.1 101", 12)) {
      char msg[96];
      snprintf(msg, sizeof msg, "upgrade refused: %.60s", c->resp);
      *strchr(msg, '\r') = 0;
      return conn_fail(c, msg), -1;
    }
    int ok = 0;
    for (char *line = strstr(c->resp, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
      if (strncasecmp(line + 2, "Sec-WebSocket-Accept:", 21)) continue;
      char *v = line + 23;
      while (*v == ' ' || *v == '\t') v++;
      size_t al = strlen(accept_value);
      ok = !strncmp(v, accept_value, al) && (v[al] == '\r' || v[al] == ' ');
    }
    if (!ok) return conn_fail(c, "wrong or missing Sec-WebSocket-Accept"), -1;
    size_t head = (size_t)(end + 4 - c->resp), extra = c->resp_len - head;
    uint8_t early[RESP_MAX];
    memcpy(early, c->resp + head, extra);
    free(c->resp);
    c->resp = NULL;
    c->st = C_OPEN;
    set_events(c, EPOLLIN);
    on_open(c);
    if (c->st == C_FREE) return -1;
    if (extra && feed(c, early, extra) < 0) return conn_fail(c, failure), -1;
    return 0;
  }
}

static void after_connect(conn *c) {
  if (url.scheme == S_WSS) {
    c->ssl = SSL_new(tls_ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) return conn_fail(c, "SSL_new failed");
    c->st = C_TLS;
    return;
  }
  if (url.scheme == S_TCP) {
    c->st = C_OPEN;
    set_events(c, EPOLLIN);
    on_open(c);
    return;
  }
  c->st = C_UPGRADE;
  send_once(c, (const uint8_t *)request, request_len);
}

/* One readiness event on one connection. */
static void conn_io(conn *c, uint32_t ev) {
  if (c->st == C_CONNECT) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      char msg[128];
      snprintf(msg, sizeof msg, "connect: %s", strerror(err));
      return conn_fail(c, msg);
    }
    after_connect(c);
    if (c->st == C_FREE) return;
  }
  if (c->st == C_TLS) {
    int r = SSL_connect(c->ssl);
    if (r <= 0) {
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) return set_events(c, EPOLLIN);
      if (e == SSL_ERROR_WANT_WRITE) return set_events(c, EPOLLOUT);
      char msg[160];
      snprintf(msg, sizeof msg, "TLS handshake: %s", ERR_reason_error_string(ERR_get_error()));
      ERR_clear_error();
      return conn_fail(c, msg);
    }
    c->st = C_UPGRADE;
    send_once(c, (const uint8_t *)request, request_len);
  }
  if (c->st == C_UPGRADE) {
    if (flush(c) < 0) return conn_fail(c, "write failed during the upgrade");
    if (c->out_off < c->out_len) return;
    if (read_upgrade(c) < 0 || c->st == C_FREE) return;
    if (flush(c) < 0) return conn_fail(c, "write failed");
    return;
  }
  /* C_OPEN or C_CLOSING: drain what is readable (a bounded number of
   * reads, so one busy connection cannot starve the others), then write. */
  if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    for (int i = 0; i < 16; i++) {
      uint32_t want;
      ssize_t r = io_read(c, rbuf, RBUF_SIZE, &want);
      if (r == -1) break;
      if (r == 0) return on_end(c, 0);
      if (r < 0) return on_end(c, -1);
      if (feed(c, rbuf, (size_t)r) < 0) return conn_fail(c, failure);
      if (c->st == C_FREE) return;
      if (!c->ssl && (size_t)r < RBUF_SIZE) break;
    }
  }
  /* Writes wait until every ready connection has been read (drive()):
   * the sends of one wakeup then go out back to back. */
  if (!c->deferred) c->deferred = 1, deferred[ndeferred++] = c;
}

/* Wait for events until deadline (ns) or until stop() says so. */
static void drive(uint64_t deadline, int (*stop)(void)) {
  struct epoll_event evs[512];
  now = now_ns();
  while (now < deadline && !(stop && stop())) {
    uint64_t left = (deadline - now) / 1000000u;
    int n = epoll_wait(ep, evs, 512, left > 50 ? 50 : (int)left + 1);
    now = now_ns();
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (c->st != C_FREE) conn_io(c, evs[i].events);
    }
    for (int i = 0; i < ndeferred; i++) {
      conn *c = deferred[i];
      c->deferred = 0;
      if (c->st != C_FREE && flush(c) < 0) conn_fail(c, "write failed");
    }
    ndeferred = 0;
  }
}

/* ------------------------------------------------------------ JSON line */

static void print_head(void) {
  printf("{\"workload\":\"%s\",\"url\":\"%s\"", opt.mode_name, opt.url_text);
  if (opt.labels) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", opt.labels);
    for (char *kv = strtok(buf, ","); kv; kv = strtok(NULL, ",")) {
      char *eq = strchr(kv, '=');
      if (eq) *eq = 0, printf(",\"%s\":\"%s\"", kv, eq + 1);
    }
  }
}

static void print_tail(int ok) {
  printf(",\"ok\":%s", ok && !failure[0] ? "true" : "false");
  if (failure[0]) printf(",\"error\":\"%s\"", failure);
  printf("}\n");
  fflush(stdout);
}

/* ------------------------------------------------------------ echo */

static int measuring, stopping;
static uint64_t got, all_got, inflight, slice_got[SLICES];
static uint64_t quota;       /* echo -n: messages the current phase may still send */

/* May one more message be sent?  Unbounded unless the run counts (-n). */
static int take_quota(void) {
  if (!opt.count) return 1;
  if (!quota) return 0;
  quota--;
  return 1;
}
static uint64_t t_measure, t_end;

static void on_open(conn *c) {
  if (opt.mode == M_ECHO) {
    for (int i = 0; i < opt.depth && take_quota(); i++) queue_message(c), inflight++;
  } else if (opt.mode == M_HANDSHAKE || opt.mode == M_WAIT) {
    /* Upgrade done: close at once (tcp: one byte each way, then close). */
    if (url.scheme == S_TCP) {
      send_once(c, payload, 1);
    } else {
      send_once(c, close_frame, sizeof close_frame);
      c->st = C_CLOSING;
    }
  }
}

static void on_message(conn *c) {
  if (opt.mode == M_HANDSHAKE || opt.mode == M_WAIT) { /* tcp: the byte came back */
    on_end(c, 1);
    return;
  }
  if (opt.mode != M_ECHO || !c->ring_n) {
    fail("unexpected message from the server");
    return;
  }
  uint64_t sent = c->ring[c->ring_head];
  c->ring_head = (c->ring_head + 1) % (unsigned)opt.depth;
  c->ring_n--;
  inflight--;
  all_got++;
  if (measuring) {
    hist_add(now - sent);
    got++;
    uint64_t slice = (now - t_measure) * SLICES / (t_end - t_measure);
    if (slice < SLICES) slice_got[slice]++;
  }
  if (!stopping && take_quota()) queue_message(c), inflight++;
}

static long completed;
static int active;

static void on_end(conn *c, int clean) {
  if (opt.mode == M_ECHO || opt.mode == M_IDLE) {
    if (clean >= 0 && opt.mode == M_ECHO && stopping && !inflight) return;
    fail(clean < 0 ? "connection failed" : "server closed the connection");
    if (c->st != C_FREE) conn_free(c);
    return;
  }
  /* handshake, wait: a clean end is a close frame or EOF after ours */
  if (clean > 0 || (clean == 0 && c->st == C_CLOSING)) {
    if (measuring) hist_add(now - c->t0);
    if (measuring || opt.mode == M_WAIT) completed++;
  } else {
    errors++;
  }
  conn_free(c);
  active--;
}

static int echo_drained(void) { return failure[0] || !inflight; }
static int has_failed(void) { return failure[0] != 0; }
static int all_open(void) {
  if (failure[0]) return 1;
  for (int i = 0; i < nconns; i++)
    if (conns[i].st != C_OPEN) return 0;
  return 1;
}

/* Run a shell command at an edge of the counted window (-x, -X), with its
 * output sent to stderr so that stdout stays one JSON line. */
static void run_hook(const char *cmd, const char *edge) {
  if (!cmd || failure[0]) return;
  char *sh = malloc(strlen(cmd) + 16);
  if (!sh) return fail("out of memory");
  sprintf(sh, "(%s) >&2", cmd);
  fflush(stdout);
  int st = system(sh);
  free(sh);
  if (st != 0) fail("the %s command failed (status %d)", edge, st);
}

/* echo -n: one phase of exactly n messages.  Every connection starts with
 * a full window, each echo lets one more message go while the quota lasts,
 * and the phase ends when the last echo is back: the server is then idle. */
static void count_phase(uint64_t n) {
  quota = n;
  now = now_ns();
  for (int i = 0; i < nconns; i++)
    for (int k = 0; k < opt.depth && take_quota(); k++) queue_message(&conns[i]), inflight++;
  for (int i = 0; i < nconns; i++) flush(&conns[i]);
  drive(now_ns() + sec_ns(opt.timeout), echo_drained);
  if (!failure[0] && inflight)
    fail("%llu echoes not back after %gs", (unsigned long long)inflight, opt.timeout);
}

static int run_echo(void) {
  uint64_t t_start = now_ns();
  now = t_start;
  for (int i = 0; i < nconns && !failure[0]; i++) conn_start(&conns[i]);
  drive(t_start + sec_ns(opt.timeout), all_open);
  if (!failure[0] && !all_open()) fail("connections not open after %gs", opt.timeout);
  print_head();
  printf(",\"conns\":%d,\"depth\":%d,\"size\":%zu,\"binary\":%s", nconns, opt.depth, opt.size,
         opt.binary ? "true" : "false");
  if (failure[0]) return print_tail(0), 1;

  if (opt.count) {
    count_phase(opt.warm_count);
    run_hook(opt.hook_open, "window-opening (-x)");
  } else {
    /* Everyone starts with a full window, flushed at once. */
    for (int i = 0; i < nconns; i++) flush(&conns[i]);
    drive(now_ns() + sec_ns(opt.warm), has_failed);
  }
  mc_file *mc = calloc(2, sizeof *mc);
  if (!mc) return fprintf(stderr, "loadgen: out of memory\n"), 1;
  mc_snapshot(&mc[0]);
  long long ticks0 = server_ticks();
  double cpu0 = self_cpu_s();
  t_measure = now_ns();
  t_end = t_measure + sec_ns(opt.count ? opt.timeout : opt.secs);
  measuring = 1;
  if (opt.count) count_phase(opt.count);
  else drive(t_end, has_failed);
  measuring = 0;
  uint64_t t1 = now;
  long long ticks1 = server_ticks();
  double cpu1 = self_cpu_s();
  mc_snapshot(&mc[1]);
  if (opt.count) run_hook(opt.hook_close, "window-closing (-X)");
  stopping = 1;
  drive(now_ns() + sec_ns(opt.timeout < 5 ? opt.timeout : 5), echo_drained);
  if (!failure[0] && inflight) fail("%llu echoes never came back", (unsigned long long)inflight);

  double secs = (double)(t1 - t_measure) / 1e9;
  double rate = secs > 0 ? (double)got / secs : 0;
  double slices[SLICES];
  for (int i = 0; i < SLICES; i++) /* -n: no fixed window to slice */
    slices[i] = opt.count ? rate : (double)slice_got[i] * SLICES / opt.secs;
  for (int i = 1; i < SLICES; i++) /* insertion sort, 5 values */
    for (int j = i; j > 0 && slices[j] < slices[j - 1]; j--) {
      double t = slices[j];
      slices[j] = slices[j - 1], slices[j - 1] = t;
    }
  long tck = sysconf(_SC_CLK_TCK);
  printf(",\"all_msgs\":%llu", (unsigned long long)all_got);
  printf(",\"secs\":%.3f,\"msgs\":%llu,\"msgs_per_s\":%.0f,\"median_msgs_per_s\":%.0f,"
         "\"mb_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"client_cpu_ns_per_msg\":%.0f",
         secs, (unsigned long long)got, rate, slices[SLICES / 2],
         rate * (double)opt.size / 1e6, hist_pct_us(0.50), hist_pct_us(0.99),
         got ? (cpu1 - cpu0) * 1e9 / (double)got : 0);
  if (opt.npids && ticks0 >= 0 && ticks1 >= 0 && got)
    printf(",\"server_cpu_ns_per_msg\":%.0f,\"server_cpu_pct\":%.1f",
           (double)(ticks1 - ticks0) * 1e9 / (double)tck / (double)got,
           (double)(ticks1 - ticks0) * 100.0 / (double)tck / secs);
  mc_print(&mc[0], &mc[1], got);
  free(mc);
  print_tail(got > 0);
  return failure[0] || !got;
}

/* ------------------------------------------------------------ handshakes */

static int hs_limit;   /* start no more than this many (0: unbounded) */
static long started;

static void hs_fill(int conc) {
  for (int i = 0; i < nconns && active < conc; i++) {
    if (conns[i].st != C_FREE) continue;
    if (stopping || (hs_limit && started >= hs_limit)) return;
    started++;
    active++;
    if (conn_start(&conns[i]) < 0 && conns[i].st != C_FREE) {
      conn_free(&conns[i]);
      active--;
      errors++;
    }
  }
}

static int hs_conc;
static int hs_refill(void) {
  if (!stopping) hs_fill(hs_conc);
  if (errors > 1000 && !completed) fail("every handshake fails");
  return failure[0] || (stopping && !active) || (hs_limit && started >= hs_limit && !active);
}

static int run_handshakes(void) {
  hs_conc = nconns;
  now = now_ns();
  hs_fill(hs_conc);
  drive(now + sec_ns(opt.warm), hs_refill);
  long long ticks0 = server_ticks();
  long err0 = errors;
  t_measure = now_ns();
  measuring = 1;
  drive(t_measure + sec_ns(opt.secs), hs_refill);
  measuring = 0;
  uint64_t t1 = now;
  long long ticks1 = server_ticks();
  stopping = 1;
  drive(now_ns() + sec_ns(5), hs_refill);
  double secs = (double)(t1 - t_measure) / 1e9;
  long tck = sysconf(_SC_CLK_TCK);
  print_head();
  printf(",\"concurrency\":%d,\"secs\":%.3f,\"handshakes\":%ld,\"per_s\":%.0f,\"errors\":%ld,"
         "\"p50_us\":%.1f,\"p99_us\":%.1f", nconns, secs, completed,
         secs > 0 ? (double)completed / secs : 0, errors - err0,
         hist_pct_us(0.50), hist_pct_us(0.99));
  if (opt.npids && ticks0 >= 0 && ticks1 >= 0 && completed)
    printf(",\"server_cpu_us_per_handshake\":%.1f",
           (double)(ticks1 - ticks0) * 1e6 / (double)tck / (double)completed);
  int ok = completed > 0 && errors == err0;
  if (!ok && !failure[0] && errors > err0) fail("%ld handshakes failed", errors - err0);
  print_tail(ok);
  return !ok;
}

static int run_wait(void) {
  uint64_t deadline = now_ns() + sec_ns(opt.timeout);
  nconns = 1;
  while (now_ns() < deadline) {
    completed = 0, errors = 0, started = 0, active = 0, failure[0] = 0;
    hs_limit = 1, hs_conc = 1;
    now = now_ns();
    hs_fill(1);
    drive(now + sec_ns(1), hs_refill);
    if (completed) return 0;
    if (conns[0].st != C_FREE) conn_free(&conns[0]), active = 0;
    usleep(50000);
  }
  fprintf(stderr, "loadgen: %s not answering after %gs\n", opt.url_text, opt.timeout);
  return 1;
}

/* ------------------------------------------------------------ idle */

static int idle_open, idle_target;
static int idle_ready(void) {
  if (failure[0]) return 1;
  int open = 0, pending = 0;
  for (int i = 0; i < nconns; i++) {
    if (conns[i].st == C_OPEN) open++;
    else if (conns[i].st != C_FREE) pending++;
  }
  idle_open = open;
  /* keep at most 200 upgrades in progress */
  for (int i = 0; i < nconns && pending < 200 && started < idle_target; i++)
    if (conns[i].st == C_FREE) {
      started++;
      if (conn_start(&conns[i]) == 0) pending++;
    }
  return open == idle_target;
}

static int run_idle(void) {
  if (!opt.npids) fail("idle needs -p PID");
  long long base = -1, rss = -1;
  double setup = 0;
  if (!failure[0]) {
    /* Warm the server up (lazy module loads, first-use allocations) with a
     * few full handshakes before the baseline. */
    int keep = nconns;
    opt.mode = M_HANDSHAKE;
    hs_limit = 50, hs_conc = 10, nconns = 10 < keep ? 10 : keep;
    now = now_ns();
    hs_fill(hs_conc);
    drive(now + sec_ns(10), hs_refill);
    opt.mode = M_IDLE;
    nconns = keep;
    if (errors) fail("warm-up handshakes failed");
  }
  if (!failure[0]) {
    usleep(300000);
    base = server_rss_kib();
    run_hook(opt.hook_open, "before-opening (-x)");
    idle_target = nconns, started = 0;
    uint64_t t0 = now_ns();
    drive(t0 + sec_ns(opt.timeout), idle_ready);
    setup = (double)(now_ns() - t0) / 1e9;
    if (!failure[0] && idle_open < nconns)
      fail("only %d of %d connections open after %gs", idle_open, nconns, opt.timeout);
    /* Let the server settle; any byte or EOF from a held connection now is
     * a failure (on_end). */
    if (!failure[0]) drive(now_ns() + sec_ns(opt.secs), has_failed);
    run_hook(opt.hook_close, "settled (-X)");
    rss = server_rss_kib();
  }
  print_head();
  printf(",\"conns\":%d,\"open\":%d,\"setup_s\":%.2f,\"rss_base_kib\":%lld,\"rss_kib\":%lld",
         nconns, idle_open, setup, base, rss);
  int ok = !failure[0] && base > 0 && rss > 0;
  if (ok) printf(",\"kib_per_conn\":%.2f", (double)(rss - base) / nconns);
  print_tail(ok);
  return !ok;
}

/* ------------------------------------------------------------ port */

/* A port of 127.0.0.1 free now, picked at random below the ephemeral range
 * (so no client socket of this run can be holding it). */
static int free_port(void) {
  uint16_t r[64];
  if (RAND_bytes((unsigned char *)r, sizeof r) != 1) return 1;
  for (int i = 0; i < 64; i++) {
    int port = 20000 + r[i] % 12000, one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    if (ok) return printf("%d\n", port), 0;
  }
  fprintf(stderr, "loadgen: no free port found\n");
  return 1;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv) {
  int c;
  if (argc == 2 && !strcmp(argv[1], "port")) return free_port();
  while ((c = getopt(argc, argv, "c:d:s:bt:w:T:p:L:m:n:W:x:X:")) != -1) {
    switch (c) {
    case 'c': opt.conns = atoi(optarg); break;
    case 'd': opt.depth = atoi(optarg); break;
    case 's': opt.size = strtoull(optarg, NULL, 10); break;
    case 'b': opt.binary = 1; break;
    case 't': opt.secs = atof(optarg); break;
    case 'w': opt.warm = atof(optarg); break;
    case 'T': opt.timeout = atof(optarg); break;
    case 'L': opt.labels = optarg; break;
    case 'm': opt.mc_path = optarg; break;
    case 'n': opt.count = strtoull(optarg, NULL, 10); break;
    case 'W': opt.warm_count = strtoull(optarg, NULL, 10); break;
    case 'x': opt.hook_open = optarg; break;
    case 'X': opt.hook_close = optarg; break;
    case 'p':
      for (char *s = strtok(optarg, ","); s && opt.npids < MAX_PIDS; s = strtok(NULL, ","))
        opt.pids[opt.npids++] = (pid_t)atoi(s);
      break;
    default: usage();
    }
  }
  if (argc - optind != 2 || opt.conns < 1 || opt.depth < 1 || opt.secs <= 0 || opt.warm < 0 ||
      opt.size > ((size_t)1 << 30) || (!opt.count && opt.warm_count))
    usage();
  opt.mode_name = argv[optind];
  opt.url_text = argv[optind + 1];
  if ((opt.hook_open || opt.hook_close) && !opt.count && strcmp(opt.mode_name, "idle"))
    usage();
  if (!strcmp(opt.mode_name, "echo")) opt.mode = M_ECHO;
  else if (!strcmp(opt.mode_name, "idle")) opt.mode = M_IDLE;
  else if (!strcmp(opt.mode_name, "handshake")) opt.mode = M_HANDSHAKE;
  else if (!strcmp(opt.mode_name, "wait")) opt.mode = M_WAIT;
  else usage();
  if (opt.mode == M_ECHO && url.scheme != S_TCP && opt.size == 0) usage();
  parse_url(opt.url_text);
  if (opt.mode != M_ECHO) opt.size = 1, opt.depth = 1; /* tcp handshakes echo one byte */
  signal(SIGPIPE, SIG_IGN);

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (url.scheme == S_WSS) {
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (!tls_ctx) return fprintf(stderr, "loadgen: SSL_CTX_new failed\n"), 1;
    /* Benchmark handshakes: every one is full (no resumption); the
     * certificate is a throwaway one, not checked. */
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  }
  make_wire_data();
  nconns = opt.conns;
  conns = calloc((size_t)nconns, sizeof *conns);
  rbuf = malloc(RBUF_SIZE);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (!conns || !rbuf || ep < 0) return fprintf(stderr, "loadgen: out of memory\n"), 1;
  for (int i = 0; i < nconns; i++) {
    conns[i].fd = -1;
    if (opt.mode == M_ECHO && !(conns[i].ring = calloc((size_t)opt.depth, sizeof(uint64_t))))
      return fprintf(stderr, "loadgen: out of memory\n"), 1;
  }
  switch (opt.mode) {
  case M_ECHO: return run_echo();
  case M_IDLE: return run_idle();
  case M_HANDSHAKE: return run_handshakes();
  case M_WAIT: return run_wait();
  }
  return 2;
}

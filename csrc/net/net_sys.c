/*
 * net_sys.c -- see net_sys.h.  Each function has one body per target; the
 * Linux one is what moonws always did, the others replace one Linux-only
 * call each (accept4, pipe2, eventfd, SOCK_NONBLOCK, MSG_NOSIGNAL).
 */
#include "net_sys.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef NET_SYS_WINDOWS
#include <process.h>
#else
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#endif
#ifdef NET_SYS_LINUX
#include <sys/eventfd.h>
#endif

const char *net_sys_strerror(int e, char *buf, size_t size) {
#if defined(NET_SYS_WINDOWS)
  return strerror_s(buf, size, e) == 0 ? buf : "unknown error";
#elif defined(__GLIBC__) && defined(_GNU_SOURCE)
  /* GNU strerror_r may return a static string instead of filling buf. */
  const char *s = strerror_r(e, buf, size);
  return s ? s : "unknown error";
#else
  return strerror_r(e, buf, size) == 0 ? buf : "unknown error";
#endif
}

/* ---------------------------------------------------------------- POSIX */
#ifndef NET_SYS_WINDOWS

int net_sys_error(void) { return errno; }
int net_sys_errno(int code) { return code; }
void net_sys_close(int fd) { close(fd); }

int net_sys_init(void) { return 0; }

#ifdef NET_SIGPIPE_GUARD
void net_sigpipe_block(net_sigpipe *g) {
  sigset_t pipe_set, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &g->old);
}

void net_sigpipe_restore(net_sigpipe *g, int err) {
  int saved = errno;
  if (err == EPIPE && !g->was_pending) {
    /* The SIGPIPE this thread's send raised is pending: take it. */
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &g->old, NULL);
  errno = saved;
}
#endif

#ifdef NET_SYS_POSIX
static int set_flags(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return errno;
  int fdfl = fcntl(fd, F_GETFD);
  if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
    return errno;
  return 0;
}
#endif

int net_sys_prepare(int fd) {
#ifdef NET_SYS_LINUX
  (void)fd; /* accept4 and socket() set both flags already */
  return 0;
#else
  int e = set_flags(fd);
#ifdef SO_NOSIGPIPE
  int one = 1;
  if (!e && setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one) < 0)
    e = errno;
#endif
  return e;
#endif
}

int net_sys_socket(int family, int *err) {
  net_sys_init();
#ifdef NET_SYS_LINUX
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    *err = errno;
  return fd;
#else
  int fd = socket(family, SOCK_STREAM, 0);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  int e = net_sys_prepare(fd);
  if (e) {
    close(fd);
    *err = e;
    return -1;
  }
  return fd;
#endif
}

int net_sys_pipe_open(int *rfd, int *wfd) {
  int fds[2];
#ifdef NET_SYS_LINUX
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
    return errno;
#else
  if (pipe(fds) != 0)
    return errno;
  int e = set_flags(fds[0]);
  if (!e)
    e = set_flags(fds[1]);
  if (e) {
    close(fds[0]);
    close(fds[1]);
    return e;
  }
#endif
  *rfd = fds[0];
  *wfd = fds[1];
  return 0;
}

int net_sys_wake_open(int *rfd, int *wfd) {
#ifdef NET_SYS_LINUX
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0)
    return errno;
  *rfd = *wfd = fd;
  return 0;
#else
  return net_sys_pipe_open(rfd, wfd);
#endif
}

void net_sys_wake_post(int wfd) {
#ifdef NET_SYS_LINUX
  uint64_t one = 1;
  (void)!write(wfd, &one, sizeof one);
#else
  net_sys_wake_post_byte(wfd, 1);
#endif
}

void net_sys_wake_drain(int rfd) {
#ifdef NET_SYS_LINUX
  uint64_t v;
  (void)!read(rfd, &v, sizeof v);
#else
  unsigned char buf[64];
  while (read(rfd, buf, sizeof buf) == (ssize_t)sizeof buf) {
  }
#endif
}

bool net_sys_wake_read_byte(int rfd, unsigned char *byte) {
  return read(rfd, byte, 1) == 1;
}

void net_sys_wake_post_byte(int wfd, unsigned char byte) {
  (void)!write(wfd, &byte, 1); /* full: dropped, the reader is behind */
}

void net_sys_wake_close(int rfd, int wfd) {
  if (rfd >= 0)
    close(rfd);
  if (wfd >= 0 && wfd != rfd)
    close(wfd);
}

int net_mutex_init(net_mutex *m) { return pthread_mutex_init(m, NULL); }
void net_mutex_destroy(net_mutex *m) { pthread_mutex_destroy(m); }
void net_mutex_lock(net_mutex *m) { pthread_mutex_lock(m); }
void net_mutex_unlock(net_mutex *m) { pthread_mutex_unlock(m); }
int net_cond_init(net_cond *c) { return pthread_cond_init(c, NULL); }
void net_cond_destroy(net_cond *c) { pthread_cond_destroy(c); }
void net_cond_wait(net_cond *c, net_mutex *m) { pthread_cond_wait(c, m); }
void net_cond_signal(net_cond *c) { pthread_cond_signal(c); }
void net_cond_broadcast(net_cond *c) { pthread_cond_broadcast(c); }
void net_run_once(net_once *once, void (*fn)(void)) { pthread_once(once, fn); }

int net_thread_start_detached(void *(*fn)(void *), void *arg) {
  pthread_attr_t attr;
  pthread_t t;
  sigset_t all, old;
  int rc = pthread_attr_init(&attr);
  if (rc != 0)
    return rc;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&t, &attr, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return rc;
}

double net_sys_monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* -------------------------------------------------------------- Windows */
#else

static INIT_ONCE wsa_once = INIT_ONCE_STATIC_INIT;
static int wsa_error;

static BOOL CALLBACK wsa_start(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  WSADATA data;
  (void)once, (void)param, (void)ctx;
  int rc = WSAStartup(MAKEWORD(2, 2), &data);
  wsa_error = rc ? net_sys_errno(rc) : 0;
  return TRUE;
}

int net_sys_init(void) {
  InitOnceExecuteOnce(&wsa_once, wsa_start, NULL, NULL);
  return wsa_error;
}

int net_sys_errno(int code) {
  switch (code) {
  case 0: return 0;
  case WSAEWOULDBLOCK: return EAGAIN;
  case WSAEINPROGRESS: return EINPROGRESS;
  case WSAEALREADY: return EALREADY;
  case WSAEINTR: return EINTR;
  case WSAECONNREFUSED: return ECONNREFUSED;
  case WSAETIMEDOUT: return ETIMEDOUT;
  case WSAECONNRESET: return ECONNRESET;
  case WSAECONNABORTED: return ECONNABORTED;
  case WSAENOTCONN: return ENOTCONN;
  case WSAEISCONN: return EISCONN;
  case WSAESHUTDOWN: return EPIPE;
  case WSAEHOSTUNREACH: return EHOSTUNREACH;
  case WSAEHOSTDOWN: return EHOSTUNREACH;
  case WSAENETUNREACH: return ENETUNREACH;
  case WSAENETDOWN: return ENETDOWN;
  case WSAENETRESET: return ENETRESET;
  case WSAENOBUFS: return ENOBUFS;
  case WSAEMFILE: return EMFILE;
  case WSAEADDRINUSE: return EADDRINUSE;
  case WSAEADDRNOTAVAIL: return EADDRNOTAVAIL;
  case WSAEAFNOSUPPORT: return EAFNOSUPPORT;
  case WSAEPROTONOSUPPORT: return EPROTONOSUPPORT;
  case WSAENOPROTOOPT: return ENOPROTOOPT;
  case WSAEACCES: return EACCES;
  case WSAEINVAL: return EINVAL;
  case WSAEFAULT: return EFAULT;
  case WSAENOTSOCK: return EBADF;
  case WSAEBADF: return EBADF;
  case WSANOTINITIALISED: return EINVAL;
  case WSA_NOT_ENOUGH_MEMORY: return ENOMEM;
  default: return EIO;
  }
}

int net_sys_error(void) { return net_sys_errno(WSAGetLastError()); }

void net_sys_close(int fd) { closesocket((SOCKET)(uintptr_t)fd); }

int net_sys_prepare(int fd) {
  u_long one = 1;
  SOCKET s = (SOCKET)(uintptr_t)fd;
  if (ioctlsocket(s, FIONBIO, &one) != 0)
    return net_sys_error();
  /* Best effort: a child process inheriting the socket is harmless here. */
  (void)SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
  return 0;
}

int net_sys_socket(int family, int *err) {
  int e = net_sys_init();
  if (e) {
    *err = e;
    return -1;
  }
  SOCKET s = WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                        WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  if (s == INVALID_SOCKET) {
    *err = net_sys_error();
    return -1;
  }
  if (s > (SOCKET)INT32_MAX) { /* never seen: handles are small numbers */
    closesocket(s);
    *err = EMFILE;
    return -1;
  }
  int fd = (int)s;
  if ((e = net_sys_prepare(fd)) != 0) {
    closesocket(s);
    *err = e;
    return -1;
  }
  return fd;
}

/* A connected pair over 127.0.0.1: Winsock has no pipe that WSAPoll can
 * watch.  The listener lives only while the pair is made; the accepted
 * side is checked to be our own connection (same local/peer ports). */
int net_sys_pipe_open(int *rfd, int *wfd) {
  int e = 0, lfd = -1, a = -1, b = -1;
  struct sockaddr_in addr, got;
  int len = sizeof addr;
  if ((lfd = net_sys_socket(AF_INET, &e)) < 0)
    return e;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  SOCKET ls = (SOCKET)(uintptr_t)lfd;
  if (bind(ls, (struct sockaddr *)&addr, sizeof addr) != 0 ||
      getsockname(ls, (struct sockaddr *)&addr, &len) != 0 ||
      listen(ls, 1) != 0)
    goto fail;
  if ((b = net_sys_socket(AF_INET, &e)) < 0)
    goto done;
  if (connect((SOCKET)(uintptr_t)b, (struct sockaddr *)&addr, sizeof addr) !=
          0 &&
      WSAGetLastError() != WSAEWOULDBLOCK)
    goto fail;
  /* The connection completes in the kernel; wait for it briefly. */
  WSAPOLLFD p = {ls, POLLRDNORM, 0};
  if (WSAPoll(&p, 1, 5000) != 1) {
    e = ETIMEDOUT;
    goto done;
  }
  len = sizeof got;
  SOCKET as = accept(ls, (struct sockaddr *)&got, &len);
  if (as == INVALID_SOCKET)
    goto fail;
  a = (int)as;
  struct sockaddr_in mine;
  len = sizeof mine;
  if (getsockname((SOCKET)(uintptr_t)b, (struct sockaddr *)&mine, &len) != 0)
    goto fail;
  if (got.sin_port != mine.sin_port) { /* someone else's connection */
    e = EACCES;
    goto done;
  }
  if ((e = net_sys_prepare(a)) != 0)
    goto done;
  int one = 1;
  (void)setsockopt((SOCKET)(uintptr_t)b, IPPROTO_TCP, TCP_NODELAY,
                   (const char *)&one, sizeof one);
  net_sys_close(lfd);
  *rfd = a;
  *wfd = b;
  return 0;
fail:
  e = net_sys_error();
done:
  if (a >= 0)
    net_sys_close(a);
  if (b >= 0)
    net_sys_close(b);
  net_sys_close(lfd);
  return e ? e : EIO;
}

int net_sys_wake_open(int *rfd, int *wfd) { return net_sys_pipe_open(rfd, wfd); }

void net_sys_wake_post(int wfd) { net_sys_wake_post_byte(wfd, 1); }

void net_sys_wake_post_byte(int wfd, unsigned char byte) {
  (void)send((SOCKET)(uintptr_t)wfd, (const char *)&byte, 1, 0);
}

void net_sys_wake_drain(int rfd) {
  char buf[64];
  while (recv((SOCKET)(uintptr_t)rfd, buf, sizeof buf, 0) == (int)sizeof buf) {
  }
}

bool net_sys_wake_read_byte(int rfd, unsigned char *byte) {
  return recv((SOCKET)(uintptr_t)rfd, (char *)byte, 1, 0) == 1;
}

void net_sys_wake_close(int rfd, int wfd) {
  if (rfd >= 0)
    net_sys_close(rfd);
  if (wfd >= 0 && wfd != rfd)
    net_sys_close(wfd);
}

int net_mutex_init(net_mutex *m) {
  InitializeSRWLock(m);
  return 0;
}
void net_mutex_destroy(net_mutex *m) { (void)m; }
void net_mutex_lock(net_mutex *m) { AcquireSRWLockExclusive(m); }
void net_mutex_unlock(net_mutex *m) { ReleaseSRWLockExclusive(m); }
int net_cond_init(net_cond *c) {
  InitializeConditionVariable(c);
  return 0;
}
void net_cond_destroy(net_cond *c) { (void)c; }
void net_cond_wait(net_cond *c, net_mutex *m) {
  SleepConditionVariableSRW(c, m, INFINITE, 0);
}
void net_cond_signal(net_cond *c) { WakeConditionVariable(c); }
void net_cond_broadcast(net_cond *c) { WakeAllConditionVariable(c); }

static BOOL CALLBACK once_trampoline(PINIT_ONCE once, PVOID fn, PVOID *ctx) {
  (void)once, (void)ctx;
  void (*f)(void);
  memcpy(&f, &fn, sizeof f); /* a function pointer passed as data */
  f();
  return TRUE;
}

void net_run_once(net_once *once, void (*fn)(void)) {
  void *p;
  memcpy(&p, &fn, sizeof p);
  InitOnceExecuteOnce(once, once_trampoline, p, NULL);
}

typedef struct thread_start {
  void *(*fn)(void *);
  void *arg;
} thread_start;

static unsigned __stdcall thread_main(void *p) {
  thread_start s = *(thread_start *)p;
  free(p);
  s.fn(s.arg);
  return 0;
}

int net_thread_start_detached(void *(*fn)(void *), void *arg) {
  thread_start *s = malloc(sizeof *s);
  if (!s)
    return ENOMEM;
  s->fn = fn;
  s->arg = arg;
  uintptr_t h = _beginthreadex(NULL, 0, thread_main, s, 0, NULL);
  if (h == 0) {
    free(s);
    return EAGAIN;
  }
  CloseHandle((HANDLE)h);
  return 0;
}

double net_sys_monotonic(void) {
  static LARGE_INTEGER freq; /* constant for the system's lifetime */
  LARGE_INTEGER now;
  if (freq.QuadPart == 0)
    QueryPerformanceFrequency(&freq);
  QueryPerformanceCounter(&now);
  return (double)(now.QuadPart / freq.QuadPart) +
         (double)(now.QuadPart % freq.QuadPart) / (double)freq.QuadPart;
}

#endif

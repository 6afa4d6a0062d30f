/*
 * net_sys.h -- the one place the net layer meets the operating system.
 *
 * Three targets, chosen here once (docs/PLATFORMS.md):
 *   NET_SYS_LINUX     Linux (the default there): epoll, accept4, pipe2,
 *                     eventfd, SOCK_NONBLOCK|SOCK_CLOEXEC, MSG_NOSIGNAL.
 *   NET_SYS_POSIX     any other POSIX system (macOS, the BSDs), or Linux
 *                     built with -DMOONWS_PORTABLE: poll(), accept and pipe
 *                     followed by fcntl, a self-pipe for wake-ups, and
 *                     SO_NOSIGPIPE on every socket where the system has it
 *                     (macOS, the BSDs), else SIGPIPE blocked in the
 *                     sending thread around each send and a SIGPIPE that
 *                     send raised taken back (net_sigpipe_*).
 *   NET_SYS_WINDOWS   Winsock 2: WSAPoll, a loopback socket pair for
 *                     wake-ups, Win32 threads, QueryPerformanceCounter.
 *
 * A descriptor is an int everywhere.  A Winsock SOCKET is a handle value;
 * the net layer and the binding keep it in an int (as OpenSSL's SSL_set_fd
 * does), which holds every handle a process can have open.  Errors are
 * errno values everywhere: net_sys_error() maps Winsock's WSAE* codes to
 * the errno names the rest of the code tests (EAGAIN, ECONNREFUSED, ...).
 */
#ifndef MOONWS_NET_SYS_H
#define MOONWS_NET_SYS_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#if defined(_WIN32)
#define NET_SYS_WINDOWS 1
#elif defined(__linux__) && !defined(MOONWS_PORTABLE)
#define NET_SYS_LINUX 1
#else
#define NET_SYS_POSIX 1
#endif

#ifdef NET_SYS_WINDOWS
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0600 /* Vista: WSAPoll, inet_pton, condition variables */
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#ifdef _MSC_VER
#include <basetsd.h>
typedef SSIZE_T ssize_t;
#else
#include <sys/types.h>
#endif
typedef ADDRESS_FAMILY net_sa_family;
#define SHUT_WR SD_SEND
#else
#include <sys/socket.h>
#include <sys/types.h>
typedef sa_family_t net_sa_family;
#endif

#include <limits.h>
#include <stdint.h>
#ifndef SSIZE_MAX
#define SSIZE_MAX ((ssize_t)(SIZE_MAX / 2))
#endif

/* Flags for every send(): MSG_NOSIGNAL on Linux, else 0 (see SIGPIPE above). */
#if defined(NET_SYS_LINUX)
#define NET_SEND_FLAGS MSG_NOSIGNAL
#else
#define NET_SEND_FLAGS 0
#endif

/* Once per process before the first socket: WSAStartup on Windows, nothing
 * elsewhere.  0 or an errno. */
int net_sys_init(void);

/* Around every send() where neither MSG_NOSIGNAL nor SO_NOSIGPIPE is used:
 * block SIGPIPE in this thread, send, then (err: the send's errno, 0 if it
 * succeeded) take back the SIGPIPE an EPIPE raised, unless one was already
 * pending, and restore the mask.  No global state and no change to the
 * process's SIGPIPE action, so a host's own handler and child processes
 * are left alone.  Elsewhere both are empty. */
#if defined(NET_SYS_POSIX) && !defined(SO_NOSIGPIPE)
#define NET_SIGPIPE_GUARD 1
#include <signal.h>
typedef struct net_sigpipe {
  sigset_t old;
  bool was_pending;
} net_sigpipe;
void net_sigpipe_block(net_sigpipe *g);
void net_sigpipe_restore(net_sigpipe *g, int err);
#else
typedef struct net_sigpipe {
  char unused;
} net_sigpipe;
#define net_sigpipe_block(g) ((void)(g))
#define net_sigpipe_restore(g, err) ((void)(g), (void)(err))
#endif

/* The errno of the last failed socket call of this thread. */
int net_sys_error(void);

/* Map a Winsock error code (WSAE*, as SO_ERROR also gives) to an errno;
 * the identity on POSIX. */
int net_sys_errno(int code);

/* A new stream socket, nonblocking, not inherited by child processes, and
 * (where it exists) with SO_NOSIGPIPE.  -1 with *err. */
int net_sys_socket(int family, int *err);

/* Make an accepted or foreign descriptor nonblocking and close-on-exec
 * (plus SO_NOSIGPIPE where it exists).  0 or an errno. */
int net_sys_prepare(int fd);

/* The text of an errno into buf (thread-safe); returns buf or a static
 * string. */
const char *net_sys_strerror(int e, char *buf, size_t size);

/* close() a socket (closesocket on Windows). */
void net_sys_close(int fd);

/* ---- wake-ups: one side makes another's poll() return ---- */

/* A pair: *rfd turns readable after net_sys_wake_post(wfd) until
 * net_sys_wake_drain(rfd).  Linux: one eventfd (*rfd == *wfd); portable
 * POSIX: a nonblocking pipe; Windows: a connected loopback TCP pair.
 * post is safe from any thread and from a signal or console handler.
 * 0 or an errno. */
int net_sys_wake_open(int *rfd, int *wfd);
/* A nonblocking byte pipe (the self-pipe of signals): pipe2 on Linux, pipe
 * and fcntl on portable POSIX, the loopback pair on Windows.  Use
 * net_sys_wake_post_byte / _read_byte / _close on it.  0 or an errno. */
int net_sys_pipe_open(int *rfd, int *wfd);
void net_sys_wake_post(int wfd);
void net_sys_wake_drain(int rfd);
/* Read one posted byte (the self-pipe's payload); false when none waits. */
bool net_sys_wake_read_byte(int rfd, unsigned char *byte);
/* Post one byte (signals, console events); dropped when the pipe is full. */
void net_sys_wake_post_byte(int wfd, unsigned char byte);
void net_sys_wake_close(int rfd, int wfd);

/* ---- threads (the resolver's workers) ---- */

#ifdef NET_SYS_WINDOWS
typedef SRWLOCK net_mutex;
typedef CONDITION_VARIABLE net_cond;
typedef INIT_ONCE net_once;
#define NET_ONCE_INIT INIT_ONCE_STATIC_INIT
#else
#include <pthread.h>
typedef pthread_mutex_t net_mutex;
typedef pthread_cond_t net_cond;
typedef pthread_once_t net_once;
#define NET_ONCE_INIT PTHREAD_ONCE_INIT
#endif

/* 0 or an errno. */
int net_mutex_init(net_mutex *m);
void net_mutex_destroy(net_mutex *m);
void net_mutex_lock(net_mutex *m);
void net_mutex_unlock(net_mutex *m);
int net_cond_init(net_cond *c);
void net_cond_destroy(net_cond *c);
void net_cond_wait(net_cond *c, net_mutex *m);
void net_cond_signal(net_cond *c);
void net_cond_broadcast(net_cond *c);
/* Run fn once per process (every caller returns after it ran). */
void net_run_once(net_once *once, void (*fn)(void));
/* Start a detached thread running fn(arg), with every POSIX signal
 * blocked in it (signals go to the threads that expect them).  0 or an
 * errno. */
int net_thread_start_detached(void *(*fn)(void *), void *arg);

/* Seconds on a monotonic clock (CLOCK_MONOTONIC, QueryPerformanceCounter). */
double net_sys_monotonic(void);

#endif

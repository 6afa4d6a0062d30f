/*
 * net_tcp.h -- nonblocking TCP sockets, IPv4 and IPv6.
 *
 * Every socket is created nonblocking and close-on-exec; a peer that
 * resets never raises SIGPIPE (MSG_NOSIGNAL, SO_NOSIGPIPE or SIGPIPE
 * ignored: see net_sys.h).  Functions return a file descriptor or 0 on
 * success, and -1 with *err set to the errno on failure (never touching
 * the global errno contract of callers).  On Windows the descriptor is a
 * Winsock SOCKET held in an int and errors are mapped to errno values.
 */
#ifndef MOONWS_NET_TCP_H
#define MOONWS_NET_TCP_H

#include <stddef.h>

#include "net_sys.h"
#include "net_transport.h"

/* Start connecting to addr.  Returns the fd (connection in progress or
 * done: wait for writable, then net_tcp_connect_result) or -1. */
int net_tcp_connect(const struct sockaddr *addr, socklen_t addrlen, int *err);

/* After the fd turns writable: 0 connected, else the errno of the failure
 * (ECONNREFUSED, ETIMEDOUT, ...). TCP_NODELAY is set on success. */
int net_tcp_connect_result(int fd);

/* Listen on a numeric host ("127.0.0.1", "::1", "0.0.0.0", "::"; NULL or
 * "*" = every address, dual-stack) and port (0 = any free port) with
 * SO_REUSEADDR.  Returns the fd or -1. */
int net_tcp_listen(const char *host, int port, int backlog, int *err);

/* Flags for net_tcp_listen_flags. */
enum {
  /* SO_REUSEPORT: several sockets, in one process or several, listen on
   * the same address and port, and the kernel spreads new connections
   * among them.  Every socket of the group must set it. */
  NET_TCP_REUSEPORT = 1
};

/* net_tcp_listen with flags (NET_TCP_REUSEPORT); EINVAL for unknown flags,
 * ENOPROTOOPT where the kernel has no SO_REUSEPORT (and on Windows, whose
 * SO_REUSEADDR lets another socket steal the port instead). */
int net_tcp_listen_flags(const char *host, int port, int backlog, int flags,
                         int *err);

/* Accept one pending connection as a nonblocking, close-on-exec socket with
 * TCP_NODELAY.  Returns the fd, or -1 with *err (EAGAIN when none is
 * pending).  addr/addrlen may be NULL. */
int net_tcp_accept(int listen_fd, struct sockaddr_storage *addr,
                   socklen_t *addrlen, int *err);

/* Close a socket descriptor (closesocket on Windows). */
void net_tcp_close(int fd);

/* The local port of a bound socket, or -1. */
int net_tcp_local_port(int fd);

/* "127.0.0.1:8080" / "[::1]:8080" for an address; returns out. */
char *net_addr_format(const struct sockaddr *addr, char *out, size_t size);

/* The text of a 4-byte IPv4 or 16-byte IPv6 address (inet_ntop's
 * canonical form), in out; NULL when len or size does not fit. */
const char *net_ip_format(const uint8_t *addr, size_t len, char *out, size_t size);

/* The peer address of a connected socket, formatted; "?" when unknown. */
char *net_peer_format(int fd, char *out, size_t size);

/* A short lower-case text for the errnos sockets and configuration files
 * meet ("connection reset by peer", "no such file"); static, thread-safe. */
const char *net_errno_text(int e);

/* Take the fd back from a plain-TCP transport and free the transport
 * without closing the fd (TLS then wraps the same socket).  Returns the fd,
 * or -1 (nothing done) when t is NULL or not a plain-TCP transport. */
int net_tcp_transport_release(net_transport *t);

/* Copy up to n received bytes without taking them (MSG_PEEK), as the
 * transport's read returns (NET_FAIL, nothing done, when t is not plain
 * TCP).  For what must not read past its own bytes: a PROXY protocol
 * header followed at once by a TLS hello. */
ssize_t net_tcp_peek(net_transport *t, void *buf, size_t n);

#endif

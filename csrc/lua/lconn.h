/*
 * lconn.h -- creating conn objects from other binding files.
 */
#ifndef MOONWS_LCONN_H
#define MOONWS_LCONN_H

#include "lua_compat.h"
#include "net_transport.h"
#include "ws_buf.h"
#include "ws_conn.h"

typedef struct lconn lconn;

/* Push a new conn for role that owns fd (-1: no transport; use feed and
 * take_output).  Returns 1, or 3 (nil, message, name) on failure, having
 * closed fd. */
int lconn_new(lua_State *L, ws_role role, int fd);

/* For binding files that extend a conn (TLS, proxies): the conn at idx,
 * raising on another type or a released conn. */
lconn *lconn_check(lua_State *L, int idx);

/* The conn's transport, or NULL.  Replacing it does not destroy the old
 * one: the caller has taken it over (e.g. TLS wrapping the same fd). */
net_transport *lconn_transport(lconn *c);
void lconn_set_transport(lconn *c, net_transport *t);

/* Bytes queued to send (flush() writes them), and bytes received but not
 * parsed yet while the handshake runs (read() fills it before then). */
ws_buf *lconn_output(lconn *c);
ws_buf *lconn_input(lconn *c);

#endif

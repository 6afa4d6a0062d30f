/*
 * lconn.h -- creating conn objects from other binding files.
 */
#ifndef MOONWS_LCONN_H
#define MOONWS_LCONN_H

#include "lua_compat.h"
#include "ws_conn.h"

/* Push a new conn for role that owns fd (-1: no transport; use feed and
 * take_output).  Returns 1, or 3 (nil, message, name) on failure, having
 * closed fd. */
int lconn_new(lua_State *L, ws_role role, int fd);

#endif

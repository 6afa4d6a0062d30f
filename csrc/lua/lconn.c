/*
 * lconn.c -- moonws.core conn: one WebSocket connection as a Lua object --
 * its type, its life, and the pieces that make it (see lconn_priv.h).
 *
 * A conn joins the sans-I/O protocol core (ws_conn, the handshake parsers
 * and builders) to a transport.  Lua drives it: read() pulls bytes from the
 * transport, next_event() turns them into events, send()/close() queue
 * frames, flush() pushes them out.  Nothing here waits: every call reports
 * "would block" and the Lua loop decides what to wait for.
 *
 * Receive memory: after the handshake, reads land in one scratch buffer
 * shared by every conn of the Lua state and are parsed in place from there;
 * only bytes left unparsed when another conn reads next are copied into the
 * owner's own buffer.  An idle connection holds no input buffer at all.
 *
 * feed() and take_output() replace the transport for fronts that own the
 * socket themselves (OpenResty cosockets, tests).
 *
 * permessage-deflate: set_compression() before the handshake makes the
 * conn negotiate it itself -- the client's request() carries the offer and
 * parse_response() judges the answer; the server keeps the request's
 * Sec-WebSocket-Extensions from parse_request() and respond_upgrade()
 * answers from it.  The conn owns the agreed ws_deflate (the core only
 * borrows it) and frees it, with its zlib streams, once the connection can
 * no longer use it: a close or error event, release(), or collection.
 */
#include <stdlib.h>
#include <string.h>

#include "lconn_priv.h"
#include "net_tcp.h"

#define LCONN_SHARED_TYPE "moonws.conn_shared"

static const char shared_key = 'k';

/* ---- lifecycle ---- */

/* The registry holds the shared state for the Lua state's whole life
 * (opening the module again keeps it), so a conn needs no reference of its
 * own to it: at lua_close its memory outlives every finalizer. */
lconn_shared *lconn_get_shared(lua_State *L) {
  compat_registry_get(L, &shared_key);
  lconn_shared *sh = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return sh;
}

static void release(lconn *c) {
  if (c->released)
    return;
  c->released = true;
  if (c->sh && c->sh->owner == c)
    c->sh->owner = NULL;
  if (c->sh && c->sh->senders[c->sender_slot].conn == c)
    c->sh->senders[c->sender_slot] = (struct lconn_sender){NULL, NULL};
  if (c->t) {
    c->t->ops->destroy(c->t);
    c->t = NULL;
  }
  ws_conn_free(&c->ws);
  ws_deflate_free(c->deflate);
  c->deflate = NULL;
  ws_buf_free(&c->in);
  lconn_opening_free(c);
}

/* The core borrows c->deflate: detach it before freeing. */
void lconn_drop_deflate(lconn *c) {
  ws_conn_set_deflate(&c->ws, NULL);
  ws_deflate_free(c->deflate);
  c->deflate = NULL;
}

int lconn_new(lua_State *L, ws_role role, int fd) {
  lconn *c = compat_newuserdata(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  c->magic = LCONN_MAGIC;
  c->released = true; /* closed until every resource is acquired */
  c->gate = LCONN_GATE_EACH;
  luaL_setmetatable(L, LCONN_TYPE);
  c->sh = lconn_get_shared(L);
  if (fd >= 0) {
    c->t = net_tcp_transport_new(fd);
    if (!c->t) {
      net_tcp_close(fd);
      lua_pop(L, 1);
      return lmoonws_fail(L, WS_E_NOMEM, "out of memory creating a socket");
    }
  }
  /* The Lua layer lets a receiver answer the messages before a failure
   * before its close frame goes (conn:fail_close). */
  ws_conn_config cfg = {.defer_fail_close = true};
  ws_conn_init(&c->ws, role, &cfg);
  c->handshaking = true;
  c->released = false;
  return 1;
}

lconn *lconn_test(lua_State *L, int idx) {
  /* The size is checked first, so reading the magic stays inside the
   * userdata whatever it is (a light userdata has no size: 0); only a
   * conn has both. */
  lconn *c = lua_touserdata(L, idx);
  if (c && compat_rawlen(L, idx) == sizeof *c && c->magic == LCONN_MAGIC)
    return c;
  return NULL;
}

lconn *lconn_check(lua_State *L, int idx) {
  lconn *c = lconn_test(L, idx);
  if (!c)
    c = luaL_checkudata(L, idx, LCONN_TYPE);
  if (c->released)
    luaL_error(L, "attempt to use a closed websocket connection");
  return c;
}

net_transport *lconn_transport(lconn *c) { return c->t; }
void lconn_set_transport(lconn *c, net_transport *t) { c->t = t; }
ws_buf *lconn_output(lconn *c) { return &c->ws.out; }
ws_buf *lconn_input(lconn *c) { return &c->in; }

static int conn_new(lua_State *L) {
  static const char *const roles[] = {"client", "server", NULL};
  int role = luaL_checkoption(L, 1, NULL, roles);
  return lconn_new(L, role == 0 ? WS_ROLE_CLIENT : WS_ROLE_SERVER, -1);
}

static int conn_release(lua_State *L) {
  lconn *c = luaL_checkudata(L, 1, LCONN_TYPE);
  release(c);
  return 0;
}

/* Collected while open (nobody references the socket): start a close the
 * way the browser does, with a close frame without a status code, give it
 * one nonblocking write, and free everything. */
static int conn_gc(lua_State *L) {
  lconn *c = luaL_checkudata(L, 1, LCONN_TYPE);
  if (!c->released && c->t && !c->handshaking && !c->ws.close_sent &&
      (c->ws.failed ? ws_conn_fail_close(&c->ws)
                    : ws_conn_close(&c->ws, 0, "", 0)) == WS_E_NONE) {
    ws_buf *out = &c->ws.out;
    ssize_t w = c->t->ops->write(c->t, ws_buf_data(out), ws_buf_len(out));
    if (w > 0 && (size_t)w == ws_buf_len(out))
      c->t->ops->shutdown(c->t);
  }
  release(c);
  return 0;
}

static int conn_tostring(lua_State *L) {
  lconn *c = luaL_checkudata(L, 1, LCONN_TYPE);
  const char *state = c->released          ? "closed"
                      : c->handshaking     ? "handshaking"
                      : c->ws.close_sent   ? "closing"
                                           : "open";
  lua_pushfstring(L, "moonws.conn (%s, %s, %p)",
                  c->ws.role == WS_ROLE_CLIENT ? "client" : "server", state,
                  (void *)c);
  return 1;
}

static int shared_gc(lua_State *L) {
  lconn_shared *sh = lua_touserdata(L, 1);
  free(sh->scratch);
  sh->scratch = NULL;
  return 0;
}

void lmoonws_open_conn(lua_State *L) {
  static const luaL_Reg own[] = {{"release", conn_release}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", conn_gc},
                                  {"__close", conn_release},
                                  {"__tostring", conn_tostring},
                                  {NULL, NULL}};

  if (!lconn_get_shared(L)) { /* once per Lua state: conns point into it */
    lconn_shared *sh = compat_newuserdata(L, sizeof *sh, 0);
    memset(sh, 0, sizeof *sh);
    lua_newtable(L);
    lua_pushcfunction(L, shared_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    sh->scratch = malloc(SCRATCH_SIZE);
    if (!sh->scratch)
      luaL_error(L, "out of memory");
    compat_registry_set(L, &shared_key);
    /* send's kinds, compared by address: the registry holds the strings,
     * so the addresses stay theirs */
    lua_pushliteral(L, "text");
    sh->kind_text = lua_topointer(L, -1);
    luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushliteral(L, "binary");
    sh->kind_binary = lua_topointer(L, -1);
    luaL_ref(L, LUA_REGISTRYINDEX);
  }

  luaL_newmetatable(L, LCONN_TYPE);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, own, 0);
  luaL_setfuncs(L, lconn_io_methods, 0);
  luaL_setfuncs(L, lconn_handshake_methods, 0);
  luaL_setfuncs(L, lconn_frames_methods, 0);
  luaL_setfuncs(L, lconn_fanout_methods, 0);
  lconn_fast_register(L);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  lua_pushcfunction(L, conn_new);
  lua_setfield(L, -2, "conn");
  luaL_setfuncs(L, lconn_handshake_functions, 0);
  luaL_setfuncs(L, lconn_frames_functions, 0);
  lconn_open_fanout(L);
  luaL_setfuncs(L, lconn_fast_functions, 0);
}

/*
 * lconn.c -- moonws.core conn: one WebSocket connection as a Lua object.
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
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmoonws.h"
#include "lconn.h"
#include "net_tcp.h"
#include "net_tls.h"
#include "net_transport.h"
#include "ws_deflate.h"
#include "ws_handshake.h"
#include "ws_http.h"

#define LCONN_TYPE "moonws.conn"
#define LCONN_SHARED_TYPE "moonws.conn_shared"
#define SCRATCH_SIZE (256 * 1024)
#define HANDSHAKE_READ 4096
#define MAX_EXTRA_FIELDS 64
/* An output buffer larger than this is released once drained, so one big
 * message does not pin its memory for the connection's life (the core does
 * the same for the message buffer). */
#define KEEP_BUFFER 65536
/* Frames with this much payload still to come are read straight into the
 * message, and messages this big are written from the Lua string: below
 * it, batching many small messages through one buffer costs less. */
#define DIRECT_MIN 65536

typedef struct lconn_shared {
  uint8_t *scratch;
  struct lconn *owner; /* whose bytes are in scratch[pos, len) */
  size_t pos, len;
} lconn_shared;

struct lconn {
  ws_conn ws;
  net_transport *t;
  lconn_shared *sh;
  ws_buf in; /* handshake bytes, and unparsed bytes spilled from scratch */
  bool released;
  bool handshaking;
  char key[WS_KEY_LEN + 1]; /* client: the Sec-WebSocket-Key sent */
  ws_deflate_options pmd;   /* set_compression(); enabled false = off */
  ws_deflate *deflate;      /* agreed permessage-deflate, or NULL */
  ws_buf ext; /* handshake only -- client: the offer sent; server: the
                 request's Sec-WebSocket-Extensions, fields joined */
  ws_event direct_ev; /* an event a direct read completed, for next_event */
};

static const char shared_key = 'k';

/* ---- lifecycle ---- */

static lconn_shared *get_shared(lua_State *L) {
  compat_registry_get(L, &shared_key);
  lconn_shared *sh = lua_touserdata(L, -1);
  return sh; /* left on the stack for the caller to anchor */
}

static void release(lconn *c) {
  if (c->released)
    return;
  c->released = true;
  if (c->sh && c->sh->owner == c)
    c->sh->owner = NULL;
  if (c->t) {
    c->t->ops->destroy(c->t);
    c->t = NULL;
  }
  ws_conn_free(&c->ws);
  ws_deflate_free(c->deflate);
  c->deflate = NULL;
  ws_buf_free(&c->in);
  ws_buf_free(&c->ext);
}

/* The core borrows c->deflate: detach it before freeing. */
static void drop_deflate(lconn *c) {
  ws_conn_set_deflate(&c->ws, NULL);
  ws_deflate_free(c->deflate);
  c->deflate = NULL;
}

int lconn_new(lua_State *L, ws_role role, int fd) {
  lconn *c = compat_newuserdata(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  c->released = true; /* closed until every resource is acquired */
  luaL_setmetatable(L, LCONN_TYPE);
  c->sh = get_shared(L);
  compat_setuservalue(L, -2, 1); /* the conn keeps the scratch alive */
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

lconn *lconn_check(lua_State *L, int idx) {
  lconn *c = luaL_checkudata(L, idx, LCONN_TYPE);
  if (c->released)
    luaL_error(L, "attempt to use a closed websocket connection");
  return c;
}

static lconn *check_conn(lua_State *L) { return lconn_check(L, 1); }

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

/* ---- transport ---- */

static int conn_fd(lua_State *L) {
  lconn *c = check_conn(L);
  if (!c->t)
    return 0;
  lua_pushinteger(L, c->t->fd);
  return 1;
}

static int conn_peer(lua_State *L) {
  lconn *c = check_conn(L);
  char buf[80];
  if (!c->t)
    return 0;
  lua_pushstring(L, net_peer_format(c->t->fd, buf, sizeof buf));
  return 1;
}

/* After the fd turned writable: true, or nil, message, name. */
static int conn_connect_result(lua_State *L) {
  lconn *c = check_conn(L);
  if (!c->t)
    return lmoonws_fail(L, WS_E_CLOSED, "not connected");
  int err = net_tcp_connect_result(c->t->fd);
  if (err == EINPROGRESS || err == EALREADY)
    return 0; /* spurious wake-up: keep waiting */
  if (err)
    return lmoonws_fail_errno(L, "connect", err);
  lua_pushboolean(L, 1);
  return 1;
}

/* Shut down the sending side (after our close frame went out). */
static int conn_shutdown(lua_State *L) {
  lconn *c = check_conn(L);
  if (c->t)
    c->t->ops->shutdown(c->t);
  return 0;
}

/* Close the socket now; the conn keeps its protocol state for inspection. */
static int conn_close_fd(lua_State *L) {
  lconn *c = check_conn(L);
  if (c->sh->owner == c)
    c->sh->owner = NULL;
  if (c->t) {
    c->t->ops->destroy(c->t);
    c->t = NULL;
  }
  return 0;
}

static int push_transport_failure(lua_State *L, net_transport *t,
                                  const char *what) {
  if (t->err)
    return lmoonws_fail_errno(L, what, t->err);
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", what, t->message ? t->message : "failed");
  /* Without an errno the TLS layer itself failed (a bad record, an alert). */
  lua_pushstring(L, ws_error_name(net_tls_is_tls(t) ? WS_E_TLS : WS_E_IO));
  return 3;
}

/* Move bytes another conn left unparsed in the scratch into its own
 * buffer, so the scratch can take new bytes. */
static int spill_scratch(lconn_shared *sh) {
  lconn *owner = sh->owner;
  if (owner && sh->pos < sh->len) {
    if (ws_buf_append(&owner->in, sh->scratch + sh->pos, sh->len - sh->pos))
      return -1;
  }
  sh->owner = NULL;
  sh->pos = sh->len = 0;
  return 0;
}

static size_t unparsed(const lconn *c) {
  size_t n = ws_buf_len(&c->in);
  if (c->sh->owner == c)
    n += c->sh->len - c->sh->pos;
  return n;
}

static int push_read_status(lua_State *L, lconn *c, ssize_t r);

/* A big frame's payload, read into the message itself (no scratch, no
 * second copy).  A message it completes waits in direct_ev. */
static int read_direct(lua_State *L, lconn *c, uint8_t *dst, size_t room) {
  ssize_t r = c->t->ops->read(c->t, dst, room);
  if (r <= 0)
    return push_read_status(L, c, r);
  ws_conn_payload_commit(&c->ws, (size_t)r, &c->direct_ev);
  lua_pushinteger(L, (lua_Integer)r);
  return 1;
}

/* read([max]) -> n bytes now waiting to be parsed (> 0); 0, "read"|"write"
 * when the transport would block; false at end of stream; nil, message,
 * name.  max bounds the bytes taken from the transport in this call. */
static int conn_read(lua_State *L) {
  lconn *c = check_conn(L);
  lua_Integer max = luaL_optinteger(L, 2, SCRATCH_SIZE);
  luaL_argcheck(L, max > 0, 2, "max must be positive");
  if (!c->t)
    return lmoonws_fail(L, WS_E_CLOSED, "socket closed");
  size_t waiting = unparsed(c) + (c->direct_ev.type != WS_EV_NONE) +
                   c->ws.paused;
  if (waiting && !c->handshaking) {
    lua_pushinteger(L, (lua_Integer)waiting);
    return 1;
  }
  uint8_t *dst;
  size_t room;
  if (!c->handshaking &&
      (dst = ws_conn_payload_room(&c->ws, (size_t)max, &room)) != NULL &&
      room >= DIRECT_MIN)
    return read_direct(L, c, dst, room);
  if (c->handshaking) {
    if (ws_buf_reserve(&c->in, HANDSHAKE_READ))
      return lmoonws_fail(L, WS_E_NOMEM, NULL);
    dst = ws_buf_tail(&c->in);
    room = ws_buf_room(&c->in);
  } else {
    if (spill_scratch(c->sh))
      return lmoonws_fail(L, WS_E_NOMEM, NULL);
    dst = c->sh->scratch;
    room = SCRATCH_SIZE;
  }
  if ((size_t)max < room)
    room = (size_t)max;
  ssize_t r = c->t->ops->read(c->t, dst, room);
  if (r > 0) {
    if (c->handshaking) {
      ws_buf_commit(&c->in, (size_t)r);
    } else {
      c->sh->owner = c;
      c->sh->pos = 0;
      c->sh->len = (size_t)r;
    }
    lua_pushinteger(L, (lua_Integer)unparsed(c));
    return 1;
  }
  return push_read_status(L, c, r);
}

/* What read returns for a transport result r <= 0. */
static int push_read_status(lua_State *L, lconn *c, ssize_t r) {
  switch (r) {
  case NET_EOF:
    lua_pushboolean(L, 0);
    return 1;
  case NET_WANT_READ:
    lua_pushinteger(L, 0);
    lua_pushliteral(L, "read");
    return 2;
  case NET_WANT_WRITE:
    lua_pushinteger(L, 0);
    lua_pushliteral(L, "write");
    return 2;
  default:
    return push_transport_failure(L, c->t, "read");
  }
}

/* flush() -> bytes still queued (0 when all went out) and, when not 0,
 * "write"|"read" (what to wait for); or nil, message, name. */
static int conn_flush(lua_State *L) {
  lconn *c = check_conn(L);
  ws_buf *out = &c->ws.out;
  if (!c->t)
    return lmoonws_fail(L, WS_E_CLOSED, "socket closed");
  while (ws_buf_len(out)) {
    ssize_t w = c->t->ops->write(c->t, ws_buf_data(out), ws_buf_len(out));
    if (w > 0) {
      ws_conn_out_consume(&c->ws, (size_t)w);
      continue;
    }
    if (w == NET_WANT_WRITE || w == NET_WANT_READ) {
      lua_pushinteger(L, (lua_Integer)ws_buf_len(out));
      lua_pushstring(L, w == NET_WANT_WRITE ? "write" : "read");
      return 2;
    }
    return push_transport_failure(L, c->t, "write");
  }
  ws_buf_trim(out, KEEP_BUFFER);
  lua_pushinteger(L, 0);
  return 1;
}

static int conn_buffered(lua_State *L) {
  lconn *c = check_conn(L);
  lua_pushinteger(L, (lua_Integer)ws_buf_len(&c->ws.out));
  return 1;
}

/* Bytes held inside the transport (TLS) that a read would return now. */
static int conn_pending(lua_State *L) {
  lconn *c = check_conn(L);
  lua_pushboolean(L, c->t && c->t->ops->pending && c->t->ops->pending(c->t));
  return 1;
}

/* Drop every received byte not parsed yet (a connection being closed). */
static int conn_discard(lua_State *L) {
  lconn *c = check_conn(L);
  if (c->sh->owner == c)
    c->sh->owner = NULL;
  ws_buf_free(&c->in);
  c->direct_ev.type = WS_EV_NONE;
  return 0;
}

/* ---- fronts without a transport ---- */

static int conn_feed(lua_State *L) {
  lconn *c = check_conn(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (c->sh->owner == c && spill_scratch(c->sh))
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  if (ws_buf_append(&c->in, s, n))
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* Everything queued, as one string: taking it may release a held pong,
 * which is taken too. */
static int conn_take_output(lua_State *L) {
  lconn *c = check_conn(L);
  ws_buf *out = &c->ws.out;
  int pieces = 0;
  do {
    lua_pushlstring(L, (const char *)ws_buf_data(out), ws_buf_len(out));
    ws_conn_out_consume(&c->ws, ws_buf_len(out));
    pieces++;
  } while (ws_buf_len(out));
  lua_concat(L, pieces);
  ws_buf_trim(out, KEEP_BUFFER);
  return 1;
}

/* ---- the opening handshake ---- */

/* limits(max_payload, max_frame): set before the handshake completes. */
static int conn_limits(lua_State *L) {
  lconn *c = check_conn(L);
  lua_Integer max_payload = luaL_checkinteger(L, 2);
  lua_Integer max_frame = luaL_checkinteger(L, 3);
  luaL_argcheck(L, max_payload > 0, 2, "max_payload must be positive");
  luaL_argcheck(L, max_frame > 0, 3, "max_frame must be positive");
  if (!c->handshaking)
    return luaL_error(L, "limits can only be set before the handshake ends");
  ws_conn_config cfg = {.max_payload = (uint64_t)max_payload,
                        .max_frame = (uint64_t)max_frame,
                        .defer_fail_close = true};
  ws_buf keep = c->ws.out; /* handshake bytes may already be queued */
  size_t budget = c->ws.budget;
  c->ws.out = (ws_buf)WS_BUF_INIT;
  ws_role role = c->ws.role;
  ws_conn_free(&c->ws);
  ws_conn_init(&c->ws, role, &cfg);
  ws_conn_set_deflate(&c->ws, c->deflate);
  ws_conn_set_budget(&c->ws, budget);
  c->ws.out = keep;
  return 0;
}

/* Window bits from field name of the table at idx: nil, false or true
 * (not asked, or for client_max_window_bits: offered without a value) or
 * an integer 8..15. */
static uint8_t opt_bits(lua_State *L, int idx, const char *name) {
  lua_Integer v = 0;
  lua_getfield(L, idx, name);
  if (compat_isinteger(L, -1)) {
    v = lua_tointeger(L, -1);
    if (v < 8 || v > 15)
      luaL_error(L, "compression.%s must be 8..15", name);
  } else if (!lua_isnil(L, -1) && !lua_isboolean(L, -1)) {
    luaL_error(L, "compression.%s must be an integer or a boolean", name);
  }
  lua_pop(L, 1);
  return (uint8_t)v;
}

static lua_Integer opt_int(lua_State *L, int idx, const char *name,
                           lua_Integer dflt, lua_Integer lo, lua_Integer hi) {
  lua_getfield(L, idx, name);
  lua_Integer v = dflt;
  if (!lua_isnil(L, -1)) {
    if (!compat_isinteger(L, -1))
      luaL_error(L, "compression.%s must be an integer", name);
    v = lua_tointeger(L, -1);
    if (v < lo || v > hi)
      luaL_error(L, "compression.%s out of range", name);
  }
  lua_pop(L, 1);
  return v;
}

static bool opt_bool(lua_State *L, int idx, const char *name) {
  lua_getfield(L, idx, name);
  bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* set_compression(t): before the handshake.  t nil or false: off; true:
 * the defaults; a table: threshold, level, mem_level,
 * server_no_context_takeover, client_no_context_takeover,
 * server_max_window_bits, client_max_window_bits. */
static int conn_set_compression(lua_State *L) {
  lconn *c = check_conn(L);
  ws_deflate_options o;
  if (!c->handshaking || c->deflate)
    return luaL_error(L, "compression can only be set before the handshake");
  ws_deflate_options_init(&o);
  if (lua_isnoneornil(L, 2) || (lua_isboolean(L, 2) && !lua_toboolean(L, 2))) {
    o.enabled = false;
  } else if (!lua_isboolean(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    o.server_no_context_takeover = opt_bool(L, 2, "server_no_context_takeover");
    o.client_no_context_takeover = opt_bool(L, 2, "client_no_context_takeover");
    o.server_max_window_bits = opt_bits(L, 2, "server_max_window_bits");
    o.client_max_window_bits = opt_bits(L, 2, "client_max_window_bits");
    o.threshold = (size_t)opt_int(L, 2, "threshold", WS_DEFLATE_DEFAULT_THRESHOLD,
                                  0, COMPAT_MAXINTEGER);
    o.level = (int)opt_int(L, 2, "level", o.level, -1, 9);
    o.mem_level = (int)opt_int(L, 2, "mem_level", o.mem_level, 1, 9);
  }
  c->pmd = o;
  return 0;
}

/* The handshake is over: frames follow.  Bytes already read after the
 * head stay in c->in and are parsed first. */
static int conn_handshake_done(lua_State *L) {
  lconn *c = check_conn(L);
  c->handshaking = false;
  if (ws_buf_len(&c->in) == 0)
    ws_buf_free(&c->in);
  return 0;
}

/* Collect extra header fields from the table at idx ({name = value}). */
static size_t check_fields(lua_State *L, int idx, ws_handshake_field *fields) {
  size_t n = 0;
  if (lua_isnoneornil(L, idx))
    return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "headers must map names to string values");
    if (n == MAX_EXTRA_FIELDS)
      luaL_error(L, "too many extra headers (at most %d)", MAX_EXTRA_FIELDS);
    size_t nl, vl;
    const char *name = lua_tolstring(L, -2, &nl);
    const char *value = lua_tolstring(L, -1, &vl);
    if (!ws_http_is_token(name, nl) || strlen(name) != nl)
      luaL_error(L, "invalid header name '%s'", name);
    if (!ws_http_is_field_value(value, vl) || strlen(value) != vl)
      luaL_error(L, "invalid value for header '%s' (control characters)",
                 name);
    /* The strings stay alive: the table holds them. */
    fields[n].name = name;
    fields[n].value = value;
    n++;
    lua_pop(L, 1);
  }
  return n;
}

/* core.check_headers(t): raise on a header that could not be sent. */
static int check_headers(lua_State *L) {
  ws_handshake_field fields[MAX_EXTRA_FIELDS];
  check_fields(L, 1, fields);
  return 0;
}

static const char *opt_field(lua_State *L, int t, const char *name) {
  lua_getfield(L, t, name);
  const char *s = lua_isnil(L, -1) ? NULL : lua_tostring(L, -1);
  lua_pop(L, 1); /* the table keeps the string alive */
  return s;
}

/* Client: queue the upgrade request.  spec = {host, target, protocols,
 * extensions, origin, headers}. */
static int conn_request(lua_State *L) {
  lconn *c = check_conn(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  ws_handshake_field fields[MAX_EXTRA_FIELDS];
  lua_getfield(L, 2, "headers");
  size_t nfields = check_fields(L, lua_gettop(L), fields);
  if (ws_handshake_make_key(c->key, NULL, NULL))
    return lmoonws_fail(L, WS_E_NOMEM, "no random bytes for the key");
  ws_handshake_request_spec spec = {
      .host = opt_field(L, 2, "host"),
      .target = opt_field(L, 2, "target"),
      .key = c->key,
      .protocols = opt_field(L, 2, "protocols"),
      .extensions = opt_field(L, 2, "extensions"),
      .origin = opt_field(L, 2, "origin"),
      .fields = fields,
      .num_fields = nfields,
  };
  if (!spec.host || !spec.target)
    return luaL_error(L, "request needs host and target");
  /* With compression set, the conn owns the extension offer: the answer
   * could not name another extension it would understand. */
  char offer[WS_DEFLATE_HEADER_MAX];
  ws_buf_free(&c->ext);
  if (c->pmd.enabled) {
    int n = ws_deflate_offer(&c->pmd, offer, sizeof offer);
    if (n < 0)
      return luaL_error(L, "invalid compression options");
    if (ws_buf_append(&c->ext, offer, (size_t)n))
      return lmoonws_fail(L, WS_E_NOMEM, NULL);
    spec.extensions = offer;
  }
  int rc = ws_handshake_build_request(&c->ws.out, &spec);
  if (rc == WS_ERROR)
    return luaL_error(L, "invalid handshake request field");
  if (rc != 0)
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static void push_headers(lua_State *L, const ws_http_header *h, size_t n) {
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t k = 0; k < h[i].name_len; k++) {
      char ch = h[i].name[k];
      luaL_addchar(&b, (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch);
    }
    luaL_pushresult(&b);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, h[i].value, h[i].value_len);
    } else { /* repeated field: a comma list, as RFC 7230 3.2.2 allows */
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, h[i].value, h[i].value_len);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
}

/* The offered subprotocols of every Sec-WebSocket-Protocol field, in order. */
static void push_protocols(lua_State *L, const ws_http_request *req) {
  lua_newtable(L);
  int n = 0;
  for (size_t i = 0; i < req->num_headers; i++) {
    const ws_http_header *h = &req->headers[i];
    size_t count;
    if (ws_http_header_find(h, 1, "sec-websocket-protocol", &count) == NULL)
      continue;
    size_t pos = 0, len;
    const char *item;
    while (ws_http_list_next(h->value, h->value_len, &pos, &item, &len)) {
      lua_pushlstring(L, item, len);
      lua_rawseti(L, -2, ++n);
    }
  }
}

static void push_request(lua_State *L, const ws_http_request *req) {
  lua_createtable(L, 0, 8);
  lua_pushlstring(L, req->method, req->method_len);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, req->target, req->target_len);
  lua_setfield(L, -2, "path");
  lua_pushfstring(L, "1.%d", req->version_minor);
  lua_setfield(L, -2, "version");
  push_headers(L, req->headers, req->num_headers);
  lua_getfield(L, -1, "origin");
  lua_setfield(L, -3, "origin");
  lua_getfield(L, -1, "sec-websocket-extensions");
  lua_setfield(L, -3, "extensions");
  lua_setfield(L, -2, "headers");
  push_protocols(L, req);
  lua_setfield(L, -2, "protocols");
}

/* Keep every Sec-WebSocket-Extensions field of req, joined with ", ",
 * for respond_upgrade to negotiate from.  0 or -1 (no memory). */
static int keep_extensions(lconn *c, const ws_http_request *req) {
  ws_buf_free(&c->ext);
  for (size_t i = 0; i < req->num_headers; i++) {
    const ws_http_header *h = &req->headers[i];
    if (!ws_http_header_find(h, 1, "sec-websocket-extensions", NULL))
      continue;
    if ((ws_buf_len(&c->ext) && ws_buf_append(&c->ext, ", ", 2)) ||
        ws_buf_append(&c->ext, h->value, h->value_len))
      return -1;
  }
  return 0;
}

/* Server: parse_request(max_handshake) ->
 *   nil                          the head is not complete yet
 *   request                      an acceptable upgrade (request.key set)
 *   false, status, message [, request [, name]]   refuse with status;
 *                                name "nomem" when it is our memory
 *                                that failed (status 503) */
static int conn_parse_request(lua_State *L) {
  lconn *c = check_conn(L);
  size_t max = (size_t)luaL_checkinteger(L, 2);
  size_t len = ws_buf_len(&c->in);
  ws_http_request req;
  int rc = ws_http_parse_request((const char *)ws_buf_data(&c->in),
                                 len < max ? len : max, &req);
  if (rc == WS_INCOMPLETE) {
    if (len < max)
      return 0;
    lua_pushboolean(L, 0);
    lua_pushinteger(L, 431);
    lua_pushliteral(L, "request header over max_handshake bytes");
    return 3;
  }
  if (rc == WS_ERROR) {
    lua_pushboolean(L, 0);
    lua_pushinteger(L, req.status ? req.status : 400);
    lua_pushstring(L, req.message ? req.message : "malformed request");
    return 3;
  }
  ws_handshake_verdict v;
  int status = ws_handshake_check_request(&req, &v);
  const char *message = v.message ? v.message : "bad request";
  bool nomem = status == 0 && keep_extensions(c, &req) != 0;
  if (nomem) {
    status = 503;
    message = "out of memory";
  }
  if (status != 0) {
    lua_pushboolean(L, 0);
    lua_pushinteger(L, status);
    lua_pushstring(L, message);
  }
  push_request(L, &req);
  if (status == 0) {
    lua_pushlstring(L, v.key, v.key_len);
    lua_setfield(L, -2, "key");
  }
  /* Everything pushed is copied: the head may go. */
  ws_buf_consume(&c->in, (size_t)rc);
  if (nomem) {
    lua_pushstring(L, ws_error_name(WS_E_NOMEM));
    return 5;
  }
  return status == 0 ? 1 : 4; /* request | false, status, message, request */
}

/* Server: respond_upgrade(key, protocol, extensions, headers) -> true,
 * extensions answered ("" for none).  With compression set, extensions is
 * ignored: the answer is negotiated from the request's offer (kept by
 * parse_request) and the agreed permessage-deflate takes effect. */
static int conn_respond_upgrade(lua_State *L) {
  lconn *c = check_conn(L);
  size_t key_len;
  const char *key = luaL_checklstring(L, 2, &key_len);
  const char *protocol = luaL_optstring(L, 3, NULL);
  const char *extensions = luaL_optstring(L, 4, NULL);
  ws_handshake_field fields[MAX_EXTRA_FIELDS];
  size_t nfields = check_fields(L, 5, fields);
  char answer[WS_DEFLATE_HEADER_MAX];
  ws_deflate_params p;
  int agreed = 0;
  if (c->pmd.enabled) {
    size_t n = ws_buf_len(&c->ext);
    agreed = ws_deflate_accept(n ? (const char *)ws_buf_data(&c->ext) : NULL,
                               n, &c->pmd, &p, answer, sizeof answer);
    extensions = agreed == 1 ? answer : NULL;
  }
  size_t before = ws_buf_len(&c->ws.out);
  int rc = ws_handshake_build_response(&c->ws.out, key, key_len, protocol,
                                       extensions, fields, nfields);
  if (rc == WS_ERROR)
    return luaL_error(L, "invalid protocol, extension or header value");
  if (rc != 0)
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  if (agreed == 1) {
    drop_deflate(c);
    c->deflate = ws_deflate_new(WS_ROLE_SERVER, &p, &c->pmd);
    if (!c->deflate) {
      c->ws.out.end = c->ws.out.start + before; /* take the 101 back */
      return lmoonws_fail(L, WS_E_NOMEM, NULL);
    }
    ws_conn_set_deflate(&c->ws, c->deflate);
  }
  ws_buf_free(&c->ext);
  lua_pushboolean(L, 1);
  lua_pushstring(L, extensions ? extensions : "");
  return 2;
}

/* Server: respond_refusal(status, reason, headers, body). */
static int conn_respond_refusal(lua_State *L) {
  lconn *c = check_conn(L);
  lua_Integer status = luaL_checkinteger(L, 2);
  luaL_argcheck(L, status >= 200 && status <= 599, 2,
                "status must be 200..599");
  const char *reason = luaL_optstring(L, 3, NULL);
  ws_handshake_field fields[MAX_EXTRA_FIELDS];
  size_t nfields = check_fields(L, 4, fields);
  size_t body_len = 0;
  const char *body = luaL_optlstring(L, 5, NULL, &body_len);
  int rc = ws_handshake_build_refusal(&c->ws.out, (int)status, reason, fields,
                                      nfields, body, body_len);
  if (rc == WS_ERROR)
    return luaL_error(L, "invalid reason or header value");
  if (rc != 0)
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* Client: parse_response(max_handshake, offered_protocols, offered_ext) ->
 *   nil                              not complete yet
 *   true, protocol, extensions       accepted ("" when none)
 *   false, message [, status, headers [, name]]   refused or invalid;
 *                                    name "nomem" when our memory failed */
static int conn_parse_response(lua_State *L) {
  lconn *c = check_conn(L);
  size_t max = (size_t)luaL_checkinteger(L, 2);
  const char *offered = luaL_optstring(L, 3, NULL);
  bool offered_ext = lua_toboolean(L, 4);
  size_t len = ws_buf_len(&c->in);
  ws_http_response res;
  int rc = ws_http_parse_response((const char *)ws_buf_data(&c->in),
                                  len < max ? len : max, &res);
  if (rc == WS_INCOMPLETE) {
    if (len < max)
      return 0;
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "response header over max_handshake bytes");
    return 2;
  }
  if (rc == WS_ERROR) {
    lua_pushboolean(L, 0);
    lua_pushfstring(L, "malformed response: %s",
                    res.message ? res.message : "bad syntax");
    return 2;
  }
  ws_handshake_answer a;
  bool pmd = c->pmd.enabled && ws_buf_len(&c->ext);
  const char *why = NULL;
  if (ws_handshake_check_response(&res, c->key, offered, offered_ext || pmd,
                                  &a))
    why = a.message ? a.message : "invalid handshake response";
  char agreed_ext[WS_DEFLATE_HEADER_MAX] = "";
  if (!why && pmd && a.extensions) {
    ws_deflate_params p;
    int r = ws_deflate_check_response(a.extensions, a.extensions_len,
                                      (const char *)ws_buf_data(&c->ext),
                                      ws_buf_len(&c->ext), &p, &why);
    if (r == 1) {
      drop_deflate(c);
      c->deflate = ws_deflate_new(WS_ROLE_CLIENT, &p, &c->pmd);
      if (!c->deflate) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "out of memory for permessage-deflate");
        lua_pushinteger(L, res.status);
        push_headers(L, res.headers, res.num_headers);
        lua_pushstring(L, ws_error_name(WS_E_NOMEM));
        ws_buf_consume(&c->in, (size_t)rc);
        return 5;
      }
      ws_conn_set_deflate(&c->ws, c->deflate);
      ws_deflate_format(&p, agreed_ext, sizeof agreed_ext);
    }
  }
  if (why) {
    lua_pushboolean(L, 0);
    if (a.message)
      lua_pushstring(L, why);
    else
      lua_pushfstring(L, "invalid permessage-deflate answer: %s", why);
    lua_pushinteger(L, res.status);
    push_headers(L, res.headers, res.num_headers);
    ws_buf_consume(&c->in, (size_t)rc);
    return 4;
  }
  lua_pushboolean(L, 1);
  lua_pushlstring(L, a.protocol ? a.protocol : "", a.protocol_len);
  if (pmd)
    lua_pushstring(L, agreed_ext);
  else
    lua_pushlstring(L, a.extensions ? a.extensions : "", a.extensions_len);
  ws_buf_free(&c->ext);
  ws_buf_consume(&c->in, (size_t)rc);
  return 3;
}

/* ---- frames ---- */

/* next_event() -> nil when more input is needed, false when the round's
 * budget (budget()) is spent and the rest waits for the next, else one of
 *   "text"|"binary"|"ping"|"pong", data
 *   "close", code, reason
 *   "error", message, name, code        (the connection has failed) */
static int push_event(lua_State *L, lconn *c, const ws_event *e);

static int conn_next_event(lua_State *L) {
  lconn *c = check_conn(L);
  uint8_t *data;
  size_t len;
  if (c->direct_ev.type != WS_EV_NONE) {
    ws_event ev = c->direct_ev;
    c->direct_ev.type = WS_EV_NONE;
    return push_event(L, c, &ev);
  }
  bool from_scratch = ws_buf_len(&c->in) == 0;
  if (!from_scratch) {
    data = ws_buf_data(&c->in);
    len = ws_buf_len(&c->in);
  } else if (c->sh->owner == c && c->sh->pos < c->sh->len) {
    data = c->sh->scratch + c->sh->pos;
    len = c->sh->len - c->sh->pos;
  } else if (c->ws.paused) { /* zlib still owes output: no input needed */
    data = c->sh->scratch;
    len = 0;
  } else {
    return 0;
  }
  ws_event ev;
  size_t used = ws_conn_recv(&c->ws, data, len, &ev);
  /* The event may point into data: push it before the bytes are released. */
  int nret = push_event(L, c, &ev);
  if (from_scratch) {
    c->sh->pos += used;
  } else {
    ws_buf_consume(&c->in, used);
    if (ws_buf_len(&c->in) == 0)
      ws_buf_free(&c->in);
  }
  return nret;
}

/* Push event e as next_event's results; returns their count. */
static int push_event(lua_State *L, lconn *c, const ws_event *e) {
  ws_event ev = *e;
  int nret;
  switch (ev.type) {
  case WS_EV_NONE:
    nret = 0;
    break;
  case WS_EV_BUDGET:
    lua_pushboolean(L, 0);
    nret = 1;
    break;
  case WS_EV_TEXT:
  case WS_EV_BINARY:
  case WS_EV_PING:
  case WS_EV_PONG: {
    static const char *const kinds[] = {NULL, "text", "binary", "ping", "pong"};
    lua_pushstring(L, kinds[ev.type]);
    lua_pushlstring(L, (const char *)ev.data, ev.len);
    nret = 2;
    break;
  }
  case WS_EV_CLOSE:
    lua_pushliteral(L, "close");
    lua_pushinteger(L, ev.code);
    lua_pushlstring(L, (const char *)ev.data, ev.len);
    nret = 3;
    break;
  case WS_EV_ERROR:
  default:
    lua_pushliteral(L, "error");
    lua_pushlstring(L, (const char *)ev.data, ev.len);
    lua_pushstring(L, ws_error_name(ev.error));
    lua_pushinteger(L, ev.code);
    nret = 4;
    break;
  }
  /* Nothing can be inflated or sent compressed after these. */
  if ((ev.type == WS_EV_CLOSE || ev.type == WS_EV_ERROR) && c->deflate)
    drop_deflate(c);
  return nret;
}

static int push_send_result(lua_State *L, enum ws_error e) {
  if (e == WS_E_NONE) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return lmoonws_fail(L, e, e == WS_E_CLOSED ? "closed" : NULL);
}

static const uint8_t *check_text(lua_State *L, int idx, size_t *len,
                                 bool binary) {
  const char *s = luaL_checklstring(L, idx, len);
  if (!binary && !ws_utf8_valid((const uint8_t *)s, *len))
    luaL_argerror(L, idx, "invalid UTF-8 in a text message (send it as binary)");
  return (const uint8_t *)s;
}

/* A big message with nothing queued before it: header and payload in one
 * gather write, the payload from the Lua string; what the transport does
 * not take now goes on out as usual (a failure shows at the next flush). */
static int send_direct(lua_State *L, lconn *c, uint8_t op,
                       const uint8_t *data, size_t len) {
  ws_buf *out = &c->ws.out;
  enum ws_error e = ws_conn_send_header(&c->ws, op, len);
  if (e != WS_E_NONE)
    return push_send_result(L, e);
  size_t hs = ws_buf_len(out);
  ssize_t w = c->t->ops->write2(c->t, ws_buf_data(out), hs, data, len);
  size_t sent = w > 0 ? (size_t)w : 0;
  if (sent < hs) {
    ws_conn_out_consume(&c->ws, sent);
    sent = 0;
  } else {
    ws_conn_out_consume(&c->ws, hs);
    sent -= hs;
  }
  if (sent < len && ws_buf_append(out, data + sent, len - sent) != 0) {
    /* The header is out and its payload cannot follow: the stream is
     * broken, so the transport goes (the next flush reports it). */
    c->t->ops->destroy(c->t);
    c->t = NULL;
    return push_send_result(L, WS_E_NOMEM);
  }
  return push_send_result(L, WS_E_NONE);
}

/* A message longer than size as frames of size bytes (the last shorter):
 * the text was validated whole, so the pieces may cut characters. */
static enum ws_error send_in_frames(lconn *c, uint8_t op, const uint8_t *data,
                                    size_t len, size_t size) {
  for (size_t pos = 0;; pos += size) {
    size_t n = len - pos < size ? len - pos : size;
    bool fin = n == len - pos;
    enum ws_error e = ws_conn_send_fragment(&c->ws, op, data + pos, n, fin);
    if (e != WS_E_NONE || fin)
      return e;
  }
}

/* send(data, binary [, limit [, fragment_size]]) -> true, bytes now queued
 * | nil, message, name.  With limit (send_limit), nothing is queued while
 * limit bytes or more already wait: a peer that stops reading cannot make
 * memory grow without end (checked here: the hot path makes one call per
 * message).  With fragment_size, a longer message goes as several frames;
 * every front (the loop's sockets, moonws.resty) sends through here. */
static int conn_send(lua_State *L) {
  lconn *c = check_conn(L);
  bool binary = lua_toboolean(L, 3);
  lua_Integer limit = luaL_optinteger(L, 4, 0);
  lua_Integer fragment_size = luaL_optinteger(L, 5, 0);
  size_t len;
  const uint8_t *data = check_text(L, 2, &len, binary);
  uint8_t op = binary ? WS_OP_BINARY : WS_OP_TEXT;
  size_t queued = ws_buf_len(&c->ws.out);
  if (limit > 0 && queued >= (size_t)limit) {
    char why[96];
    snprintf(why, sizeof why, "send queue full: %zu bytes wait for a peer "
                              "that is not reading (send_limit)", queued);
    lua_pushnil(L);
    lua_pushstring(L, why);
    lua_pushstring(L, ws_error_name(WS_E_TOO_BIG));
    return 3;
  }
  int n;
  if (fragment_size > 0 && len > (size_t)fragment_size)
    n = push_send_result(L, send_in_frames(c, op, data, len, (size_t)fragment_size));
  else if (len >= DIRECT_MIN && c->t && c->t->ops->write2 && queued == 0 &&
           ws_conn_plain_send(&c->ws, len))
    n = send_direct(L, c, op, data, len);
  else
    n = push_send_result(L, ws_conn_send(&c->ws, op, data, len));
  if (n == 1)
    lua_pushinteger(L, (lua_Integer)ws_buf_len(&c->ws.out));
  return n + (n == 1);
}

/* send_fragment(data, binary, fin [, checked]): one piece of a message
 * sent in parts.  Text pieces are checked one by one (each must end on a
 * character boundary) unless checked says the caller validated the whole
 * message already. */
static int conn_send_fragment(lua_State *L) {
  lconn *c = check_conn(L);
  bool binary = lua_toboolean(L, 3);
  bool fin = lua_toboolean(L, 4);
  bool checked = lua_toboolean(L, 5);
  size_t len;
  const uint8_t *data = check_text(L, 2, &len, binary || checked);
  return push_send_result(
      L, ws_conn_send_fragment(&c->ws, binary ? WS_OP_BINARY : WS_OP_TEXT,
                               data, len, fin));
}

static int send_control(lua_State *L, uint8_t opcode) {
  lconn *c = check_conn(L);
  size_t len;
  const char *data = luaL_optlstring(L, 2, "", &len);
  luaL_argcheck(L, len <= WS_CONTROL_MAX, 2,
                "control frame payload over 125 bytes");
  return push_send_result(L, ws_conn_send(&c->ws, opcode, data, len));
}

static int conn_ping(lua_State *L) { return send_control(L, WS_OP_PING); }
static int conn_pong(lua_State *L) { return send_control(L, WS_OP_PONG); }

/* close([code [, reason]]): code nil or 0 sends no status code.  Any code
 * valid on the wire is taken here; the public API applies the stricter
 * application rule. */
static int conn_close(lua_State *L) {
  lconn *c = check_conn(L);
  lua_Integer code = luaL_optinteger(L, 2, 0);
  size_t len;
  const char *reason = luaL_optlstring(L, 3, "", &len);
  luaL_argcheck(L, code == 0 || ws_close_code_valid_on_wire((unsigned)code), 2,
                "invalid close code");
  luaL_argcheck(L, len <= WS_CLOSE_REASON_MAX, 3,
                "close reason over 123 bytes");
  luaL_argcheck(L, code != 0 || len == 0, 3, "a close reason needs a code");
  luaL_argcheck(L, ws_utf8_valid((const uint8_t *)reason, len), 3,
                "close reason is not valid UTF-8");
  return push_send_result(
      L, ws_conn_close(&c->ws, (unsigned)code, reason, len));
}

/* deflates(n) -> whether a whole message of n bytes would go compressed
 * (the Lua layer deflates big ones a slice per round). */
static int conn_deflates(lua_State *L) {
  lconn *c = check_conn(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  lua_pushboolean(L, n >= 0 && ws_deflate_wants(c->deflate, (size_t)n));
  return 1;
}

/* budget(n): the bytes the next next_event() calls may inflate in all,
 * renewed once per round, so a deflate bomb costs one slice a round. */
static int conn_budget(lua_State *L) {
  lconn *c = check_conn(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n > 0, 2, "budget must be positive");
  ws_conn_set_budget(&c->ws, (size_t)n);
  return 0;
}

/* counters([t]) -> t: ws_conn_counters as integer fields (into t when
 * given, so a caller polling often allocates nothing). */
static int conn_counters(lua_State *L) {
  lconn *c = check_conn(L);
  const ws_conn_counters *k = &c->ws.counters;
  if (lua_istable(L, 2))
    lua_settop(L, 2);
  else
    lua_createtable(L, 0, 7);
#define COUNTER_FIELD(name)                                                    \
  lua_pushinteger(L, (lua_Integer)k->name);                                    \
  lua_setfield(L, -2, #name)
  COUNTER_FIELD(messages_in);
  COUNTER_FIELD(bytes_in);
  COUNTER_FIELD(wire_bytes_in);
  COUNTER_FIELD(inflated_in);
  COUNTER_FIELD(messages_out);
  COUNTER_FIELD(bytes_out);
  COUNTER_FIELD(wire_bytes_out);
#undef COUNTER_FIELD
  return 1;
}

/* fail_close(): after an "error" event, queue the failure's close frame
 * (the Lua layer first lets the receiver answer earlier messages). */
static int conn_fail_close(lua_State *L) {
  lconn *c = check_conn(L);
  return push_send_result(L, ws_conn_fail_close(&c->ws));
}

/* state() -> close_sent, close_received, failed */
static int conn_state(lua_State *L) {
  lconn *c = check_conn(L);
  lua_pushboolean(L, c->ws.close_sent);
  lua_pushboolean(L, c->ws.close_received);
  lua_pushboolean(L, c->ws.failed);
  return 3;
}

/* core.utf8_valid(s) */
static int utf8_valid(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushboolean(L, ws_utf8_valid((const uint8_t *)s, len));
  return 1;
}

static int shared_gc(lua_State *L) {
  lconn_shared *sh = lua_touserdata(L, 1);
  free(sh->scratch);
  sh->scratch = NULL;
  return 0;
}

void lmoonws_open_conn(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"fd", conn_fd},
      {"peer", conn_peer},
      {"connect_result", conn_connect_result},
      {"limits", conn_limits},
      {"set_compression", conn_set_compression},
      {"read", conn_read},
      {"flush", conn_flush},
      {"buffered", conn_buffered},
      {"pending", conn_pending},
      {"discard", conn_discard},
      {"feed", conn_feed},
      {"take_output", conn_take_output},
      {"request", conn_request},
      {"parse_response", conn_parse_response},
      {"parse_request", conn_parse_request},
      {"respond_upgrade", conn_respond_upgrade},
      {"respond_refusal", conn_respond_refusal},
      {"handshake_done", conn_handshake_done},
      {"next_event", conn_next_event},
      {"budget", conn_budget},
      {"deflates", conn_deflates},
      {"counters", conn_counters},
      {"send", conn_send},
      {"send_fragment", conn_send_fragment},
      {"ping", conn_ping},
      {"pong", conn_pong},
      {"close", conn_close},
      {"fail_close", conn_fail_close},
      {"state", conn_state},
      {"shutdown", conn_shutdown},
      {"close_fd", conn_close_fd},
      {"release", conn_release},
      {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", conn_gc},
                                  {"__close", conn_release},
                                  {"__tostring", conn_tostring},
                                  {NULL, NULL}};

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

  luaL_newmetatable(L, LCONN_TYPE);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  lua_pushcfunction(L, conn_new);
  lua_setfield(L, -2, "conn");
  lua_pushcfunction(L, check_headers);
  lua_setfield(L, -2, "check_headers");
  lua_pushcfunction(L, utf8_valid);
  lua_setfield(L, -2, "utf8_valid");
}

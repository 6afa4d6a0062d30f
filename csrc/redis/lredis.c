/*
 * lredis.c -- moonws.redis: one hiredis async connection as a Lua object
 * whose descriptor moonws's own loop watches (lua/moonws/pubsub.lua).  A
 * module of its own so hiredis never becomes a dependency of moonws.core.
 *
 * hiredis runs our callbacks from inside redisAsyncHandleRead/Write, where
 * raising a Lua error would longjmp through its state; so the callbacks only
 * record (want flags, a queue of copied replies, counters) and never touch
 * Lua.  Lua calls :handle(events), then drains :next() and re-reads
 * :fd()/:interest().  When hiredis frees its context on an error, the
 * object stays valid and reports one final "down" event.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "lua_compat.h"

#define CONN_TYPE "moonws.redis.conn"
#define LREDIS_API __attribute__((visibility("default")))

enum rkind { RK_MESSAGE, RK_SUBSCRIBED, RK_UNSUBSCRIBED, RK_ERROR };
static const char *const kind_names[] = {"message", "subscribed",
                                         "unsubscribed", "error"};

/* One copied reply: a (channel or error text) then b (payload). */
typedef struct rnode {
  struct rnode *next;
  enum rkind kind;
  size_t alen, blen;
  char bytes[];
} rnode;

typedef struct rconn {
  redisAsyncContext *ac; /* NULL once freed: by hiredis on error, or :close */
  bool want_read, want_write;
  bool connected_news; /* "connected" not yet reported */
  bool down, down_told;
  bool closing;        /* our own redisAsyncFree is running */
  long long pending;   /* PUBLISH commands awaiting their reply */
  long long unconfirmed; /* ... whose reply never came (connection lost) */
  long long dropped;   /* replies not queued for lack of memory */
  rnode *head, *tail;
  char message[160];   /* why the connection went down */
} rconn;

/* ---- event-library hooks: hiredis says what it wants to wait for ---- */

static void hook_add_read(void *p) { ((rconn *)p)->want_read = true; }
static void hook_del_read(void *p) { ((rconn *)p)->want_read = false; }
static void hook_add_write(void *p) { ((rconn *)p)->want_write = true; }
static void hook_del_write(void *p) { ((rconn *)p)->want_write = false; }
static void hook_cleanup(void *p) {
  rconn *rc = p; /* may run twice on one teardown: stay idempotent */
  rc->want_read = rc->want_write = false;
}

/* ---- recording, never raising ---- */

static void queue_push(rconn *rc, enum rkind kind, const char *a, size_t alen,
                       const char *b, size_t blen) {
  if (alen > SIZE_MAX / 2 - sizeof(rnode) || blen > SIZE_MAX / 2) {
    rc->dropped++;
    return;
  }
  rnode *n = malloc(sizeof *n + alen + blen);
  if (!n) {
    rc->dropped++;
    return;
  }
  n->next = NULL;
  n->kind = kind;
  n->alen = alen;
  n->blen = blen;
  if (alen)
    memcpy(n->bytes, a, alen);
  if (blen)
    memcpy(n->bytes + alen, b, blen);
  if (rc->tail)
    rc->tail->next = n;
  else
    rc->head = n;
  rc->tail = n;
}

static void queue_free(rconn *rc) {
  while (rc->head) {
    rnode *n = rc->head;
    rc->head = n->next;
    free(n);
  }
  rc->tail = NULL;
}

static void went_down(rconn *rc, const char *why) {
  rc->ac = NULL; /* hiredis frees it once our callback returns */
  rc->want_read = rc->want_write = false;
  if (rc->closing || rc->down)
    return;
  rc->down = true;
  snprintf(rc->message, sizeof rc->message, "%s",
           why && *why ? why : "connection lost");
}

static void on_connect(const redisAsyncContext *ac, int status) {
  rconn *rc = ac->data;
  if (status == REDIS_OK)
    rc->connected_news = true;
  else
    went_down(rc, ac->c.errstr);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  rconn *rc = ac->data;
  went_down(rc, status == REDIS_OK ? "redis closed the connection"
                                   : (ac->errstr ? ac->errstr : ac->c.errstr));
}

/* PUBLISH replies come in order; a NULL reply means the connection ended
 * before Redis answered: the message may or may not have gone out. */
static void on_publish(redisAsyncContext *ac, void *r, void *privdata) {
  rconn *rc = privdata;
  redisReply *reply = r;
  rc->pending--;
  if (!reply)
    rc->unconfirmed++;
  else if (reply->type == REDIS_REPLY_ERROR)
    queue_push(rc, RK_ERROR, reply->str, reply->len, NULL, 0);
}

static bool is_string(const redisReply *r) {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* Subscription traffic: ["subscribe", ch, n], ["message", ch, data],
 * ["unsubscribe", ch, n]; anything else is not ours to report. */
static void on_subscription(redisAsyncContext *ac, void *r, void *privdata) {
  rconn *rc = privdata;
  redisReply *reply = r;
  if (!reply || rc->closing)
    return;
  if (reply->type == REDIS_REPLY_ERROR) {
    queue_push(rc, RK_ERROR, reply->str, reply->len, NULL, 0);
    return;
  }
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
      !is_string(reply->element[0]) || !is_string(reply->element[1]))
    return;
  const char *type = reply->element[0]->str;
  const redisReply *ch = reply->element[1], *third = reply->element[2];
  if (strcmp(type, "message") == 0 && is_string(third))
    queue_push(rc, RK_MESSAGE, ch->str, ch->len, third->str, third->len);
  else if (strcmp(type, "subscribe") == 0)
    queue_push(rc, RK_SUBSCRIBED, ch->str, ch->len, NULL, 0);
  else if (strcmp(type, "unsubscribe") == 0)
    queue_push(rc, RK_UNSUBSCRIBED, ch->str, ch->len, NULL, 0);
}

/* ---- the Lua object ---- */

static rconn *check_conn(lua_State *L) {
  return luaL_checkudata(L, 1, CONN_TYPE);
}

/* The live context, or NULL after "nil, message, 'closed'" was pushed. */
static redisAsyncContext *live(lua_State *L, rconn *rc) {
  if (rc->ac && (rc->ac->c.flags & REDIS_CONNECTED))
    return rc->ac;
  lua_pushnil(L);
  lua_pushstring(L, "redis is disconnected");
  lua_pushstring(L, "closed");
  return NULL;
}

/* redis.connect(ip, port) -> conn | nil, message, name.  ip must be a
 * numeric IPv4/IPv6 address: hiredis would resolve a name with a blocking
 * getaddrinfo, so names are resolved by the caller, off the loop thread. */
static int conn_new(lua_State *L) {
  const char *ip = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  unsigned char sa[sizeof(struct in6_addr)];
  luaL_argcheck(L, inet_pton(AF_INET, ip, sa) == 1 ||
                       inet_pton(AF_INET6, ip, sa) == 1,
                1, "numeric IP address expected");
  luaL_argcheck(L, port > 0 && port < 65536, 2, "port out of range");
  rconn *rc = compat_newuserdata(L, sizeof *rc, 0);
  memset(rc, 0, sizeof *rc);
  luaL_setmetatable(L, CONN_TYPE);
  redisAsyncContext *ac = redisAsyncConnect(ip, (int)port);
  if (!ac) {
    lua_pushnil(L);
    lua_pushstring(L, "out of memory");
    lua_pushstring(L, "nomem");
    return 3;
  }
  if (ac->err) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot connect to redis at %s:%d: %s", ip, (int)port,
                    ac->errstr ? ac->errstr : "error");
    lua_pushstring(L, strstr(ac->c.errstr, "refused") ? "refused" : "io");
    redisAsyncFree(ac);
    return 3;
  }
  ac->data = rc;
  ac->ev.data = rc;
  ac->ev.addRead = hook_add_read;
  ac->ev.delRead = hook_del_read;
  ac->ev.addWrite = hook_add_write;
  ac->ev.delWrite = hook_del_write;
  ac->ev.cleanup = hook_cleanup;
  rc->ac = ac;
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  redisAsyncSetConnectCallback(ac, on_connect);
  rc->want_write = true; /* connect(2) completes when the socket is writable */
  return 1;
}

/* fd() -> descriptor | nil once the connection is gone */
static int conn_fd(lua_State *L) {
  rconn *rc = check_conn(L);
  if (!rc->ac)
    return 0;
  lua_pushinteger(L, rc->ac->c.fd);
  return 1;
}

/* interest() -> want_read, want_write */
static int conn_interest(lua_State *L) {
  rconn *rc = check_conn(L);
  lua_pushboolean(L, rc->ac && rc->want_read);
  lua_pushboolean(L, rc->ac && rc->want_write);
  return 2;
}

/* handle(events): 1 readable, 2 writable, 3 both (the poller's mask).
 * Writing first completes a pending connect; the context may be gone
 * after either call. */
static int conn_handle(lua_State *L) {
  rconn *rc = check_conn(L);
  lua_Integer ev = luaL_checkinteger(L, 2);
  if (rc->ac && (ev & 2) && rc->want_write)
    redisAsyncHandleWrite(rc->ac);
  if (rc->ac && (ev & 1))
    redisAsyncHandleRead(rc->ac);
  return 0;
}

/* next() -> "connected" | kind, a[, b] | "dropped", n | "down", message,
 * unconfirmed | nil.  "down" is the last event of a connection. */
static int conn_next(lua_State *L) {
  rconn *rc = check_conn(L);
  if (rc->connected_news) {
    rc->connected_news = false;
    lua_pushliteral(L, "connected");
    return 1;
  }
  rnode *n = rc->head;
  if (n) {
    /* Push before unlinking: if a push raises, the node stays queued. */
    lua_pushstring(L, kind_names[n->kind]);
    lua_pushlstring(L, n->bytes, n->alen);
    lua_pushlstring(L, n->bytes + n->alen, n->blen);
    rc->head = n->next;
    if (!rc->head)
      rc->tail = NULL;
    free(n);
    return 3;
  }
  if (rc->dropped) {
    lua_pushliteral(L, "dropped");
    lua_pushinteger(L, (lua_Integer)rc->dropped);
    rc->dropped = 0;
    return 2;
  }
  if (rc->down && !rc->down_told) {
    rc->down_told = true;
    lua_pushliteral(L, "down");
    lua_pushstring(L, rc->message);
    lua_pushinteger(L, (lua_Integer)rc->unconfirmed);
    return 3;
  }
  return 0;
}

static int command(lua_State *L, redisCallbackFn *fn, const char *format,
                   int nargs) {
  rconn *rc = check_conn(L);
  size_t alen, blen = 0;
  const char *a = luaL_checklstring(L, 2, &alen);
  const char *b = nargs > 1 ? luaL_checklstring(L, 3, &blen) : NULL;
  redisAsyncContext *ac = live(L, rc);
  if (!ac)
    return 3;
  int r = nargs > 1 ? redisAsyncCommand(ac, fn, rc, format, a, alen, b, blen)
                    : redisAsyncCommand(ac, fn, rc, format, a, alen);
  if (r != REDIS_OK) {
    lua_pushnil(L);
    lua_pushstring(L, "redis refused the command (out of memory or closing)");
    lua_pushstring(L, "io");
    return 3;
  }
  if (fn == on_publish)
    rc->pending++;
  lua_pushboolean(L, 1);
  return 1;
}

/* publish(channel, data) / subscribe(channel) / unsubscribe(channel) ->
 * true (queued; written when the socket is writable) | nil, message, name */
static int conn_publish(lua_State *L) {
  return command(L, on_publish, "PUBLISH %b %b", 2);
}
static int conn_subscribe(lua_State *L) {
  return command(L, on_subscription, "SUBSCRIBE %b", 1);
}
static int conn_unsubscribe(lua_State *L) {
  rconn *rc = check_conn(L);
  /* hiredis refuses UNSUBSCRIBE when nothing is subscribed: nothing to do. */
  if (rc->ac && !(rc->ac->c.flags & REDIS_SUBSCRIBED)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return command(L, on_subscription, "UNSUBSCRIBE %b", 1);
}

/* pending() -> PUBLISH commands not yet answered */
static int conn_pending(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_conn(L)->pending);
  return 1;
}

/* close() -> how many PUBLISH commands could not be handed to the kernel.
 * One nonblocking write first, so a publish just before close goes out. */
static int conn_close(lua_State *L) {
  rconn *rc = luaL_checkudata(L, 1, CONN_TYPE);
  long long unsent = 0;
  redisAsyncContext *ac = rc->ac;
  if (ac) {
    if ((ac->c.flags & REDIS_CONNECTED) && rc->want_write)
      redisAsyncHandleWrite(ac);
    ac = rc->ac; /* the write may have ended the connection */
  }
  if (ac) {
    if (!(ac->c.flags & REDIS_CONNECTED) ||
        (ac->c.obuf && ac->c.obuf[0] != '\0'))
      unsent = rc->pending; /* which of them left is unknown: all count */
    rc->closing = true;
    rc->ac = NULL;
    redisAsyncFree(ac);
    rc->closing = false;
  }
  rc->want_read = rc->want_write = false;
  rc->connected_news = false; /* a closed object has nothing more to say */
  rc->down = rc->down_told = true;
  rc->dropped = 0;
  queue_free(rc);
  lua_pushinteger(L, (lua_Integer)unsent);
  return 1;
}

static int conn_gc(lua_State *L) {
  conn_close(L);
  return 0;
}

static int conn_tostring(lua_State *L) {
  rconn *rc = check_conn(L);
  const char *state = !rc->ac                                  ? "closed"
                      : (rc->ac->c.flags & REDIS_CONNECTED) ? "connected"
                                                               : "connecting";
  lua_pushfstring(L, "moonws.redis.conn (%s): %p", state, (void *)rc);
  return 1;
}

LREDIS_API int luaopen_moonws_redis(lua_State *L);

LREDIS_API int luaopen_moonws_redis(lua_State *L) {
  static const luaL_Reg methods[] = {{"fd", conn_fd},
                                     {"interest", conn_interest},
                                     {"handle", conn_handle},
                                     {"next", conn_next},
                                     {"publish", conn_publish},
                                     {"subscribe", conn_subscribe},
                                     {"unsubscribe", conn_unsubscribe},
                                     {"pending", conn_pending},
                                     {"close", conn_close},
                                     {NULL, NULL}};
  luaL_newmetatable(L, CONN_TYPE);
  lua_pushcfunction(L, conn_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, conn_gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, conn_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, conn_new);
  lua_setfield(L, -2, "connect");
  return 1;
}

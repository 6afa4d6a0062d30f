-- moonws.pubsub -- publish/subscribe across processes through Redis, driven
-- by moonws's own loop (moonws.pubsub(url) loads this module on first use).
--
-- Two hiredis connections (csrc/redis/lredis.c, module moonws.redis): a
-- subscriber connection cannot publish.  Both connect without blocking, are
-- watched by the loop like any socket, and reconnect on their own with
-- exponential backoff; on reconnect every channel is subscribed again.
-- Nothing is dropped silently: a publish that cannot reach Redis returns
-- nil, message, name and is counted in the next onlost event; messages sent
-- but not confirmed when a connection drops are counted there too; once
-- both connections are back and every channel is subscribed again,
-- onreconnect fires (event.missed: the subscriber was down, and what was
-- published meanwhile is gone: Redis pub/sub keeps nothing).

local E = require "moonws.errors"
local compat = require "moonws.compat"
local core = require "moonws.core"
local loop = require "moonws.loop"
local misuse = require "moonws.misuse"

local redis -- moonws.redis, required by the first pubsub.new
local now = loop.now
local traceback = loop.traceback

local pubsub = {}

local PubSub = {}
PubSub.__index = PubSub

local Role = {}   -- one connection: the loop's watcher for its descriptor
Role.__index = Role

local open = {}   -- ps -> true until ps:close(): an open object stays alive

local defaults = {
  timeout = 5,          -- seconds for name lookup + connect, per attempt
  reconnect_min = 0.1,  -- first delay before reconnecting, doubled per failure
  reconnect_max = 5,    -- ... up to this
  max_pending = 10000,  -- publishes waiting for Redis's reply; above: refused
}

---------------------------------------------------------------- helpers

local function report(ps, what, err)
  local message = "error in pubsub " .. what .. ": " .. tostring(err)
  local handler = ps.onerror
  if handler and what ~= "onerror" then
    local ok, err2 = xpcall(handler, traceback,
      { target = ps, message = message, error = E.HANDLER })
    if ok then return end
    message = message .. "\n(onerror failed too: " .. tostring(err2) .. ")"
  end
  loop.report(message)
end

local function fire(ps, name, event)
  local handler = ps[name]
  if not handler then return false end
  event.target = ps
  local ok, err = xpcall(handler, traceback, event)
  if not ok then report(ps, name, err) end
  return true
end

-- "redis://host[:port][/db]"; host may be [ipv6].  The db number means
-- nothing to pub/sub (channels are global) and is ignored.
local function parse_url(url)
  local rest = type(url) == "string" and url:match("^redis://(.*)$")
  if not rest then return nil, "redis://host[:port] expected" end
  local authority, path = rest:match("^([^/]*)(.*)$")
  if not (path == "" or path:match("^/%d*$")) then return nil, "unexpected path" end
  if authority:find("@", 1, true) then return nil, "credentials are not supported" end
  local host, port
  if authority:sub(1, 1) == "[" then
    host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  else
    host, port = authority:match("^([^:]+):?(%d*)$")
  end
  if not host then return nil, "bad host" end
  port = port == "" and 6379 or tonumber(port)
  if port < 1 or port > 65535 then return nil, "port out of range" end
  return host, port
end

---------------------------------------------------------------- lookups

-- Names are resolved on moonws's resolver threads: hiredis itself would
-- call getaddrinfo on the loop thread.  Addresses pass straight through.
local resolver
local lookups = {} -- id -> role
local resolver_watcher = {}

function resolver_watcher.on_ready()
  while true do
    local id, addrs, message = resolver:collect()
    if not id then return end
    local r = lookups[id]
    lookups[id] = nil
    if r and r.lookup_id == id then
      r.lookup_id = nil
      local ip = addrs and addrs[1] and core.format_address(addrs[1]):match("^%[?(.-)%]?:%d+$")
      r:dial(ip, ("cannot resolve redis host '%s': %s"):format(r.ps.host,
        message or "no address"))
    end
  end
end

local function lookup(r)
  local ps = r.ps
  if core.numeric_address(ps.host, ps.port) then return r:dial(ps.host) end
  if not resolver then
    -- Out of descriptors or threads: this attempt fails like a lookup
    -- that failed, and the reconnect backoff tries again.
    local res, message = core.resolver(1)
    if res then
      local watched
      watched, message = loop.watch(res:fd(), resolver_watcher, true, false)
      if watched then resolver = res else res:close() end
    end
    if not resolver then
      return r:dial(nil, ("cannot resolve redis host '%s': %s"):format(ps.host, message))
    end
  end
  local id, message = resolver:start(ps.host, ps.port)
  if not id then return r:dial(nil, message) end
  r.lookup_id = id
  lookups[id] = r
end

---------------------------------------------------------------- a connection

local function new_role(ps, name)
  return setmetatable({ ps = ps, name = name, state = "idle", ever_up = false }, Role)
end

-- Follow the C object: (un)watch its descriptor first -- hiredis may have
-- closed it, and the number must leave the poller before any handler can
-- open a socket that reuses it -- then hand its events out.
function Role:sync()
  local conn = self.conn
  local fd = conn and conn:fd()
  if self.fd and self.fd ~= fd then
    loop.unwatch(self.fd)
    self.fd, self.i_read, self.i_write = nil, nil, nil
  end
  if fd then
    local rd, wr = conn:interest()
    if fd ~= self.fd or rd ~= self.i_read or wr ~= self.i_write then
      self.fd, self.i_read, self.i_write = fd, rd, wr
      local ok, message, name = loop.watch(fd, self, rd, wr)
      if not ok then return self:down("cannot watch the redis socket: " .. message, name) end
    end
  end
  while conn and self.conn == conn do
    local kind, a, b = conn:next()
    if not kind then break end
    self:event(kind, a, b)
  end
end

function Role:on_ready(events)
  if self.conn then
    self.conn:handle(events)
    self:sync()
  end
end

-- End of a round (loop.dirty): write what commands queued, in one go.
function Role:flush()
  if self.conn then
    self.conn:handle(loop.WRITE)
    self:sync()
  end
end

function Role:drop_conn()
  loop.cancel(self.timer); self.timer = nil
  if self.lookup_id then
    if resolver then resolver:cancel(self.lookup_id) end
    lookups[self.lookup_id] = nil
    self.lookup_id = nil
  end
  if self.fd then loop.unwatch(self.fd) end
  self.fd, self.i_read, self.i_write = nil, nil, nil
  local conn = self.conn
  self.conn = nil
  return conn and conn:close() or 0
end

local function on_connect_timeout(r)
  if r.state == "connecting" and not r.ps.closed then
    r:down(("timed out connecting to redis at %s:%d"):format(r.ps.host, r.ps.port), E.TIMEOUT)
  end
end

local function on_backoff(r)
  r.timer = nil
  if not r.ps.closed then r:connect() end
end

local function start_roles(ps)
  if ps.closed then return end
  ps.pub:connect()
  ps.sub:connect()
end

function Role:connect()
  local ps = self.ps
  self.state = "connecting"
  self.timer = loop.timer(now() + ps.opts.timeout, on_connect_timeout, self)
  lookup(self)
end

function Role:dial(ip, why)
  if self.state ~= "connecting" or self.ps.closed then return end
  local conn, message, name
  if ip then
    conn, message, name = redis.connect(ip, self.ps.port)
  else
    message, name = why, E.RESOLVE
  end
  if not conn then return self:down(message, name) end
  self.conn = conn
  self:sync()
end

-- The connection failed or ended: count what it took with it, tell the
-- application once per outage, and try again after the backoff delay.
function Role:down(message, name, unconfirmed)
  local ps = self.ps
  local was_up = self.state == "up"
  self:drop_conn()
  self.state = "waiting"
  if ps.is_ready then ps.is_ready, ps.down_since = false, now() end
  if self.name == "subscriber" then
    ps.confirmed = {}
    if was_up then ps.missed = true end -- Redis kept nothing for us
  end
  if unconfirmed and unconfirmed > 0 then
    pubsub.lost(ps, unconfirmed, ("%d message(s) published but not confirmed: %s")
      :format(unconfirmed, message), E.IO)
  end
  if was_up or not self.told then
    self.told = true
    fire(ps, "ondisconnect", { role = self.name, message = message, error = name })
  end
  local opts = ps.opts
  local delay = self.backoff or opts.reconnect_min
  self.backoff = math.min(delay * 2, opts.reconnect_max)
  self.timer = loop.timer(now() + delay, on_backoff, self)
  loop.wake_all(ps.waiters)
end

-- Connected: the subscriber (re)subscribes every channel.
function Role:up()
  local ps = self.ps
  self.state, self.ever_up, self.told, self.backoff = "up", true, false, nil
  loop.cancel(self.timer); self.timer = nil
  if self.name == "subscriber" then
    for channel in pairs(ps.channels) do self.conn:subscribe(channel) end
    loop.dirty(self)
  end
  pubsub.check_ready(ps)
end

-- onreconnect fires when the object is ready again (both connections up,
-- every channel confirmed), so a message published after it is delivered.
function pubsub.check_ready(ps)
  loop.wake_all(ps.waiters)
  if ps.is_ready or not ps:ready() then return end
  ps.is_ready = true
  if not ps.ever_ready then
    ps.ever_ready = true
    return
  end
  local channels = {}
  for channel in pairs(ps.channels) do channels[#channels + 1] = channel end
  table.sort(channels)
  local missed = ps.missed
  ps.missed = false
  fire(ps, "onreconnect", { channels = channels, missed = missed,
    down_for = now() - ps.down_since })
end

function Role:event(kind, a, b)
  local ps = self.ps
  if kind == "message" then
    local list = ps.channels[a]
    if list then
      local snapshot = { compat.unpack(list) } -- a handler may unsubscribe
      for i = 1, #snapshot do
        local ok, err = xpcall(snapshot[i], traceback, b, a)
        if not ok then report(ps, "subscriber of '" .. a .. "'", err) end
      end
    end
  elseif kind == "subscribed" then
    if ps.channels[a] then ps.confirmed[a] = true end
    pubsub.check_ready(ps)
  elseif kind == "unsubscribed" then
    if not ps.channels[a] then ps.confirmed[a] = nil end
  elseif kind == "connected" then
    self:up()
  elseif kind == "error" then
    if self.name == "publisher" then
      pubsub.lost(ps, 1, "redis refused a publish: " .. a, E.IO)
    else
      fire(ps, "onerror", { message = "redis: " .. a, error = E.IO })
    end
  elseif kind == "dropped" then
    fire(ps, "onerror", { message = ("%d message(s) from redis dropped: out of memory")
      :format(a), error = E.NOMEM, count = a })
  elseif kind == "down" then
    self:down(a, E.IO, b)
  end
end

---------------------------------------------------------------- lost messages

-- Losses are summed and reported once per round: onlost, else onerror,
-- else moonws.onerror / stderr.  Never silent.
local function fire_lost(ps)
  local count, message, name = ps.lost_count, ps.lost_message, ps.lost_name
  ps.lost_count, ps.lost_scheduled = 0, false
  if count == 0 then return end
  local event = { count = count, message = message, error = name }
  if not fire(ps, "onlost", event) and not fire(ps, "onerror", event) then
    loop.report(("pubsub lost %d message(s): %s"):format(count, message))
  end
end

function pubsub.lost(ps, count, message, name)
  ps.lost_count = ps.lost_count + count
  ps.lost_message, ps.lost_name = message, name
  if not ps.lost_scheduled then
    ps.lost_scheduled = true
    loop.defer(fire_lost, ps)
  end
end

---------------------------------------------------------------- the object

local function check_self(ps, what)
  if getmetatable(ps) ~= PubSub then misuse.arg(1, what, "pubsub expected") end
end

local function check_open(ps, what)
  check_self(ps, what)
  if ps.closed then misuse.raise("attempt to use a closed pubsub") end
end

local function check_string(v, n, what)
  if type(v) ~= "string" then
    misuse.arg(n, what, "string expected, got " .. type(v))
  end
end

-- publish(channel, data) -> true (queued, written at the end of this round)
-- | nil, message, name ("closed" while disconnected, "too_big" when
-- max_pending publishes await their reply, "io"); a failure is also counted
-- in the next onlost.
function PubSub:publish(channel, data)
  check_open(self, "publish")
  check_string(channel, 1, "publish")
  check_string(data, 2, "publish")
  local r = self.pub
  local ok, message, name
  if r.state ~= "up" then
    message, name = "redis is disconnected", E.CLOSED
  elseif r.conn:pending() >= self.opts.max_pending then
    message, name = ("%d publishes await redis's reply (max_pending)"):format(
      self.opts.max_pending), E.TOO_BIG
  else
    ok, message, name = r.conn:publish(channel, data)
  end
  if not ok then
    pubsub.lost(self, 1, message, name)
    return nil, message, name
  end
  loop.dirty(r)
  return true
end

-- subscribe(channel, fn): fn(data, channel) for each message; several
-- functions may share a channel.  Subscriptions made while disconnected
-- are sent once the connection is up.
function PubSub:subscribe(channel, fn)
  check_open(self, "subscribe")
  check_string(channel, 1, "subscribe")
  if type(fn) ~= "function" then
    misuse.arg(2, "subscribe", "function expected, got " .. type(fn))
  end
  local list = self.channels[channel]
  if not list then
    list = {}
    self.channels[channel] = list
    local r = self.sub
    if r.state == "up" then
      r.conn:subscribe(channel)
      loop.dirty(r)
    end
  end
  for i = 1, #list do
    if list[i] == fn then return true end
  end
  list[#list + 1] = fn
  return true
end

-- unsubscribe(channel [, fn]): remove fn, or every function of channel.
function PubSub:unsubscribe(channel, fn)
  check_open(self, "unsubscribe")
  check_string(channel, 1, "unsubscribe")
  local list = self.channels[channel]
  if not list then return true end
  for i = #list, 1, -1 do
    if fn == nil or list[i] == fn then table.remove(list, i) end
  end
  if #list == 0 then
    self.channels[channel] = nil
    self.confirmed[channel] = nil
    local r = self.sub
    if r.state == "up" then
      r.conn:unsubscribe(channel)
      loop.dirty(r)
    end
  end
  return true
end

-- ready(): both connections up and every channel's subscription confirmed.
function PubSub:ready()
  check_self(self, "ready")
  if self.closed or self.pub.state ~= "up" or self.sub.state ~= "up" then return false end
  for channel in pairs(self.channels) do
    if not self.confirmed[channel] then return false end
  end
  return true
end

-- wait([timeout]): until ready(); yields in a moonws coroutine, drives the
-- loop on the main thread.  true | nil, message, "timeout" | "closed".
function PubSub:wait(timeout)
  check_open(self, "wait")
  local deadline = timeout and now() + timeout
  local ps = self
  loop.wait_until(function() return ps.closed or ps:ready() end, deadline,
    self.waiters, "pubsub:wait")
  if self.closed then return nil, "pubsub closed", E.CLOSED end
  if not self:ready() then return nil, "redis is not ready", E.TIMEOUT end
  return true
end

-- close(): both connections end; a publish still unwritten is reported as
-- lost.  Idempotent; also the __close metamethod.
function PubSub:close()
  check_self(self, "close")
  if self.closed then return true end
  self.closed = true
  open[self] = nil
  loop.unref()
  local unsent = self.pub:drop_conn()
  self.sub:drop_conn()
  self.pub.state, self.sub.state = "ended", "ended"
  if unsent > 0 then
    pubsub.lost(self, unsent, "pubsub closed before the message was written", E.CLOSED)
  end
  loop.wake_all(self.waiters)
  return true
end
PubSub.__close = PubSub.close

function PubSub:__tostring()
  return ("moonws.pubsub (%s:%d, publisher %s, subscriber %s)"):format(
    self.host, self.port, self.pub.state, self.sub.state)
end

-- pubsub.new(url [, options]) -> object; connects in the loop.
function pubsub.new(url, options)
  local host, port = parse_url(url)
  if not host then
    misuse.arg(1, "pubsub", port .. ": " .. tostring(url))
  end
  if options ~= nil and type(options) ~= "table" then
    misuse.arg(2, "pubsub", "table expected, got " .. type(options))
  end
  local opts = {}
  for k, v in pairs(defaults) do opts[k] = v end
  for k, v in pairs(options or {}) do
    if defaults[k] == nil then misuse.raise(("unknown pubsub option '%s'"):format(tostring(k))) end
    if type(v) ~= "number" or v <= 0 then
      misuse.raise(("pubsub option '%s' must be a positive number"):format(k))
    end
    opts[k] = v
  end
  if not redis then
    local ok, mod = pcall(require, "moonws.redis")
    if not ok then
      misuse.raise("moonws.pubsub needs the module moonws.redis (hiredis): build it with "
        .. "`make moonws/redis.so` or install rockspec/moonws-redis-scm-1.rockspec\n"
        .. tostring(mod))
    end
    redis = mod
  end
  local ps = setmetatable({
    host = host, port = port, opts = opts,
    channels = {}, confirmed = {}, waiters = {},
    lost_count = 0, lost_scheduled = false, closed = false,
    is_ready = false, ever_ready = false, missed = false, down_since = now(),
  }, PubSub)
  ps.pub = new_role(ps, "publisher")
  ps.sub = new_role(ps, "subscriber")
  open[ps] = true
  loop.ref()
  -- Connect in the next round, as moonws.new does, so handlers set after
  -- pubsub() see a failure that comes at once (no descriptor left).
  loop.defer(start_roles, ps)
  return ps
end

pubsub.parse_url = parse_url
return pubsub

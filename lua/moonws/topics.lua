-- moonws.topics -- topics, publish and broadcast on moonws servers, across
-- processes through a moonws.pubsub relay, and the server's counters
-- (docs/TOPICS.md).  Part of the loop driver's server (moonws.server).
--
-- A group is the sockets one message goes to: a topic's subscribers, or
-- every open socket of a server (broadcast).  It keeps their conns in an
-- array that one C call walks (core.fanout, csrc/lua/lconn_fanout.c): the
-- frames are built once, compressed once per compressor shape, and queued
-- on every receiver's output in C; Lua makes no call per receiver.  The
-- round's writes happen in one more C call at the end of the round, one
-- write per receiver however many messages the round published.  Only the
-- exceptions come back to Lua: a receiver whose deflating queue holds
-- messages (order), a slow one under the "close" policy.
--
-- Lifetime: a topic's group holds its sockets (a subscribed socket stays
-- alive while open, as one with a handler does); the broadcast group holds
-- them weakly (server:clients() never kept a socket alive either).  Both
-- forget a socket when it closes.  The broadcast group is made by the
-- server's first broadcast: until then, and for a socket that never
-- subscribes, topics cost nothing per socket.
--
-- Across processes (the server's `pubsub` option): publish goes to Redis
-- only, and every process -- this one too -- delivers what comes back, so
-- every subscriber anywhere sees a topic's messages in the one order in
-- which Redis ran the PUBLISH commands.

local core = require "moonws.core"
local E = require "moonws.errors"
local loop = require "moonws.loop"
local loop_io = require "moonws.loop_io"
local misuse = require "moonws.misuse"
local websocket = require "moonws.websocket"

local OPEN, CLOSED = websocket.OPEN, websocket.CLOSED
local priv = websocket.priv

local topics = {}

-- Redis channels of topics: a fixed prefix, so the relay's channels do not
-- meet an application's own.
local CHANNEL_PREFIX = "moonws:topic:"
topics.CHANNEL_PREFIX = CHANNEL_PREFIX

---------------------------------------------------------------- groups

local WEAK_VALUES, WEAK_KEYS = { __mode = "v" }, { __mode = "k" }

local function new_group(weak)
  return {
    conns = weak and setmetatable({}, WEAK_VALUES) or {},
    sts = weak and setmetatable({}, WEAK_VALUES) or {},
    index = weak and setmetatable({}, WEAK_KEYS) or {},
    n = 0,
  }
end

local function join(g, st)
  if g.index[st] then return false end
  local n = g.n + 1
  g.conns[n], g.sts[n], g.index[st], g.n = st.conn, st, n, n
  return true
end

local function leave(g, st)
  local i = g.index[st]
  if not i then return false end
  local n = g.n
  local last = g.sts[n]
  g.conns[i], g.sts[i] = g.conns[n], last
  if last then g.index[last] = i end
  g.conns[n], g.sts[n], g.index[st], g.n = nil, nil, nil, n - 1
  return true
end

-- A weak group whose collected sockets left holes: close them up.
local function compact(g)
  local conns, sts, n = g.conns, g.sts, 0
  for i = 1, g.n do
    local st, conn = sts[i], conns[i]
    conns[i], sts[i] = nil, nil
    if st and conn then
      n = n + 1
      conns[n], sts[n], g.index[st] = conn, st, n
    end
  end
  g.n = n
end

---------------------------------------------------------------- per server

-- The topic state of server ss (fs), made with the first socket.
local function state_of(ss)
  local fs = ss.fan
  if fs then return fs end
  local opts = ss.opts
  fs = {
    ss = ss, opts = opts,
    core = core.fanout(opts.fragment_size),
    all = nil,                 -- every open socket, from the first broadcast
    topics = {},               -- name -> group
    relay = opts.pubsub,
    origin = nil,              -- this process's id on the relay
    senders = {},              -- relay sender id -> st (sockets that published)
    next_sender = 0,
    -- counters kept in Lua (per event, not per message or receiver)
    opened = 0, close_codes = {}, handler_errors = 0, closed_totals = {},
    publishes = 0, broadcasts = 0, slow_closed = 0, dropped_held = 0,
    relayed_out = 0, relayed_in = 0, relay_failed = 0,
  }
  local policy = opts.slow_receiver
  fs.drop = policy == "drop"
  fs.close_code = not fs.drop and policy or nil
  -- The loop's dirty object: flush() at the end of the round.
  fs.flush = function()
    local left = fs.core:flush()
    if left then
      for i = 1, #left do
        local st = left[i]
        if st.conn then loop_io.write(st) end
      end
    end
  end
  ss.fan = fs
  return fs
end

-- A receiver past send_limit: dropped (counted), or closed.
local function too_slow(fs, st)
  if fs.drop then
    fs.dropped_held = fs.dropped_held + 1
    if st.conn then st.conn:count_drop() end
    return
  end
  fs.slow_closed = fs.slow_closed + 1
  if st.state == OPEN then
    websocket.start_close(st, fs.close_code, "receiver too slow")
  end
end

-- What the C fan-out handed back: index, code pairs (1 held: queue it the
-- socket's own way; 2 slow; 3 out of memory).
local function handle_back(fs, g, back, data, binary)
  local delivered = 0
  for k = 1, #back, 2 do
    local st, code = g.sts[back[k]], back[k + 1]
    if st and st.state == OPEN then
      if code == 1 then
        local ok, _, name = websocket.queue_send(st, data, binary)
        if ok then
          delivered = delivered + 1
        elseif name == E.TOO_BIG then
          too_slow(fs, st)
        end
      elseif code == 2 then
        too_slow(fs, st)
      else
        websocket.fail(st, "publish: out of memory", E.NOMEM)
      end
    end
  end
  return delivered
end

-- Send data to group g but except (a socket state); returns how many got it.
local function deliver(fs, g, data, binary, except)
  if g.n == 0 then return 0 end
  local opts = fs.opts
  local delivered, pending, back, holes = fs.core:publish(g.conns, g.sts, g.n, data, binary,
    opts.send_limit, opts.max_step_bytes, fs.drop, except and except.conn)
  if pending then loop.dirty(fs) end
  if back then delivered = delivered + handle_back(fs, g, back, data, binary) end
  if holes > 0 then compact(g) end
  return delivered
end

---------------------------------------------------------------- the relay

-- What names this server on the relay (random; for except-sender).
local function relay_origin(fs)
  if not fs.origin then fs.origin = assert(fs.core:random_id()) end
  return fs.origin
end

-- A message on the relay: kind, origin process, sender socket (0: none),
-- then the data.
local function relay_encode(fs, data, binary, except)
  local sender = 0
  if except then
    sender = except.relay_sender
    if not sender then
      fs.next_sender = fs.next_sender + 1
      sender = fs.next_sender
      except.relay_sender = sender
      fs.senders[sender] = except
    end
  end
  return (binary and "b" or "t") .. relay_origin(fs) .. ":" .. sender .. "\n" .. data
end

local function on_relay_message(fs, payload, channel)
  local kind, origin, sender, at = payload:match("^([tb])(%x+):(%d+)\n()")
  local g = fs.topics[channel:sub(#CHANNEL_PREFIX + 1)]
  if not kind or not g then return end
  fs.relayed_in = fs.relayed_in + 1
  local except = origin == fs.origin and fs.senders[tonumber(sender)] or nil
  local data = payload:sub(at)
  local binary = kind == "b"
  if not binary and not core.utf8_valid(data) then return end -- not from moonws
  deliver(fs, g, data, binary, except)
end

local function relay_subscribe(fs, topic)
  if not fs.on_relay then
    fs.on_relay = function(payload, channel) on_relay_message(fs, payload, channel) end
  end
  relay_origin(fs)
  fs.relay:subscribe(CHANNEL_PREFIX .. topic, fs.on_relay)
end

---------------------------------------------------------------- publishing

local function check_topic(topic, n, what)
  if type(topic) ~= "string" then
    misuse.arg(n, what, "string expected, got " .. type(topic))
  end
end

local function check_data(data, n, what)
  if type(data) ~= "string" then
    misuse.arg(n, what, "string expected, got " .. type(data))
  end
end

-- The kind argument (argument n of what): binary or not; text is checked
-- as UTF-8 here, once for every receiver.
local function check_kind(data, kind, n, what)
  local binary
  if kind == nil or kind == "text" then
    binary = false
  elseif kind == "binary" then
    binary = true
  else
    misuse.arg(n, what, '"text" or "binary" expected')
  end
  if not binary and not core.utf8_valid(data) then
    misuse.arg(n - 1, what, "invalid UTF-8 in a text message (send it as binary)")
  end
  return binary
end

-- publish from a server (except nil) or a socket (except: its state).
-- Returns the receivers in this process that got it (0 when relayed: they
-- get it when it comes back), or nil, message, name from the relay.
local function publish(fs, topic, data, binary, except, relay)
  fs.publishes = fs.publishes + 1
  if fs.relay and relay ~= false then
    local ok, message, name = fs.relay:publish(CHANNEL_PREFIX .. topic,
      relay_encode(fs, data, binary, except))
    if not ok then
      fs.relay_failed = fs.relay_failed + 1
      return nil, message, name
    end
    fs.relayed_out = fs.relayed_out + 1
    return 0
  end
  local g = fs.topics[topic]
  if not g then return 0 end
  return deliver(fs, g, data, binary, except)
end

---------------------------------------------------------------- socket methods

local function server_socket(ws, what)
  local st = priv(ws)
  local ss = st.drv and st.drv.server
  if not ss then
    misuse.raise(what .. " is for sockets of a moonws server (moonws.listen)")
  end
  return st, state_of(ss)
end

local socket_methods = {}

-- ws:subscribe(topic) -> true (false: already subscribed) | nil, "closed"
function socket_methods.subscribe(ws, topic)
  local st, fs = server_socket(ws, "subscribe")
  check_topic(topic, 1, "subscribe")
  if st.state ~= OPEN then return nil, E.CLOSED, E.CLOSED end
  local g = fs.topics[topic]
  if not g then
    g = new_group(false)
    fs.topics[topic] = g
    if fs.relay then relay_subscribe(fs, topic) end
  end
  if not join(g, st) then return false end
  local mine = st.topics
  if not mine then
    mine = {}
    st.topics = mine
  end
  mine[topic] = true
  return true
end

local function drop_membership(fs, st, topic)
  local g = fs.topics[topic]
  if not (g and leave(g, st)) then return false end
  if g.n == 0 then
    fs.topics[topic] = nil
    if fs.relay and fs.on_relay then
      fs.relay:unsubscribe(CHANNEL_PREFIX .. topic, fs.on_relay)
    end
  end
  return true
end

-- ws:unsubscribe(topic) -> true, or false when it was not subscribed
function socket_methods.unsubscribe(ws, topic)
  local st, fs = server_socket(ws, "unsubscribe")
  check_topic(topic, 1, "unsubscribe")
  local mine = st.topics
  if not (mine and mine[topic]) then return false end
  mine[topic] = nil
  return drop_membership(fs, st, topic)
end

-- ws:topics() -> the sorted list of topics the socket is subscribed to
function socket_methods.topics(ws)
  local st = server_socket(ws, "topics")
  local list = {}
  for topic in pairs(st.topics or {}) do list[#list + 1] = topic end
  table.sort(list)
  return list
end

-- ws:publish(topic, data [, kind]): to every subscriber but this socket
function socket_methods.publish(ws, topic, data, kind)
  local st, fs = server_socket(ws, "publish")
  check_topic(topic, 1, "publish")
  check_data(data, 2, "publish")
  local binary = check_kind(data, kind, 3, "publish")
  return publish(fs, topic, data, binary, st)
end

websocket.add_methods(socket_methods)

---------------------------------------------------------------- server methods

-- The methods moonws.server adds to its servers; server_state(srv) is its
-- own check of self.
function topics.add_server_methods(methods, server_state)
  -- server:publish(topic, data [, kind [, options]]) -> receivers here |
  -- nil, message, name (the relay refused).  options.except: a socket
  -- that does not get it; options.relay = false: this process only.
  function methods.publish(srv, topic, data, kind, opts)
    local fs = state_of(server_state(srv))
    check_topic(topic, 1, "publish")
    check_data(data, 2, "publish")
    local binary = check_kind(data, kind, 3, "publish")
    local except, relay = nil, nil
    if opts ~= nil then
      if type(opts) ~= "table" then
        misuse.arg(4, "publish", "table expected, got " .. type(opts))
      end
      if opts.except ~= nil then except = priv(opts.except) end
      relay = opts.relay
    end
    return publish(fs, topic, data, binary, except, relay)
  end

  -- server:broadcast(data [, kind]) -> receivers: every open socket of
  -- this server (this process only).
  function methods.broadcast(srv, data, kind)
    local ss = server_state(srv)
    local fs = state_of(ss)
    check_data(data, 1, "broadcast")
    local binary = check_kind(data, kind, 2, "broadcast")
    fs.broadcasts = fs.broadcasts + 1
    local all = fs.all
    if not all then -- the first broadcast: from now on, kept up to date
      all = new_group(true)
      for st in pairs(ss.clients) do
        if st.state == OPEN then join(all, st) end
      end
      fs.all = all
    end
    return deliver(fs, all, data, binary, nil)
  end

  -- server:subscribers(topic) -> sockets of this process subscribed to it
  function methods.subscribers(srv, topic)
    local fs = state_of(server_state(srv))
    check_topic(topic, 1, "subscribers")
    local g = fs.topics[topic]
    return g and g.n or 0
  end

  -- server:stats([t]) -> the server's counters (docs/TOPICS.md)
  function methods.stats(srv, t)
    return topics.stats(state_of(server_state(srv)), t)
  end
end

---------------------------------------------------------------- the server's hooks

-- A socket finished its handshake (it is in ss.clients; before
-- onconnection).
function topics.joined(ss, st)
  local fs = state_of(ss)
  fs.opened = fs.opened + 1
  if fs.all then join(fs.all, st) end
end

-- A socket of the server closed (called while it is still in ss.clients
-- if it was handed over): it leaves every group; its counts stay.
function topics.left(ss, st)
  local fs = ss.fan
  if not fs or not ss.clients[st] then return end
  if fs.all then leave(fs.all, st) end
  for topic in pairs(st.topics or {}) do drop_membership(fs, st, topic) end
  st.topics = nil
  if st.relay_sender then fs.senders[st.relay_sender] = nil end
  local code = st.close_code
  if code then fs.close_codes[code] = (fs.close_codes[code] or 0) + 1 end
  local totals = fs.closed_totals
  for k, v in pairs(st.final_counters or {}) do totals[k] = (totals[k] or 0) + v end
end

-- A handler of the server or of one of its sockets raised.
function topics.handler_failed(ss)
  local fs = state_of(ss)
  fs.handler_errors = fs.handler_errors + 1
end

---------------------------------------------------------------- counters

function topics.stats(fs, t)
  if t ~= nil and type(t) ~= "table" then
    misuse.arg(1, "stats", "table expected, got " .. type(t))
  end
  t = t or {}
  local conns, n = {}, 0
  for st in pairs(fs.ss.clients) do
    if st.conn and st.state ~= CLOSED then
      n = n + 1
      conns[n] = st.conn
    end
  end
  local _, live = fs.core:sum(conns, n, t)
  for k, v in pairs(fs.closed_totals) do t[k] = t[k] + v end
  t.connections_open = live
  t.connections_total = fs.opened
  local codes = {}
  for code, n in pairs(fs.close_codes) do codes[code] = n end
  t.close_codes = codes
  t.handler_errors = fs.handler_errors
  local k = fs.core:counters()
  t.publishes = fs.publishes
  t.broadcasts = fs.broadcasts
  t.fanout_messages = k.messages
  t.fanout_deliveries = k.deliveries
  t.frames_built = k.frames_built
  t.shared_deflates = k.shared_deflates
  t.own_deflates = k.own_deflates
  t.dropped = k.dropped + fs.dropped_held
  t.slow_closed = fs.slow_closed
  local n = 0
  for _ in pairs(fs.topics) do n = n + 1 end
  t.topics = n
  t.relayed_out, t.relayed_in, t.relay_failed = fs.relayed_out, fs.relayed_in, fs.relay_failed
  return t
end

return topics

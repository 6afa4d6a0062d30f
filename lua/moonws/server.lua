-- moonws.server -- listening, accepting, and the server's opening phase on
-- moonws's loop (part of the loop driver, moonws.loop_io): the request is
-- read and checked (in C), the object's handshake policy (moonws.websocket:
-- subprotocol, the handshake callback) decides, and the open socket is
-- handed to server.onconnection (or to a coroutine by moonws.serve).  A
-- plain HTTP request may be answered by the `request` option.  Per-socket
-- data lives in st.drv with the rest of the driver's; per-server data in
-- the server's private state (ss).

local compat = require "moonws.compat"
local core = require "moonws.core"
local E = require "moonws.errors"
local log = require "moonws.log"
local loop = require "moonws.loop"
local loop_io = require "moonws.loop_io"
local misuse = require "moonws.misuse"
local options = require "moonws.options"
local peer_address = require "moonws.peer_address"
local tls = require "moonws.tls"
local topics = require "moonws.topics"
local websocket = require "moonws.websocket"

local now = loop.now
local PRIV = websocket.PRIV

local server = {}

local ACCEPTS_PER_ROUND = 64

local listening = {}  -- ss -> true: servers the loop keeps alive
local handshaking = {} -- st -> true: accepted sockets not yet handed over

local server_methods = {}
local server_mt = { __name = "moonws.server", __index = server_methods }

---------------------------------------------------------------- refusing

-- Answer with a plain HTTP response and end the connection.  Headers a
-- callback gave that cannot be sent (a name the handshake owns, a bad
-- value) are reported and left out.
local function answer(st, status, headers, body)
  local ok, err = pcall(st.conn.respond_refusal, st.conn, status, nil, headers, body)
  if not ok then
    loop.report("headers left out of a refusal: " .. tostring(err))
    st.conn:respond_refusal(status, nil, nil, body)
  end
  websocket.refusing(st)
  loop_io.write(st)
end

-- Refuse with status; the body is body, else the message.
local function refuse(st, status, message, headers, body)
  if st.opts.log then
    log.emit(st, "refused", ("answered %d%s"):format(status, message and ": " .. message or ""),
      { code = status })
  end
  answer(st, status, headers, body or (message and message .. "\n" or nil))
end

-- A plain HTTP request (no Upgrade: websocket) goes to the `request`
-- option when set, which returns status, headers, body -- a chat page
-- served by its own WebSocket server.  Without it: 426 Upgrade Required.
local function plain_http(ss, st, req, status, why)
  local handler = ss.opts.request
  if not handler or status ~= 426 or not req or req.headers.upgrade then
    return refuse(st, status, why)
  end
  local ok, code, headers, body = xpcall(handler, loop.traceback, req)
  if not ok then
    topics.handler_failed(ss)
    loop.report("error in request callback: " .. tostring(code))
    return refuse(st, 500, "internal error")
  end
  if code == nil then return refuse(st, status, why) end -- not handled
  if not compat.is_integer(code) or code < 200 or code > 599 then
    loop.report("request callback returned a bad status: " .. tostring(code))
    return refuse(st, 500, "internal error")
  end
  if headers ~= nil and type(headers) ~= "table" then headers = nil end
  if st.opts.log then
    log.emit(st, "http", ("%s %s -> %d"):format(req.method or "GET", req.path or "?", code),
      { code = code })
  end
  answer(st, code, headers, body ~= nil and tostring(body) or nil)
end

---------------------------------------------------------------- handshake

-- Who the client is, from the socket (or PROXY header) and, behind
-- trusted proxies, the request's forwarding header: on the socket and on
-- the request (moonws.peer_address).
local function client_known(st, req)
  if not req then return end
  local address, port = peer_address.client(st.remote_address, st.remote_port, req.headers,
    st.opts)
  req.remote_address, req.remote_port = address, port
  websocket.set_remote(st, address, port)
end

local function hand_over(ss, st, req)
  handshaking[st] = nil
  local srv = ss.server
  ss.clients[st] = true
  topics.joined(ss, st)
  if ss.shutdown then -- finished its handshake while the server shuts down
    return websocket.start_close(st, ss.shutdown.code, ss.shutdown.reason)
  end
  if srv.onconnection then
    local ok, err = xpcall(srv.onconnection, loop.traceback, st.ws, req)
    -- reported (and counted) as any handler error, then closed with 1011
    if not ok then websocket.handler_ended(st, "onconnection", false, err) end
  end
  websocket.announce(st, false)
end

-- The verdict on req (websocket.accept's results): the refusal goes
-- out, or the socket opens and is handed over.  Nothing when the
-- connection ended while the verdict was awaited (timeout, client gone).
local function conclude(ss, st, req, ok, a, b, headers, body)
  if st.state ~= websocket.CONNECTING then return end
  if not ok then return refuse(st, a, b, headers, body) end
  websocket.set_url(st, (ss.tls_ctx and "wss://" or "ws://") .. (req.headers.host or "")
    .. req.path)
  websocket.opened(st, a, b)
  loop_io.open_phase(st)
  loop_io.write(st)
  hand_over(ss, st, req)
end

local function on_handshake_ready(st, events)
  local got = loop_io.handshake_read(st, events)
  if got == nil then return end
  if not got then -- the client left; no one to tell
    return websocket.fail(st, nil, nil, 1006)
  end
  local ss, conn = st.drv.server, st.conn
  local req, status, why, request, name = conn:parse_request(ss.opts.max_handshake)
  if req == nil then return end
  client_known(st, req or request)
  if req == false then
    if name then loop.report(("handshake from %s refused: %s"):format(
      peer_address.join(st.remote_address, st.remote_port), why)) end
    return plain_http(ss, st, request, status, why)
  end
  if not ss.opts.handshake then
    return conclude(ss, st, req, websocket.accept(ss.opts, conn, req, loop.report,
      loop.traceback))
  end
  -- The callback may wait (a timer, a lookup): it runs as a task of the
  -- loop, bounded by the handshake timeout (which abandons it), and
  -- nothing more is read from the client meanwhile.
  loop_io.set_interest(st, false, false)
  st.drv.task = loop.task(function()
    return websocket.accept(ss.opts, conn, req, loop.report, loop.traceback)
  end, function(ran, ...)
    st.drv.task = nil
    if ran then return conclude(ss, st, req, ...) end
    loop.report("handshake failed: " .. tostring((...)))
    conclude(ss, st, req, false, 500, "internal error")
  end)
end

-- Bounds the whole server handshake, including sending a refusal to a
-- client that does not read it.
local function on_handshake_timeout(st)
  if not st.was_opened then websocket.fail(st, nil, nil, 1006) end
end

local function forget(st)
  handshaking[st] = nil
  loop.abandon(st.drv.task) -- a handshake callback still waiting: its answer is not wanted
  local ss = st.drv.server
  if ss then
    topics.left(ss, st) -- while still in clients: it was handed over
    ss.clients[st] = nil
    local sd = ss.shutdown
    if sd and sd.left[st] then
      sd.left[st] = nil
      sd.count = sd.count - 1
      if not st.was_clean then sd.unclean = sd.unclean + 1 end
      if sd.count == 0 then
        loop.cancel(sd.timer)
        sd.timer = nil
        loop.wake_all(sd.waiters)
      end
    end
  end
end

---------------------------------------------------------------- TLS

-- The TLS handshake of an accepted connection, then the HTTP one.  A
-- failure has no one to tell (no socket was handed over): it just ends.
local function on_tls_ready(st)
  local ok, want = core.tls_handshake(st.conn)
  if ok == nil then
    if st.opts.log then log.emit(st, "error", "tls: handshake failed: " .. tostring(want)) end
    return websocket.fail(st, nil, nil, 1015)
  end
  if ok == 0 then return loop_io.set_interest(st, want == "read", want == "write") end
  loop_io.set_phase(st, on_handshake_ready)
  loop_io.set_interest(st, true, false)
  -- The request may already sit decrypted inside TLS, where epoll cannot see it.
  if st.conn:pending() then on_handshake_ready(st, loop.READ) end
end

---------------------------------------------------------------- PROXY protocol

-- TLS (when the server has it), then the HTTP handshake.
local function start_phases(ss, st, conn, attach)
  local phase = on_handshake_ready
  if ss.tls_ctx then
    core.tls_start(conn, ss.tls_ctx, nil)
    st.drv.tls = true -- TLS may hold decrypted bytes epoll cannot see
    phase = on_tls_ready
  end
  if attach then loop_io.attach(st, conn, phase, true, false) else loop_io.set_phase(st, phase) end
end

-- proxy_protocol = true: the balancer's PROXY header comes first, before
-- TLS; bytes after it stay in the kernel for the next phase (read when
-- the poller reports them again).
local function on_proxy_header_ready(st)
  local d = st.drv
  local ok, a, b = peer_address.read_proxy_header(st.conn, st.opts, st.remote_address,
    st.remote_port)
  if ok == nil then return end
  if not ok then
    if a and st.opts.log then log.emit(st, "refused", a) end
    return websocket.fail(st, nil, nil, 1006)
  end
  websocket.set_remote(st, a, b)
  start_phases(d.server, st, st.conn, false)
end

---------------------------------------------------------------- accepting

-- When accept fails (EMFILE/ENFILE: out of descriptors, ENOMEM) the
-- pending connection stays queued and the listener stays readable, so
-- retrying at once would spin: stop watching it for a moment instead.
local ACCEPT_BACKOFF = 0.1

local function resume_accepting(ss)
  ss.backoff_timer = nil
  if listening[ss] and not loop.watch(ss.listener:fd(), ss, true, false) then
    ss.backoff_timer = loop.timer(loop.now() + ACCEPT_BACKOFF, resume_accepting, ss)
  end
end

local function on_accept_ready(ss)
  for _ = 1, ACCEPTS_PER_ROUND do
    local conn, peer, name = ss.listener:accept()
    if conn == false then return end
    if not conn then
      if not ss.accept_failing then
        loop.report(("accept failed: %s (%s); retrying every %gs"):format(tostring(peer),
          tostring(name), ACCEPT_BACKOFF))
      end
      ss.accept_failing = true
      loop.unwatch(ss.listener:fd())
      ss.backoff_timer = loop.timer(loop.now() + ACCEPT_BACKOFF, resume_accepting, ss)
      return
    end
    ss.accept_failing = false
    local _, st = loop_io.new("server", ss.opts, "")
    local d = st.drv
    d.server = ss
    websocket.set_remote(st, peer_address.split(peer))
    if ss.opts.log then log.emit(st, "accepted", "on port " .. tostring(ss.listener:port())) end
    handshaking[st] = true
    if ss.opts.proxy_protocol then
      loop_io.attach(st, conn, on_proxy_header_ready, true, false)
    else
      start_phases(ss, st, conn, true)
    end
    websocket.arm_connect_timer(st, on_handshake_timeout)
  end
end

---------------------------------------------------------------- servers

function server.listen(opts)
  opts = options.server(opts, "listen")
  local host = opts.host or "127.0.0.1"
  if host == "localhost" then host = "127.0.0.1" end
  if host == "*" then host = nil end
  -- Certificate problems show here, at listen, not at the first client.
  local tls_ctx, message, name
  if opts.tls then
    tls_ctx, message, name = tls.server_context(opts.tls)
    if not tls_ctx then return nil, message, name end
  end
  local listener
  listener, message, name = core.listen(host, opts.port or 0, opts.backlog, opts.reuseport)
  if not listener then return nil, message, name end
  local ss = {
    listener = listener, opts = opts, tls_ctx = tls_ctx,
    clients = setmetatable({}, { __mode = "k" }),
    on_ready = on_accept_ready,
    on_handler_error = topics.handler_failed, -- counted by server:stats()
    on_closed = forget, -- one of its sockets closed (loop_io.closed)
  }
  local watched
  watched, message, name = loop.watch(listener:fd(), ss, true, false)
  if not watched then
    listener:close()
    return nil, "cannot watch the listening socket: " .. message, name
  end
  local srv = setmetatable({ port = listener:port(), host = host or "*", [PRIV] = ss },
    server_mt)
  ss.server = srv
  listening[ss] = true
  loop.ref()
  return srv
end

function server.serve(opts, handler)
  if type(handler) ~= "function" then
    misuse.arg(2, "serve", "function expected, got " .. type(handler))
  end
  local srv, message, name = server.listen(opts)
  if not srv then return nil, message, name end
  -- The handler's end (a return or an error) ends the connection, 1000
  -- or 1011.
  srv.onconnection = function(ws, request)
    local st = websocket.priv(ws)
    loop.spawn_ended(handler, function(ok, err) websocket.handler_ended(st, "serve", ok, err) end,
      ws, request)
  end
  return srv
end

local function server_state(srv)
  local ss = type(srv) == "table" and rawget(srv, PRIV)
  if not ss then misuse.raise("bad self (a moonws server expected)") end
  return ss
end

-- Stop accepting; open connections stay open.
for name, fn in pairs(loop.polling) do server_methods[name] = fn end -- cqueues.poll(server)

function server_methods.close(srv)
  local ss = server_state(srv)
  if not listening[ss] then return end
  listening[ss] = nil
  loop.cancel(ss.backoff_timer)
  loop.unwatch(ss.listener:fd())
  ss.listener:close()
  loop.unref()
end

---------------------------------------------------------------- shutting down

local function check_shutdown_args(code, reason)
  if code == nil and reason == nil then return 1001, "going away" end
  if code == nil then code = 1001 end
  if not compat.is_integer(code) or not core.close_code_sendable(code) then
    misuse.arg(1, "shutdown", ("close code %s expected"):format(core.CLOSE_CODES_SENDABLE))
  end
  reason = reason or ""
  if type(reason) ~= "string" then
    misuse.arg(2, "shutdown", "string expected, got " .. type(reason))
  end
  if #reason > core.CLOSE_REASON_MAX or not core.utf8_valid(reason) then
    misuse.arg(2, "shutdown", "reason over 123 bytes or not UTF-8")
  end
  return code, reason
end

-- The close_timeout bound on the whole shutdown: whatever is still not
-- CLOSED (a handshake still going on, say) is dropped.
local function on_shutdown_timeout(sd)
  sd.timer = nil
  local list = {}
  for st in pairs(sd.left) do list[#list + 1] = st end
  for _, st in ipairs(list) do websocket.fail(st, nil, nil, 1006) end
end

-- Start a shutdown (once): stop accepting, close every connection with
-- code and reason; connections still in their handshake are closed when
-- it completes.  The queue of connections the kernel already accepted is
-- taken in first: closing a listener resets them.
local function start_shutdown(srv, ss, code, reason)
  if listening[ss] then on_accept_ready(ss) end
  server_methods.close(srv)
  local sd = { code = code, reason = reason, left = {}, count = 0, unclean = 0, waiters = {} }
  ss.shutdown = sd
  for st in pairs(handshaking) do
    if st.drv.server == ss and st.state ~= websocket.CLOSED then
      sd.left[st], sd.count = true, sd.count + 1
    end
  end
  local open = {}
  for st in pairs(ss.clients) do
    if st.state ~= websocket.CLOSED then
      sd.left[st], sd.count = true, sd.count + 1
      open[#open + 1] = st
    end
  end
  sd.total = sd.count
  for _, st in ipairs(open) do websocket.start_close(st, code, reason) end
  if sd.count > 0 then
    -- A little after the sockets' own close timers (same close_timeout),
    -- so theirs decide first.
    sd.timer = loop.timer(now() + ss.opts.close_timeout + 0.05, on_shutdown_timeout, sd)
  end
end

-- server:shutdown([code [, reason]]): stop accepting and close every
-- connection (default 1001 "going away"), then wait until all are CLOSED,
-- at most close_timeout.  Waits in a coroutine or on the main thread; from
-- an event or signal handler it only starts.  Returns true when every
-- connection closed cleanly, else nil, message, "closed".
function server_methods.shutdown(srv, code, reason)
  local ss = server_state(srv)
  code, reason = check_shutdown_args(code, reason)
  if not ss.shutdown then start_shutdown(srv, ss, code, reason) end
  local sd = ss.shutdown
  if sd.count > 0 and loop.wait_mode() then
    loop.wait_until(function() return sd.count == 0 end, nil, sd.waiters, "shutdown")
  end
  if sd.count == 0 and sd.unclean > 0 then
    return nil, ("%d of %d connections did not close cleanly"):format(sd.unclean, sd.total),
      E.CLOSED
  end
  return true
end

-- Start srv's shutdown without waiting (moonws.graceful starts every
-- server's before it waits for any).
function server.begin_shutdown(srv, code, reason)
  local ss = server_state(srv)
  code, reason = check_shutdown_args(code, reason)
  if not ss.shutdown then start_shutdown(srv, ss, code, reason) end
end

-- Whether srv is a moonws server (for moonws.graceful's checks).
function server.is_server(srv)
  return type(srv) == "table" and getmetatable(srv) == server_mt
end

-- publish, broadcast, subscribers, stats (moonws.topics)
topics.add_server_methods(server_methods, server_state)

-- Iterate the server's open sockets.
function server_methods.clients(srv)
  local ss = server_state(srv)
  local list = {}
  for st in pairs(ss.clients) do
    if st.state == websocket.OPEN then list[#list + 1] = st.ws end
  end
  local i = 0
  return function()
    i = i + 1
    return list[i]
  end
end

function server_mt.__tostring(srv)
  local ss = rawget(srv, PRIV)
  return ("moonws.server (%s:%d, %s)"):format(srv.host, srv.port,
    listening[ss] and "listening" or "closed") -- a state, not an error name
end

return server

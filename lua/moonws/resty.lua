-- moonws.resty -- the WebSocket object of DESIGN.md 1.3 inside nginx
-- (OpenResty's lua-nginx-module), on cosockets instead of moonws's loop.
--
--   upgrade([options])     in a content_by_lua handler: answer the request's
--                          upgrade on the raw request socket -> ws, request
--   connect(url [, opts])  a client on ngx.socket.tcp (wss:// through the
--                          cosocket's sslhandshake) -> ws
--
-- Only the I/O lives here: framing, masking, UTF-8 checks, close codes,
-- the handshake's checks and permessage-deflate are the C core's conn
-- driven through feed()/take_output(), the same core moonws's own loop
-- drives.  Cosockets already yield the request's coroutine, so the style
-- is DESIGN.md 1.2 without a scheduler: receive() reads until it has a
-- message, send() writes until the kernel has the bytes.  There are no
-- event handlers and no pause/resume: the socket reads only while someone
-- is inside receive() (or close(), waiting for the peer's close frame).
--
-- Light threads (ngx.thread.spawn) may share a socket the way cosockets
-- allow it: one reads (receive) while others send; a send that finds
-- another one writing leaves its frame queued for that writer.  close()
-- from a thread while another is inside receive() waits on a semaphore
-- for the reader to see the peer's answer.
--
-- Errors as in moonws: runtime conditions return nil, message, name
-- (moonws.errors), misuse raises.

local core = require "moonws.core"
local compat = require "moonws.compat"
local options = require "moonws.options"

local ngx = ngx -- luacheck: ignore (the nginx global)

local CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3 -- luacheck: ignore CONNECTING
local FOREVER = 3600 -- seconds one cosocket wait lasts when nothing bounds it (re-armed)

local resty = {
  CONNECTING = CONNECTING, OPEN = OPEN, CLOSING = CLOSING, CLOSED = CLOSED,
  codes = core.codes, errors = core.errors,
}

local PRIV = {}
local methods, getters = {}, {}
local mt = { __name = "moonws.resty.websocket" }

local function now() return ngx.now() end

local function ms(seconds)
  local v = math.floor(seconds * 1000 + 0.5)
  return v < 1 and 1 or v
end

local function need_ngx(caller)
  if type(ngx) ~= "table" or not ngx.socket then
    error(("moonws.resty.%s runs inside nginx (lua-nginx-module / OpenResty)"):format(caller), 3)
  end
end

---------------------------------------------------------------- options

-- What a cosocket front can honour.  The others belong to moonws's own
-- loop (send_buffer, max_queue ...) or to nginx.conf (TLS files, proxies).
local COMMON = {
  timeout = true, close_timeout = true, max_payload = true, max_frame = true,
  max_handshake = true, compression = true, headers = true, protocols = true,
  ping_interval = true, ping_timeout = true, fragment_size = true, max_step_bytes = true,
}
local SERVER = setmetatable({ handshake = true }, { __index = COMMON })
local CLIENT = setmetatable({ origin = true, tls = true }, { __index = COMMON })
local CLIENT_TLS = { verify = true, servername = true, cert = true, key = true }

local HINTS = {
  tls = " (nginx terminates TLS: 'listen ... ssl' with ssl_certificate)",
  cafile = " (set lua_ssl_trusted_certificate in nginx.conf)",
  capath = " (set lua_ssl_trusted_certificate in nginx.conf)",
  ciphers = " (set lua_ssl_ciphers in nginx.conf)",
  proxy = " (cosockets connect directly)",
}

local function check_supported(given, allowed, caller)
  if type(given) ~= "table" then return end -- options.* names the type error
  for k in pairs(given) do
    if not allowed[k] then
      error(("option '%s' is not supported by moonws.resty.%s%s"):format(tostring(k), caller,
        caller == "upgrade" and HINTS[k] or k == "proxy" and HINTS[k] or ""), 3)
    end
  end
  if caller == "connect" and type(given.tls) == "table" then
    for k in pairs(given.tls) do
      if not CLIENT_TLS[k] then
        error(("option 'tls.%s' is not supported by moonws.resty.connect%s"):format(
          tostring(k), HINTS[k] or ""), 3)
      end
    end
    if (given.tls.cert == nil) ~= (given.tls.key == nil) then
      error("option 'tls' needs both cert and key for a client certificate", 3)
    end
  end
end

---------------------------------------------------------------- ending

-- Drop the cosocket once no light thread is inside a call on it.  A
-- client's is closed; the raw request socket has no close in the http
-- module: nginx closes it when the handler returns.
local function release_sock(st)
  if st.sock and not st.reading and not st.writing then
    if st.role == "client" then st.sock:close() end
    st.sock = nil
  end
end

-- Wake the light threads waiting in wait_turn.
local function wake(st)
  local sema = st.sema
  if sema and sema:count() < 0 then sema:post(-sema:count()) end
end

local function finish(st, code, reason, clean)
  if st.state == CLOSED then return end
  st.state = CLOSED
  st.close_code, st.close_reason, st.was_clean = code, reason or "", clean
  if st.conn then st.conn:release(); st.conn = nil end
  release_sock(st)
  wake(st)
end

local function abort(st, message, name, code)
  if st.state == CLOSED then return end
  if message then st.err_message, st.err_name = message, name end
  finish(st, code or 1006, "", false)
end

local function enter_closing(st)
  if st.state == OPEN then
    st.state = CLOSING
    st.close_deadline = now() + st.opts.close_timeout
  end
end

-- The TCP connection ended or failed (message nil: the peer closed it).
local function connection_lost(st, message, name)
  local sent, received = st.conn:state()
  if sent and received then
    finish(st, st.close_code, st.close_reason, true)
  elseif st.state == CLOSING then
    finish(st, 1006, "", false)
  else
    abort(st, message or "connection lost: the peer closed TCP without a closing handshake",
      name or "io")
  end
end

-- close_timeout passed while CLOSING.
local function close_timed_out(st)
  local sent, received = st.conn:state()
  if sent and received then
    finish(st, st.close_code, st.close_reason, true) -- only the TCP close is missing
  else
    finish(st, 1006, "", false)
  end
end

---------------------------------------------------------------- output

-- Write everything the core has queued.  One light thread writes at a
-- time (cosockets refuse a second writer): another one finding it busy
-- leaves its bytes to it.
local function flush(st)
  if st.writing then return true end
  local ok, err = true, nil
  st.writing = true
  while st.conn and st.sock and st.conn:buffered() > 0 do
    local out = st.conn:take_output()
    st.in_flight = #out
    ok, err = st.sock:send(out)
    st.in_flight = 0
    if not ok then break end
  end
  st.writing = false
  if not ok and st.state ~= CLOSED then
    connection_lost(st, "send failed: " .. tostring(err), err == "timeout" and "timeout" or "io")
  end
  if st.state == CLOSED then
    release_sock(st)
    if not ok then return nil, st.err_message or "closed", st.err_name or "closed" end
  end
  return true
end

---------------------------------------------------------------- input

local function set_read_timeout(st, seconds)
  local o = st.opts
  st.sock:settimeouts(ms(o.timeout), ms(o.timeout), ms(seconds))
end

-- Keepalive (ping_interval): send a ping when one is due; fail when the
-- last one got no byte back within ping_timeout.  Returns when the next
-- check is due (nil: none).
local function keepalive(st)
  local o = st.opts
  if not o.ping_interval or st.state ~= OPEN then return nil end
  local t = now()
  if st.awaiting_pong and t >= st.pong_deadline then
    abort(st, ("no data from the peer within ping_timeout (%gs) after a ping"):format(
      o.ping_timeout), "timeout")
    return nil
  end
  if t >= st.next_ping then
    st.next_ping = t + o.ping_interval
    if not st.awaiting_pong then
      st.awaiting_pong, st.pong_deadline = true, t + o.ping_timeout
      st.conn:ping("")
      flush(st)
      if st.state ~= OPEN then return nil end
    end
  end
  return st.awaiting_pong and math.min(st.next_ping, st.pong_deadline) or st.next_ping
end

-- Wait for bytes from the peer, at most until deadline (nil: no limit),
-- and feed them to the core.  true: bytes fed; false: a wait ran out
-- (the caller checks its deadlines); nil: the socket is CLOSED now.
local function read_more(st, deadline)
  local limit = deadline
  local due = keepalive(st)
  if st.state == CLOSED then return nil end
  if due and (not limit or due < limit) then limit = due end
  if st.state == CLOSING and st.close_deadline < (limit or math.huge) then
    limit = st.close_deadline
  end
  local wait = limit and limit - now() or FOREVER
  if wait <= 0 then return false end
  -- A close or terminate from another light thread cannot cut this wait
  -- short: bound it, so the reader notices within close_timeout.
  set_read_timeout(st, math.min(wait, st.opts.close_timeout))
  st.reading = true
  local data, err = st.sock:receiveany(st.opts.max_step_bytes)
  st.reading = false
  if st.state == CLOSED then -- finished by another light thread meanwhile
    release_sock(st)
    return nil
  end
  if data then
    st.awaiting_pong = false -- any byte proves the peer alive
    local ok, message, name = st.conn:feed(data)
    if not ok then abort(st, message, name) return nil end
    return true
  end
  if err == "timeout" then return false end
  if err == "closed" then
    connection_lost(st)
  else
    connection_lost(st, "receive failed: " .. tostring(err), "io")
  end
  return nil
end

-- A client, after both close frames (or after failing): the server ends
-- TCP first (RFC 6455 7.1.1); wait for that, bounded by close_timeout,
-- reading and dropping whatever still comes.
local function await_server_close(st)
  while st.state ~= CLOSED do
    local got = read_more(st, nil)
    if got == nil then return end
    if got then st.conn:discard() end
    if st.state ~= CLOSED and now() >= st.close_deadline then return close_timed_out(st) end
  end
end

-- Act on one event of the core; returns data, kind for a message to hand out.
local function handle_event(st, kind, a, b)
  if kind == "text" or kind == "binary" then
    if st.state == OPEN then return a, kind end -- once closing, dropped (as the browser)
  elseif kind == "ping" then
    flush(st) -- the pong the core queued
  elseif kind == "close" then
    st.close_code, st.close_reason = a, b
    enter_closing(st)
    flush(st) -- our echo, when we had not sent a close frame yet
    if st.state ~= CLOSED then
      if st.role == "server" then
        finish(st, a, b, true) -- the server ends TCP: the handler returns
      else
        await_server_close(st)
      end
    end
  elseif kind == "error" then
    st.err_message, st.err_name = a, b
    enter_closing(st)
    flush(st) -- the close frame the core queued with the RFC code
    if st.state ~= CLOSED and st.role == "client" then await_server_close(st) end
    finish(st, 1006, "", false)
  end
  -- "pong": nothing to do; its bytes already proved the peer alive.
end

-- Read and dispatch until a message comes (data, kind), the deadline
-- passes (false) or the socket is CLOSED (nil).
local function pump(st, deadline, who)
  st.pumping = who
  local data, kind
  while st.state ~= CLOSED do
    local ev, a, b = st.conn:next_event()
    if ev then
      data, kind = handle_event(st, ev, a, b)
      if data then break end
    elseif ev == false then
      -- A slice of a big compressed message is inflated: let the worker's
      -- other requests run before the next (a deflate bomb must not stall
      -- them), then go on.
      ngx.sleep(0)
      st.conn:budget(st.opts.max_step_bytes)
    else
      local got = read_more(st, deadline)
      if got == false then
        local t = now()
        if st.state == CLOSING and t >= st.close_deadline then
          close_timed_out(st)
        elseif deadline and t >= deadline then
          data = false
          break
        end
      end
    end
  end
  st.pumping = nil
  wake(st) -- a thread waiting to read may take over
  return data, kind
end

-- Another light thread is reading: wait (at most seconds) until it stops
-- or the socket is CLOSED.
local function wait_turn(st, seconds)
  if not st.sema then st.sema = require("ngx.semaphore").new(0) end
  st.sema:wait(seconds)
end

---------------------------------------------------------------- the object

local function priv(ws)
  local st = type(ws) == "table" and rawget(ws, PRIV)
  if not st then error("bad self (a moonws.resty websocket expected)", 3) end
  return st
end

local function closed_result(st)
  if st.err_message then return nil, st.err_message, st.err_name end
  return nil, ("closed (%d%s)"):format(st.close_code,
    st.close_reason ~= "" and " " .. st.close_reason or ""), "closed"
end

function methods.receive(ws, timeout)
  local st = priv(ws)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("bad argument #1 to 'receive' (non-negative number expected)", 2)
  end
  if st.pumping == "receive" then
    error("receive: another light thread is already reading this websocket", 2)
  end
  while st.pumping == "close" and st.state ~= CLOSED do -- no message can come any more
    local left = st.close_deadline - now()
    if left <= 0 then close_timed_out(st) break end
    wait_turn(st, left)
  end
  if st.state == CLOSED then return closed_result(st) end
  local data, kind = pump(st, timeout and now() + timeout, "receive")
  if data then return data, kind end
  if data == false then return nil, "receive timed out", "timeout" end
  return closed_result(st)
end

function methods.send(ws, data, kind)
  local st = priv(ws)
  if type(data) ~= "string" then
    error("bad argument #1 to 'send' (string expected, got " .. type(data) .. ")", 2)
  end
  local binary = options.send_kind(kind)
  if st.state ~= OPEN then return nil, "closed", "closed" end
  local ok, msg, name = st.conn:send(data, binary, nil, st.opts.fragment_size)
  if not ok then return nil, msg, name end
  return flush(st)
end

local function control(name, ws, data)
  local st = priv(ws)
  if data == nil then data = "" end
  if type(data) ~= "string" then
    error(("bad argument #1 to '%s' (string expected, got %s)"):format(name, type(data)), 3)
  end
  if #data > core.CONTROL_MAX then
    error(("bad argument #1 to '%s' (payload over 125 bytes)"):format(name), 3)
  end
  if st.state ~= OPEN then return nil, "closed", "closed" end
  local ok, msg, ename = st.conn[name](st.conn, data)
  if not ok then return nil, msg, ename end
  return flush(st)
end

function methods.ping(ws, data) return control("ping", ws, data) end
function methods.pong(ws, data) return control("pong", ws, data) end


-- Send our close frame (no waiting).
local function start_close(st, code, reason)
  if st.state == OPEN then
    st.conn:close(code, reason)
    enter_closing(st)
    flush(st)
  end
end

-- close([code [, reason]]): the closing handshake, waiting (at most
-- close_timeout) for the peer's close frame; messages still arriving are
-- dropped.  true, or nil, message, "closed" when it did not complete.
function methods.close(ws, code, reason)
  local st = priv(ws)
  code, reason = options.close_args(code, reason)
  start_close(st, code, reason)
  while st.state ~= CLOSED do
    if st.pumping then -- the reader sees the answer
      local left = st.close_deadline - now()
      if left <= 0 then break end
      wait_turn(st, left)
    else
      pump(st, nil, "close")
    end
  end
  if st.state ~= CLOSED then close_timed_out(st) end
  if not st.was_clean then return nil, "the closing handshake did not complete", "closed" end
  return true
end

-- Drop the connection without a closing handshake.  A client's TCP
-- connection closes now; a server's when the handler returns.
function methods.terminate(ws)
  local st = priv(ws)
  finish(st, 1006, "", false)
end

getters.readyState = function(st) return st.state end
getters.bufferedAmount = function(st)
  return (st.conn and st.conn:buffered() or 0) + (st.in_flight or 0)
end
getters.url = function(st) return st.url end
getters.protocol = function(st) return st.protocol end
getters.extensions = function(st) return st.extensions end
getters.closeCode = function(st) return st.state == CLOSED and st.close_code or nil end
getters.closeReason = function(st) return st.state == CLOSED and st.close_reason or nil end

local HANDLERS = {
  onopen = true, onmessage = true, onclose = true, onerror = true, onping = true, onpong = true,
}

function mt.__index(ws, k)
  local m = methods[k]
  if m ~= nil then return m end
  local g = getters[k]
  if g then return g(rawget(ws, PRIV)) end
  return nil
end

function mt.__newindex(ws, k, v)
  if HANDLERS[k] then
    error(("moonws.resty sockets have no %s handler: call receive() in the handler"):format(k), 2)
  elseif getters[k] then
    error(k .. " is read-only", 2)
  end
  rawset(ws, k, v)
end

local STATE_NAMES = { [0] = "CONNECTING", "OPEN", "CLOSING", "CLOSED" }
function mt.__tostring(ws)
  local st = rawget(ws, PRIV)
  return ("moonws.resty.websocket (%s, %s%s)"):format(STATE_NAMES[st.state], st.role,
    st.url ~= "" and ", " .. st.url or "")
end

-- Lua 5.4's `<close>` (OpenResty's LuaJIT has none): start a close.
function mt.__close(ws)
  local st = rawget(ws, PRIV)
  start_close(st, 1000, "")
end

local function new_socket(role, sock, conn, opts, url, protocol, extensions)
  local st = {
    role = role, sock = sock, conn = conn, opts = opts, url = url,
    state = OPEN, protocol = protocol or "", extensions = extensions or "", in_flight = 0,
  }
  if opts.ping_interval then st.next_ping = now() + opts.ping_interval end
  -- From here on, options.timeout bounds each send (nginx's send timer);
  -- reads set their own.
  sock:settimeouts(ms(opts.timeout), ms(opts.timeout), ms(FOREVER))
  return setmetatable({ [PRIV] = st }, mt), st
end

---------------------------------------------------------------- server

-- The plain-HTTP answer to a request we do not upgrade, through nginx's
-- own response path (the connection may stay a keep-alive one).
local function refuse(status, message, headers)
  ngx.status = status
  if status == 405 then ngx.header["Allow"] = "GET" end
  if status == 426 then
    ngx.header["Upgrade"] = "websocket"
    ngx.header["Sec-WebSocket-Version"] = "13"
  end
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  ngx.header["Content-Type"] = "text/plain; charset=utf-8"
  ngx.say(message)
  return nil, ("handshake refused (%d): %s"):format(status, message), "handshake", status
end

local function choose_protocol(wanted, req)
  if type(wanted) == "function" then
    local chosen = wanted(req.protocols, req)
    if chosen ~= nil then
      for _, p in ipairs(req.protocols) do
        if p == chosen then return chosen end
      end
      error(("protocols callback chose '%s', which the client did not offer"):format(
        tostring(chosen)), 0)
    end
    return nil
  end
  if type(wanted) == "string" then wanted = { wanted } end
  if wanted then
    for _, p in ipairs(req.protocols) do
      for _, w in ipairs(wanted) do
        if p == w then return p end
      end
    end
  end
  return nil
end

-- upgrade([options]) -> ws, request | nil, message, "handshake", status.
-- In content_by_lua*, before anything is sent.  The request head nginx
-- read (ngx.req.raw_header) goes through the core's own checks; a request
-- it refuses, or the handshake option refuses, gets its HTTP answer here
-- (400, 426, 403 ...) and the handler should just return.
function resty.upgrade(opts)
  need_ngx("upgrade")
  check_supported(opts, SERVER, "upgrade")
  opts = options.server(opts, "upgrade")
  local ok_head, head = pcall(ngx.req.raw_header)
  if not ok_head or type(head) ~= "string" then
    return refuse(400, "not an HTTP/1.1 request: " .. tostring(head))
  end
  local conn = core.conn("server")
  conn:limits(opts.max_payload, opts.max_frame)
  conn:set_compression(opts.compression)
  conn:budget(opts.max_step_bytes) -- inflated bytes between two yields
  local fed, ferr = conn:feed(head)
  if not fed then
    conn:release()
    return refuse(503, ferr)
  end
  local req, status, why = conn:parse_request(opts.max_handshake)
  if req == nil then status, why = 400, "incomplete request head" end
  if not req then
    conn:release()
    return refuse(status, why)
  end
  local protocol = choose_protocol(opts.protocols, req)
  local extra_headers
  if opts.handshake then
    local verdict, a, b = opts.handshake(req)
    if verdict == false then
      conn:release()
      return refuse(compat.is_integer(a) and a or 403, b or "forbidden")
    end
    if type(a) == "table" then extra_headers = a end
  end
  local answered, extensions = conn:respond_upgrade(req.key, protocol, nil, extra_headers)
  if not answered then -- out of memory: extensions holds the message
    conn:release()
    return refuse(503, extensions)
  end
  req.key = nil
  local sock, err = ngx.req.socket(true)
  if not sock then
    conn:release()
    return nil, "cannot take over the connection: " .. tostring(err), "handshake"
  end
  conn:handshake_done()
  local scheme = ngx.var.https == "on" and "wss://" or "ws://"
  local ws, st = new_socket("server", sock, conn, opts,
    scheme .. (req.headers.host or "") .. req.path, protocol, extensions)
  local ok, message, name = flush(st) -- the 101
  if not ok then return nil, message, name end
  return ws, req
end

---------------------------------------------------------------- client

local function connect_error_name(err)
  err = tostring(err)
  if err == "timeout" then return "timeout" end
  if err:find("refused", 1, true) then return "refused" end
  if err:find("resolve", 1, true) or err:find("resolver", 1, true) then return "resolve" end
  return "io"
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

-- A client certificate through OpenResty's setclientcert (ngx.ssl).
local function set_client_cert(sock, tls)
  local ok_ssl, ssl = pcall(require, "ngx.ssl")
  if not ok_ssl or not sock.setclientcert then
    return nil, "client certificates need OpenResty's tcpsock:setclientcert (ngx.ssl)"
  end
  local cert_pem, err = read_file(tls.cert)
  if not cert_pem then return nil, "cannot read tls.cert: " .. tostring(err) end
  local key_pem
  key_pem, err = read_file(tls.key)
  if not key_pem then return nil, "cannot read tls.key: " .. tostring(err) end
  local cert, key
  cert, err = ssl.parse_pem_cert(cert_pem)
  if not cert then return nil, "bad tls.cert: " .. tostring(err) end
  key, err = ssl.parse_pem_priv_key(key_pem)
  if not key then return nil, "bad tls.key: " .. tostring(err) end
  return sock:setclientcert(cert, key)
end

-- sock:sslhandshake, around a bug of lua-resty-core before its 2026 fix
-- (lua-resty-core #532/#533, lua-nginx-module #2506; Debian 12 has 0.1.25):
-- when the handshake completes at once, a failed certificate check is
-- lost if reused_session is false (it returns true; the next send says
-- "closed"), and trips an assert if it is nil.  So pass nil (a session
-- nobody uses, or nil without an error) and take the assert as the
-- failed check it stands for.  Returns true or nil, message.
local function tls_handshake(sock, servername, verify)
  local ok, session, err = pcall(sock.sslhandshake, sock, nil, servername, verify)
  if not ok then
    if tostring(session):find("assertion failed", 1, true) then
      return nil, "certificate verify failed (chain or host name; nginx gave no detail)"
    end
    error(session, 0)
  end
  if session == nil and err ~= nil then return nil, err end
  return true
end

-- The socket's part of connecting, each step bounded by what is left of
-- options.timeout.  Returns the open socket's pieces or nil, message, name.
local function open_client(sock, conn, u, url, opts)
  local deadline = now() + opts.timeout
  local function left() return math.max(0.001, deadline - now()) end
  local function timed_out()
    return nil, ("connecting to %s timed out after %gs"):format(url, opts.timeout), "timeout"
  end
  sock:settimeouts(ms(left()), ms(left()), ms(left()))
  -- nginx resolves names with its own `resolver` (no /etc/hosts): dial
  -- localhost as the loopback address, keep the name for Host and TLS.
  local dial = u.ipv6 and "[" .. u.host .. "]" or u.host == "localhost" and "127.0.0.1" or u.host
  local ok, err = sock:connect(dial, u.port)
  if not ok then
    if err == "timeout" then return timed_out() end
    return nil, ("cannot connect to %s: %s"):format(url, err), connect_error_name(err)
  end
  if u.secure then
    local tls = opts.tls or {}
    if tls.cert then
      ok, err = set_client_cert(sock, tls)
      if not ok then return nil, err, "tls" end
    end
    sock:settimeouts(ms(left()), ms(left()), ms(left()))
    ok, err = tls_handshake(sock, tls.servername or u.host, tls.verify ~= false)
    if not ok then
      if err == "timeout" then return timed_out() end
      return nil, ("TLS handshake with %s failed: %s"):format(u.host, tostring(err)), "tls"
    end
  end
  local headers = opts.headers
  if u.userinfo then
    headers = {}
    for k, v in pairs(opts.headers or {}) do headers[k] = v end
    headers.Authorization = "Basic " .. core.base64(u.userinfo)
  end
  local offered
  if opts.protocols then
    offered = type(opts.protocols) == "string" and opts.protocols
      or table.concat(opts.protocols, ", ")
  end
  local queued, qerr, qname = conn:request {
    host = u.host_header, target = u.resource, protocols = offered,
    origin = opts.origin, headers = headers,
  }
  if not queued then return nil, "handshake: " .. qerr, qname end
  sock:settimeouts(ms(left()), ms(left()), ms(left()))
  ok, err = sock:send(conn:take_output())
  if not ok then
    if err == "timeout" then return timed_out() end
    return nil, "sending the handshake failed: " .. tostring(err), "io"
  end
  while true do
    local accepted, a, b, _, name = conn:parse_response(opts.max_handshake, offered, false)
    if accepted then return a, b end
    if accepted == false then
      return nil, "handshake failed: " .. a, name or "handshake", b
    end
    sock:settimeouts(ms(left()), ms(left()), ms(left()))
    local data
    data, err = sock:receiveany(opts.max_step_bytes)
    if not data then
      if err == "timeout" then return timed_out() end
      return nil, "the server closed the connection during the handshake"
        .. (err ~= "closed" and ": " .. tostring(err) or ""), "handshake"
    end
    local fed, ferr, fname = conn:feed(data)
    if not fed then return nil, "handshake: " .. ferr, fname end
  end
end

-- connect(url [, options]) -> ws | nil, message, name [, status].
-- Where cosockets exist: rewrite/access/content_by_lua*, ngx.timer.
function resty.connect(url, opts)
  need_ngx("connect")
  if type(url) ~= "string" then
    error("bad argument #1 to 'connect' (URL string expected, got " .. type(url) .. ")", 2)
  end
  local u, why = core.parse_url(url)
  if not u then error(("bad argument #1 to 'connect' (%s: %s)"):format(why, url), 2) end
  check_supported(opts, CLIENT, "connect")
  opts = options.client(opts, "connect")
  local sock = ngx.socket.tcp()
  local conn = core.conn("client")
  conn:limits(opts.max_payload, opts.max_frame)
  conn:set_compression(opts.compression)
  conn:budget(opts.max_step_bytes) -- inflated bytes between two yields
  local protocol, extensions, name, status = open_client(sock, conn, u, url, opts)
  if not protocol then
    sock:close()
    conn:release()
    return nil, extensions, name, status
  end
  conn:handshake_done()
  return (new_socket("client", sock, conn, opts, url, protocol, extensions))
end

return resty

-- moonws.client -- opening a connection, all bounded by options.timeout:
--   name lookup (off the loop thread) -> nonblocking TCP connect (each
--   address in turn) -> [HTTP CONNECT tunnel through a proxy] -> [TLS,
--   verified against the URL's host] -> the opening handshake -> OPEN.

local core = require "moonws.core"
local log = require "moonws.log"
local loop = require "moonws.loop"
local options = require "moonws.options"
local proxy = require "moonws.proxy"
local socket = require "moonws.socket"
local tls = require "moonws.tls"

local now = loop.now

local client = {}

---------------------------------------------------------------- lookups

local resolver            -- created on first use
local lookups = setmetatable({}, { __mode = "v" })  -- id -> st
local resolver_watcher = {}

local try_next_address -- forward

-- Setting up failed: onerror, then onclose with 1006 -- or 1015 when TLS
-- failed, even when TLS 1.3 lets the server's refusal (a client
-- certificate it rejects) arrive only after our side of the handshake.
local function fail_connect(st, message, name)
  socket.abort(st, message, name, name == "tls" and 1015 or nil)
end

function resolver_watcher.on_ready()
  while true do
    local id, addrs, message = resolver:collect()
    if not id then return end
    local st = lookups[id]
    lookups[id] = nil
    if st and st.state == socket.CONNECTING then
      st.lookup_cancel = nil
      if addrs and #addrs > 0 then
        st.addrs, st.addr_index = addrs, 0
        try_next_address(st)
      else
        fail_connect(st, ("cannot resolve host '%s': %s"):format(st.dial_host,
          message or "no address"), "resolve")
      end
    end
  end
end

local function cancel_lookup(st)
  local id = st.lookup_id
  if id and resolver then
    resolver:cancel(id)
    lookups[id] = nil
  end
  st.lookup_id = nil
end

local function start_lookup(st)
  local host, port = st.dial_host, st.dial_port
  local addr = core.numeric_address(host, port)
  if addr then
    st.addrs, st.addr_index = { addr }, 0
    return try_next_address(st)
  end
  if not resolver then
    -- Fails when the process is out of descriptors or threads: this
    -- connection fails, and the next one tries again.
    local r, message, name = core.resolver(4)
    if r then
      local watched
      watched, message, name = loop.watch(r:fd(), resolver_watcher, true, false)
      if watched then resolver = r else r:close() end
    end
    if not resolver then
      return fail_connect(st, ("cannot resolve host '%s': %s"):format(host, message), name)
    end
  end
  local id, message, name = resolver:start(host, port)
  if not id then return fail_connect(st, message, name) end
  st.lookup_id = id
  st.lookup_cancel = cancel_lookup
  lookups[id] = st
end

---------------------------------------------------------------- handshake

local function on_handshake_ready(st, events)
  local got, message, name = socket.handshake_read(st, events)
  if got == nil then return end
  if not got then
    return fail_connect(st, message or "the server closed the connection during the handshake",
      name or "handshake")
  end
  local ok, a, b, _, name = st.conn:parse_response(st.opts.max_handshake, st.offered_protocols,
    false)
  if ok == nil then return end
  if not ok then
    st.status = b
    return fail_connect(st, "handshake: " .. a, name or "handshake")
  end
  socket.opened(st, a, b)
  socket.announce(st, true)
end

local function send_request(st)
  local opts, u = st.opts, st.u
  local headers = opts.headers
  if u.userinfo then
    local h = {}
    for k, v in pairs(headers or {}) do h[k] = v end
    h.Authorization = "Basic " .. core.base64(u.userinfo)
    headers = h
  end
  local ok, message, name = st.conn:request {
    host = u.host_header,
    target = u.resource,
    protocols = st.offered_protocols,
    origin = opts.origin,
    headers = headers,
  }
  if not ok then return fail_connect(st, "handshake: " .. message, name) end
  st.on_ready = on_handshake_ready
  socket.flush(st)
  socket.set_interest(st, true, st.i_write or false)
end

---------------------------------------------------------------- TLS

local function on_tls_ready(st)
  local ok, want = core.tls_handshake(st.conn)
  if ok == true then
    if st.opts.log then log.emit(st, "tls", "handshake done, verified " .. tostring(
      not (st.opts.tls and st.opts.tls.verify == false))) end
    return send_request(st)
  end
  if ok == nil then
    -- 1015 is reported, never sent (RFC 6455 7.4.1).
    return fail_connect(st, ("TLS handshake with %s failed: %s"):format(st.u.host, want), "tls")
  end
  socket.set_interest(st, want == "read", want == "write")
end

local function start_tls(st)
  local servername = st.opts.tls and st.opts.tls.servername or st.u.host
  core.tls_start(st.conn, st.tls_ctx, servername)
  st.tls = true -- TLS may hold decrypted bytes epoll cannot see
  st.on_ready = on_tls_ready
  on_tls_ready(st) -- sends the ClientHello
end

local function after_tunnel(st)
  if st.u.secure then start_tls(st) else send_request(st) end
end

---------------------------------------------------------------- proxies

local function on_proxy_ready(st, events)
  local got, message, name = socket.handshake_read(st, events)
  if got == nil then return end
  if not got then
    return fail_connect(st, message or ("the proxy %s closed the connection"):format(st.proxy.url),
      name or "proxy")
  end
  local ok, status, why = core.proxy_response(st.conn, st.opts.max_handshake)
  if ok == nil then return end
  if not ok then
    st.status = status
    return fail_connect(st, ("proxy %s refused the tunnel to %s: %s"):format(st.proxy.url,
      st.u.authority, why), "proxy")
  end
  after_tunnel(st)
end

local function start_tunnel(st)
  core.proxy_request(st.conn, st.u.authority, st.proxy.authorization)
  st.on_ready = on_proxy_ready
  socket.flush(st)
  socket.set_interest(st, true, st.i_write or false)
end

---------------------------------------------------------------- connecting

local function on_connect_ready(st, events)
  local conn = st.conn
  local ok, message, name = conn:connect_result()
  if ok == nil and message == nil then return end -- not yet
  if not ok then
    st.last_error, st.last_error_name = message, name
    loop.unwatch(st.fd)
    conn:release()
    st.conn, st.fd = nil, nil
    return try_next_address(st)
  end
  if st.opts.log then
    st.peer = conn:peer()
    log.emit(st, "connected", st.proxy and "to proxy " .. st.proxy.url or "tcp")
  end
  if st.proxy then start_tunnel(st) else after_tunnel(st) end
end

function try_next_address(st)
  while true do
    st.addr_index = st.addr_index + 1
    local addr = st.addrs[st.addr_index]
    if not addr then
      local target = st.proxy and "proxy " .. st.proxy.url or st.url
      return fail_connect(st, ("cannot connect to %s: %s"):format(target,
        st.last_error or "no address"), st.last_error_name or "refused")
    end
    local conn, message, name = core.connect(addr)
    if conn then
      conn:set_compression(st.opts.compression)
      socket.attach(st, conn, on_connect_ready, false, true)
      return
    end
    st.last_error, st.last_error_name = message, name
  end
end

local function on_connect_timeout(st)
  st.connect_timer = nil
  if st.state == socket.CONNECTING then
    fail_connect(st, ("connecting to %s timed out after %gs"):format(st.url, st.opts.timeout),
      "timeout")
  end
end

local function start(st)
  if st.state ~= socket.CONNECTING then return end
  if st.setup_error then return fail_connect(st, st.setup_error, st.setup_error_name) end
  if st.opts.log then log.emit(st, "connecting", st.url) end
  start_lookup(st)
end

-- moonws.new(url [, options]): returns at once; connects in the loop.
function client.new(url, opts, caller)
  caller = caller or "new"
  if type(url) ~= "string" then
    error(("bad argument #1 to '%s' (URL string expected, got %s)"):format(caller, type(url)), 3)
  end
  local u, why = core.parse_url(url)
  if not u then
    error(("bad argument #1 to '%s' (%s: %s)"):format(caller, why, url), 3)
  end
  opts = options.client(opts, caller)
  local ws, st = socket.new("client", opts, url)
  st.u = u
  st.proxy = proxy.choose(u, opts)
  local dial = st.proxy or u
  st.dial_host, st.dial_port = dial.host, dial.port
  if u.secure then
    -- A bad CA file is a runtime condition: reported as an error event.
    local ctx, message, name = tls.client_context(opts.tls)
    st.tls_ctx = ctx
    if not ctx then st.setup_error, st.setup_error_name = message, name end
  end
  if opts.protocols then
    local list = type(opts.protocols) == "string" and { opts.protocols } or opts.protocols
    st.offered_protocols = table.concat(list, ", ")
  end
  st.connect_timer = loop.timer(now() + opts.timeout, on_connect_timeout, st)
  -- Start in the next round, so handlers set after new() see every event.
  loop.defer(start, st)
  return ws
end

-- moonws.connect(url [, options]): coroutine style; the open socket, or
-- nil, message, name.
function client.connect(url, opts)
  local ws = client.new(url, opts, "connect")
  local st = socket.priv(ws)
  loop.wait_until(function() return st.state ~= socket.CONNECTING end, nil, st.waiters,
    "connect")
  -- Opened counts even if the server closed at once: its messages and
  -- close code are there for receive() and ws.closeCode.
  if st.was_opened then return ws end
  return nil, st.err_message or "connection failed", st.err_name or "closed"
end

return client

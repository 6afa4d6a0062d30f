-- moonws.client -- opening a connection: URL, name lookup off the loop
-- thread, nonblocking TCP connect (each resolved address in turn), and the
-- client side of the opening handshake, all bounded by options.timeout.

local core = require "moonws.core"
local loop = require "moonws.loop"
local options = require "moonws.options"
local socket = require "moonws.socket"

local now = loop.now

local client = {}

---------------------------------------------------------------- lookups

local resolver            -- created on first use
local lookups = setmetatable({}, { __mode = "v" })  -- id -> st
local resolver_watcher = {}

local try_next_address -- forward

local function fail_connect(st, message, name)
  socket.abort(st, message, name)
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
        fail_connect(st, ("cannot resolve host '%s': %s"):format(st.u.host,
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
  local host, port = st.u.host, st.u.port
  local addr = core.numeric_address(host, port)
  if addr then
    st.addrs, st.addr_index = { addr }, 0
    return try_next_address(st)
  end
  if not resolver then
    resolver = assert(core.resolver(4))
    loop.watch(resolver:fd(), resolver_watcher, true, false)
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
  local ok, a, b = st.conn:parse_response(st.opts.max_handshake, st.offered_protocols, false)
  if ok == nil then return end
  if not ok then
    st.status = b
    return fail_connect(st, "handshake failed: " .. a, "handshake")
  end
  socket.opened(st, a, b)
  socket.announce(st, true)
end

local function host_header(u)
  local host = u.ipv6 and "[" .. u.host .. "]" or u.host
  if u.port_explicit and u.port ~= (u.secure and 443 or 80) then
    host = host .. ":" .. u.port
  end
  return host
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
  st.conn:request {
    host = host_header(u),
    target = u.resource,
    protocols = st.offered_protocols,
    origin = opts.origin,
    headers = headers,
  }
  st.on_ready = on_handshake_ready
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
  send_request(st)
end

function try_next_address(st)
  while true do
    st.addr_index = st.addr_index + 1
    local addr = st.addrs[st.addr_index]
    if not addr then
      return fail_connect(st, ("cannot connect to %s: %s"):format(st.url,
        st.last_error or "no address"), st.last_error_name or "refused")
    end
    local conn, message, name = core.connect(addr)
    if conn then
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
  if st.state == socket.CONNECTING then start_lookup(st) end
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
  if u.secure then
    error(("bad argument #1 to '%s' (wss:// needs TLS, which this build of moonws "
      .. "does not have yet)"):format(caller), 3)
  end
  opts = options.client(opts, caller)
  local ws, st = socket.new("client", opts, url)
  st.u = u
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

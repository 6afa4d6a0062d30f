-- moonws.client -- the client's opening phase on moonws's loop (part of
-- the loop driver, moonws.loop_io), all bounded by options.timeout:
--   name lookup (off the loop thread) -> nonblocking TCP connect (each
--   address in turn) -> [HTTP CONNECT tunnel through a proxy] -> [TLS,
--   verified against the URL's host] -> the opening handshake -> OPEN.
-- What the request says and how the response is judged is the object's
-- handshake policy (moonws.websocket); the connect phase is here.  Its
-- per-socket data lives in st.drv with the rest of the driver's.

local core = require "moonws.core"
local E = require "moonws.errors"
local log = require "moonws.log"
local loop = require "moonws.loop"
local loop_io = require "moonws.loop_io"
local misuse = require "moonws.misuse"
local options = require "moonws.options"
local peer_address = require "moonws.peer_address"
local proxy = require "moonws.proxy"
local redirects = require "moonws.redirects"
local response = require "moonws.response"
local tls = require "moonws.tls"
local websocket = require "moonws.websocket"

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
  websocket.fail(st, message, name, name == E.TLS and 1015 or nil)
end

function resolver_watcher.on_ready()
  while true do
    local id, addrs, message = resolver:collect()
    if not id then return end
    local st = lookups[id]
    lookups[id] = nil
    if st and st.state == websocket.CONNECTING then
      local d = st.drv
      d.lookup_cancel = nil
      if addrs and #addrs > 0 then
        d.addrs, d.addr_index = addrs, 0
        try_next_address(st)
      else
        fail_connect(st, ("cannot resolve host '%s': %s"):format(d.dial_host,
          message or "no address"), E.RESOLVE)
      end
    end
  end
end

local function cancel_lookup(st)
  local d = st.drv
  local id = d.lookup_id
  if id and resolver then
    resolver:cancel(id)
    lookups[id] = nil
  end
  d.lookup_id, d.lookup_cancel = nil, nil
end

local function start_lookup(st)
  local d = st.drv
  local host, port = d.dial_host, d.dial_port
  local addr = core.numeric_address(host, port)
  if addr then
    d.addrs, d.addr_index = { addr }, 0
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
  d.lookup_id = id
  d.lookup_cancel = cancel_lookup
  lookups[id] = st
end

---------------------------------------------------------------- handshake

local follow -- forward

-- What a refused handshake's body can take from the conn at once.
local BODY_READ = 4 * core.HANDSHAKE_BODY_MAX

-- The refusal is complete (its body, or the connection ended, or the
-- connect timeout came): fail with its status, headers and body.
local function refused(st)
  local d = st.drv
  websocket.fail_refused(st, d.refusal_message, d.refusal_name, response.result(d.response))
end

local function on_body_ready(st, events)
  local got = loop_io.handshake_read(st, events)
  if got == nil then return end
  if not got or response.feed(st.drv.response, st.conn:take_input(BODY_READ)) then
    return refused(st)
  end
end

-- An HTTP answer other than 101: a redirect to follow, or a refusal
-- whose body is read (bounded) before the connection fails.
local function answered(st, status, headers, why, ename)
  local d = st.drv
  if st.opts.follow_redirects then
    local target, next_u, rname = redirects.next(st.url, d.u, status, headers)
    if target then return follow(st, target, next_u) end
    if next_u then return fail_connect(st, next_u, rname) end
  end
  d.response, d.refusal_message, d.refusal_name = response.new(status, headers), why, ename
  loop_io.set_phase(st, on_body_ready)
  if response.feed(d.response, st.conn:take_input(BODY_READ)) then return refused(st) end
end

local function on_handshake_ready(st, events)
  local got, message, name = loop_io.handshake_read(st, events)
  if got == nil then return end
  if not got then
    return fail_connect(st, message or "the server closed the connection during the handshake",
      name or E.HANDSHAKE)
  end
  local ok, why, ename, status, headers = websocket.check_response(st)
  if ok == nil then return end
  if not ok then
    if status and status ~= 101 then return answered(st, status, headers, why, ename) end
    return fail_connect(st, why, ename)
  end
  loop_io.open_phase(st)
  websocket.announce(st, true)
end

local function send_request(st)
  local d = st.drv
  local ok, message, name = st.conn:request(websocket.request_spec(d.u, d.request_opts))
  if not ok then return fail_connect(st, "handshake: " .. message, name) end
  loop_io.set_phase(st, on_handshake_ready)
  loop_io.write(st)
  loop_io.set_interest(st, true, loop_io.writing(st))
end

---------------------------------------------------------------- TLS

local function on_tls_ready(st)
  local d = st.drv
  local ok, want = core.tls_handshake(st.conn)
  if ok == true then
    if st.opts.log then log.emit(st, "tls", "handshake done, verified " .. tostring(
      not (st.opts.tls and st.opts.tls.verify == false))) end
    return send_request(st)
  end
  if ok == nil then
    -- 1015 is reported, never sent (RFC 6455 7.4.1).
    return fail_connect(st, ("TLS handshake with %s failed: %s"):format(d.u.host, want), E.TLS)
  end
  loop_io.set_interest(st, want == "read", want == "write")
end

local function start_tls(st)
  local d = st.drv
  local servername = st.opts.tls and st.opts.tls.servername or d.u.host
  core.tls_start(st.conn, d.tls_ctx, servername)
  d.tls = true -- TLS may hold decrypted bytes epoll cannot see
  loop_io.set_phase(st, on_tls_ready)
  on_tls_ready(st) -- sends the ClientHello
end

local function after_tunnel(st)
  if st.drv.u.secure then start_tls(st) else send_request(st) end
end

---------------------------------------------------------------- proxies

local function on_proxy_ready(st, events)
  local d = st.drv
  local got, message, name = loop_io.handshake_read(st, events)
  if got == nil then return end
  if not got then
    return fail_connect(st, message or ("the proxy %s closed the connection"):format(d.proxy.url),
      name or E.PROXY)
  end
  local ok, status, why = core.proxy_response(st.conn, st.opts.max_handshake)
  if ok == nil then return end
  if not ok then
    d.status = status
    return fail_connect(st, ("proxy %s refused the tunnel to %s: %s"):format(d.proxy.url,
      d.u.authority, why), E.PROXY)
  end
  after_tunnel(st)
end

local function start_tunnel(st)
  local d = st.drv
  core.proxy_request(st.conn, d.u.authority, d.proxy.authorization)
  loop_io.set_phase(st, on_proxy_ready)
  loop_io.write(st)
  loop_io.set_interest(st, true, loop_io.writing(st))
end

---------------------------------------------------------------- connecting

local function on_connect_ready(st)
  local conn, d = st.conn, st.drv
  local ok, message, name = conn:connect_result()
  if ok == nil and message == nil then return end -- not yet
  if not ok then
    d.last_error, d.last_error_name = message, name
    loop_io.detach(st)
    return try_next_address(st)
  end
  local peer = conn:peer()
  websocket.set_remote(st, peer_address.split(peer))
  if st.opts.log then
    log.emit(st, "connected", d.proxy and "to proxy " .. d.proxy.url or "tcp")
  end
  if d.proxy then start_tunnel(st) else after_tunnel(st) end
end

function try_next_address(st)
  local d = st.drv
  while true do
    d.addr_index = d.addr_index + 1
    local addr = d.addrs[d.addr_index]
    if not addr then
      local target = d.proxy and "proxy " .. d.proxy.url or st.url
      return fail_connect(st, ("cannot connect to %s: %s"):format(target,
        d.last_error or "no address"), d.last_error_name or E.REFUSED)
    end
    local conn, message, name = core.connect(addr)
    if conn then
      loop_io.attach(st, conn, on_connect_ready, false, true)
      return
    end
    d.last_error, d.last_error_name = message, name
  end
end

local function on_connect_timeout(st)
  if st.state ~= websocket.CONNECTING then return end
  if st.drv.response then return refused(st) end -- a refusal's body, cut short
  fail_connect(st, ("connecting to %s timed out after %gs"):format(st.url, st.opts.timeout),
    E.TIMEOUT)
end

local function start(st)
  if st.state ~= websocket.CONNECTING then return end
  local d = st.drv
  if d.setup_error then return fail_connect(st, d.setup_error, d.setup_error_name) end
  if st.opts.log then log.emit(st, "connecting", st.url) end
  start_lookup(st)
end

-- Where to connect for the parsed URL u (the first, or a redirect's).
local function aim(st, u)
  local d = st.drv
  d.u = u
  d.proxy = proxy.choose(u, st.opts)
  local dial = d.proxy or u
  d.dial_host, d.dial_port = dial.host, dial.port
  d.tls_ctx, d.tls, d.setup_error, d.setup_error_name = nil, nil, nil, nil
  d.addrs, d.addr_index, d.last_error, d.last_error_name = nil, nil, nil, nil
  if u.secure then
    -- A bad CA file is a runtime condition: reported as an error event.
    local ctx, message, name = tls.client_context(st.opts.tls)
    d.tls_ctx = ctx
    if not ctx then d.setup_error, d.setup_error_name = message, name end
  end
end

-- follow_redirects: a new connection for url (parsed: u), within the same
-- connect timeout (moonws.redirects).
function follow(st, url, u)
  local d = st.drv
  d.redirects = (d.redirects or 0) + 1
  if d.redirects > st.opts.max_redirects then
    return fail_connect(st, ("too many redirects (max_redirects = %d), the last to %s"):format(
      st.opts.max_redirects, url), E.HANDSHAKE)
  end
  if st.opts.log then log.emit(st, "redirect", url) end
  d.request_opts = redirects.request_options(d.request_opts, d.u, u)
  loop_io.detach(st)
  websocket.set_url(st, url)
  local aimed, err = pcall(aim, st, u) -- a bad https_proxy setting raises
  if not aimed then return fail_connect(st, tostring(err), E.PROXY) end
  start(st)
end

-- moonws.new(url [, options]): returns at once; connects in the loop.
function client.new(url, opts, caller)
  caller = caller or "new"
  if type(url) ~= "string" then
    misuse.arg(1, caller, "URL string expected, got " .. type(url))
  end
  local u, why = core.parse_url(url)
  if not u then
    misuse.arg(1, caller, why .. ": " .. url)
  end
  opts = options.client(opts, caller)
  local ws, st = loop_io.new("client", opts, url)
  st.drv.request_opts = opts
  aim(st, u)
  websocket.arm_connect_timer(st, on_connect_timeout)
  -- Start in the next round, so handlers set after new() see every event.
  loop.defer(start, st)
  return ws
end

-- moonws.connect(url [, options]): coroutine style; the open socket, or
-- nil, message, name.
function client.connect(url, opts)
  local ws = client.new(url, opts, "connect")
  local st = websocket.priv(ws)
  loop_io.wait(st, function() return st.state ~= websocket.CONNECTING end, nil, "connect")
  -- Opened counts even if the server closed at once: its messages and
  -- close code are there for receive() and ws.closeCode.
  if st.was_opened then return ws end
  return nil, st.err_message or "connection failed", st.err_name or E.CLOSED,
    websocket.refusal(st)
end

return client

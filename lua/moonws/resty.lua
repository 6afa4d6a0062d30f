-- moonws.resty -- moonws inside nginx (OpenResty's lua-nginx-module):
-- the same WebSocket object as moonws's loop (moonws.websocket), on the
-- cosocket driver (moonws.resty_io, where every difference from the loop
-- is written down with its reason).
--
--   upgrade([options])     in a content_by_lua handler: answer the request's
--                          upgrade on the raw request socket -> ws, request
--   connect(url [, opts])  a client on ngx.socket.tcp (wss:// through the
--                          cosocket's sslhandshake) -> ws
--
-- Only the I/O and the phases before OPEN live here and in resty_io:
-- framing, masking, UTF-8 checks, close codes, the handshake's checks and
-- permessage-deflate are the C core's, and the object's API, state and
-- handshake policy are moonws.websocket's, exactly as on moonws's loop.
-- Errors as in moonws: runtime conditions return nil, message, name
-- (moonws.errors), misuse raises.

local core = require "moonws.core"
local E = require "moonws.errors"
local compat = require "moonws.compat"
local misuse = require "moonws.misuse"
local options = require "moonws.options"
local peer_address = require "moonws.peer_address"
local redirects = require "moonws.redirects"
local response = require "moonws.response"
local resty_io = require "moonws.resty_io"
local websocket = require "moonws.websocket"

local ngx = ngx -- luacheck: ignore (the nginx global)

local now, ms = resty_io.now, resty_io.ms

local resty = {
  CONNECTING = websocket.CONNECTING, OPEN = websocket.OPEN, CLOSING = websocket.CLOSING,
  CLOSED = websocket.CLOSED, codes = core.codes, errors = core.errors,
}

local function need_ngx(caller)
  if type(ngx) ~= "table" or not ngx.socket then
    misuse.raise(("moonws.resty.%s runs inside nginx (lua-nginx-module / OpenResty)"):format(caller))
  end
end

---------------------------------------------------------------- options

-- What a cosocket front can honour.  The others belong to moonws's own
-- loop (send_buffer, max_queue ...) or to nginx.conf (TLS files, proxies).
local COMMON = {
  timeout = true, close_timeout = true, max_payload = true, max_frame = true,
  max_handshake = true, compression = true, headers = true, protocols = true,
  ping_interval = true, ping_timeout = true, fragment_size = true, max_step_bytes = true,
  -- what the shared object gives both fronts
  send_limit = true, send_timeout = true, max_queue = true, max_step_events = true, log = true,
}
local SERVER = setmetatable({ handshake = true, trusted_proxies = true, forwarded_header = true },
  { __index = COMMON })
local CLIENT = setmetatable({ origin = true, tls = true, follow_redirects = true,
  max_redirects = true }, { __index = COMMON })
local CLIENT_TLS = { verify = true, servername = true, cert = true, key = true }

local HINTS = {
  tls = " (nginx terminates TLS: 'listen ... ssl' with ssl_certificate)",
  cafile = " (set lua_ssl_trusted_certificate in nginx.conf)",
  capath = " (set lua_ssl_trusted_certificate in nginx.conf)",
  ciphers = " (set lua_ssl_ciphers in nginx.conf)",
  proxy = " (cosockets connect directly)",
  proxy_protocol = " (nginx reads it: 'listen ... proxy_protocol' with set_real_ip_from and"
    .. " real_ip_header proxy_protocol; ngx.var.remote_addr is then the client)",
}

local function check_supported(given, allowed, caller)
  if type(given) ~= "table" then return end -- options.* names the type error
  for k in pairs(given) do
    if not allowed[k] then
      misuse.raise(("option '%s' is not supported by moonws.resty.%s%s"):format(tostring(k),
        caller, caller == "upgrade" and HINTS[k] or k == "proxy" and HINTS[k] or ""))
    end
  end
  if caller == "connect" and type(given.tls) == "table" then
    for k in pairs(given.tls) do
      if not CLIENT_TLS[k] then
        misuse.raise(("option 'tls.%s' is not supported by moonws.resty.connect%s"):format(
          tostring(k), HINTS[k] or ""))
      end
    end
    if (given.tls.cert == nil) ~= (given.tls.key == nil) then
      misuse.raise("option 'tls' needs both cert and key for a client certificate")
    end
  end
end

---------------------------------------------------------------- server

-- The plain-HTTP answer to a request we do not upgrade, through nginx's
-- own response path (the connection may stay a keep-alive one); the body
-- is body, else the message.  conn (when there is one) checks the headers
-- a handshake callback gave as the loop's server would: one that cannot
-- be sent (a name the handshake owns, a bad value) is reported and left
-- out.
local function refuse(status, message, headers, body, conn)
  if headers and conn then
    local ok, err = pcall(conn.respond_refusal, conn, status, nil, headers, nil)
    if not ok then
      resty_io.report("headers left out of a refusal: " .. tostring(err))
      headers = nil
    end
  end
  if conn then conn:release() end
  ngx.status = status
  if status == 405 then ngx.header["Allow"] = "GET" end
  if status == 426 then
    ngx.header["Upgrade"] = "websocket"
    ngx.header["Sec-WebSocket-Version"] = "13"
  end
  ngx.header["Content-Type"] = "text/plain; charset=utf-8"
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  if body then ngx.print(body) elseif message then ngx.say(message) end
  return nil, ("handshake refused (%d): %s"):format(status, message or ""), E.HANDSHAKE, status
end

local TIMED_OUT = {}

-- websocket.accept, whose handshake callback may wait (ngx.sleep,
-- cosockets, ngx.thread): in a light thread of its own, bounded by
-- options.timeout.  Past it the thread is killed and the request answered
-- 503 (nginx has no way to drop it unanswered from here).
local function accept_within(opts, conn, req)
  if not opts.handshake then
    return websocket.accept(opts, conn, req, resty_io.report, resty_io.traceback)
  end
  local worker = ngx.thread.spawn(websocket.accept, opts, conn, req, resty_io.report,
    resty_io.traceback)
  local timer = ngx.thread.spawn(function()
    ngx.sleep(opts.timeout)
    return TIMED_OUT
  end)
  local r = compat.pack(ngx.thread.wait(worker, timer))
  ngx.thread.kill(worker)
  ngx.thread.kill(timer)
  if not r[1] then
    resty_io.report("error in handshake callback: " .. tostring(r[2]))
    return false, 500, "internal error"
  end
  if r[2] == TIMED_OUT then
    resty_io.report(("handshake callback still running after timeout (%gs)"):format(opts.timeout))
    return false, 503, "handshake timed out"
  end
  return compat.unpack(r, 2, r.n)
end

-- upgrade([options]) -> ws, request | nil, message, "handshake", status.
-- In content_by_lua*, before anything is sent.  The request head nginx
-- read (ngx.req.raw_header) goes through the core's own checks; a request
-- it refuses, or the handshake option refuses, gets its HTTP answer here
-- (400, 426, 403 ...) and the handler should just return.  The client's
-- address is ngx.var.remote_addr and remote_port (what nginx's realip
-- module made of them, when it is set up), or, behind trusted_proxies,
-- what the forwarding header says (moonws.peer_address).
function resty.upgrade(opts)
  need_ngx("upgrade")
  check_supported(opts, SERVER, "upgrade")
  opts = options.server(opts, "upgrade")
  local ok_head, head = pcall(ngx.req.raw_header)
  if not ok_head or type(head) ~= "string" then
    return refuse(400, "not an HTTP/1.1 request: " .. tostring(head))
  end
  local conn = core.conn("server")
  websocket.configure(conn, opts)
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
  local address, port = peer_address.client(
    peer_address.canonical(ngx.var.remote_addr or "") or ngx.var.remote_addr,
    tonumber(ngx.var.remote_port), req.headers, opts)
  req.remote_address, req.remote_port = address, port
  local ok, protocol, extensions, headers, body = accept_within(opts, conn, req)
  if not ok then return refuse(protocol, extensions, headers, body, conn) end
  local sock, err = ngx.req.socket(true)
  if not sock then
    conn:release()
    return nil, "cannot take over the connection: " .. tostring(err), E.HANDSHAKE
  end
  local scheme = ngx.var.https == "on" and "wss://" or "ws://"
  local ws, st = resty_io.new("server", opts, scheme .. (req.headers.host or "") .. req.path,
    sock, conn)
  websocket.opened(st, protocol, extensions)
  websocket.set_remote(st, address, port)
  local sent, message, name = resty_io.flush(st) -- the 101
  if not sent then return nil, message, name end
  return ws, req
end

---------------------------------------------------------------- client

local function connect_error_name(err)
  err = tostring(err)
  if err == "timeout" then return E.TIMEOUT end
  if err:find("refused", 1, true) then return E.REFUSED end
  if err:find("resolve", 1, true) or err:find("resolver", 1, true) then return E.RESOLVE end
  return E.IO
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

-- What a refusal's body can take from the conn at once.
local BODY_READ = 4 * core.HANDSHAKE_BODY_MAX

-- After an HTTP answer other than 101 (status, headers): nil, nil, nil,
-- nil, nil, nil, url, u for a redirect to follow; else the refusal's body
-- is read (bounded, until deadline) and nil, message, name, status,
-- headers, body returned.
local function answered(sock, conn, u, url, opts, deadline, message, name, status, headers)
  if opts.follow_redirects then
    local target, next_u, rname = redirects.next(url, u, status, headers)
    if target then return nil, nil, nil, nil, nil, nil, target, next_u end
    if next_u then return nil, next_u, rname end
  end
  local r = response.new(status, headers)
  local done = response.feed(r, conn:take_input(BODY_READ))
  while not done and now() < deadline do
    sock:settimeouts(ms(deadline - now()), ms(deadline - now()), ms(deadline - now()))
    local data = sock:receiveany(BODY_READ)
    if not data then break end
    done = response.feed(r, data)
  end
  return nil, message, name, response.result(r)
end

-- Connect, TLS and the opening handshake to url (parsed: u; the request
-- from request_opts), each step bounded by what is left until deadline.
-- ws or nil, message, name [, status, headers, body], or (follow_redirects)
-- nil, nil, nil, nil, nil, nil, next url, its parse.
local function open_client(sock, conn, u, url, opts, request_opts, deadline)
  local function left() return math.max(0.001, deadline - now()) end
  local function timed_out()
    return nil, ("connecting to %s timed out after %gs"):format(url, opts.timeout), E.TIMEOUT
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
      if not ok then return nil, err, E.TLS end
    end
    sock:settimeouts(ms(left()), ms(left()), ms(left()))
    ok, err = tls_handshake(sock, tls.servername or u.host, tls.verify ~= false)
    if not ok then
      if err == "timeout" then return timed_out() end
      return nil, ("TLS handshake with %s failed: %s"):format(u.host, tostring(err)), E.TLS
    end
  end
  local queued, qerr, qname = conn:request(websocket.request_spec(u, request_opts))
  if not queued then return nil, "handshake: " .. qerr, qname end
  sock:settimeouts(ms(left()), ms(left()), ms(left()))
  ok, err = sock:send(conn:take_output())
  if not ok then
    if err == "timeout" then return timed_out() end
    return nil, "sending the handshake failed: " .. tostring(err), E.IO
  end
  local ws, st = resty_io.new("client", opts, url, sock, conn)
  while true do
    local accepted, message, name, status, headers = websocket.check_response(st)
    if accepted then return ws end
    if accepted == false then
      if status and status ~= 101 then
        return answered(sock, conn, u, url, opts, deadline, message, name, status, headers)
      end
      return nil, message, name
    end
    sock:settimeouts(ms(left()), ms(left()), ms(left()))
    local data
    data, err = sock:receiveany(opts.max_step_bytes)
    if not data then
      if err == "timeout" then return timed_out() end
      return nil, "the server closed the connection during the handshake"
        .. (err ~= "closed" and ": " .. tostring(err) or ""), E.HANDSHAKE
    end
    local fed, ferr, fname = conn:feed(data)
    if not fed then return nil, "handshake: " .. ferr, fname end
  end
end

-- connect(url [, options]) -> ws | nil, message, name [, status, headers,
-- body] (an HTTP refusal).  Where cosockets exist:
-- rewrite/access/content_by_lua*, ngx.timer.
function resty.connect(url, opts)
  need_ngx("connect")
  if type(url) ~= "string" then
    misuse.arg(1, "connect", "URL string expected, got " .. type(url))
  end
  local u, why = core.parse_url(url)
  if not u then misuse.arg(1, "connect", why .. ": " .. url) end
  check_supported(opts, CLIENT, "connect")
  opts = options.client(opts, "connect")
  local deadline, request_opts, hops = now() + opts.timeout, opts, 0
  while true do
    local sock = ngx.socket.tcp()
    local conn = core.conn("client")
    websocket.configure(conn, opts)
    local r = compat.pack(open_client(sock, conn, u, url, opts, request_opts, deadline))
    if r[1] then return r[1] end
    sock:close()
    conn:release()
    if not r[7] then return compat.unpack(r, 1, 6) end
    hops = hops + 1 -- follow_redirects (moonws.redirects)
    if hops > opts.max_redirects then
      return nil, ("too many redirects (max_redirects = %d), the last to %s"):format(
        opts.max_redirects, r[7]), E.HANDSHAKE
    end
    request_opts = redirects.request_options(request_opts, u, r[8])
    url, u = r[7], r[8]
  end
end

return resty

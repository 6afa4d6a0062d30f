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
local misuse = require "moonws.misuse"
local options = require "moonws.options"
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
  return nil, ("handshake refused (%d): %s"):format(status, message), E.HANDSHAKE, status
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
  local ok, protocol, extensions, headers = websocket.accept(opts, conn, req, resty_io.report,
    resty_io.traceback)
  if not ok then
    conn:release()
    return refuse(protocol, extensions, headers)
  end
  local sock, err = ngx.req.socket(true)
  if not sock then
    conn:release()
    return nil, "cannot take over the connection: " .. tostring(err), E.HANDSHAKE
  end
  local scheme = ngx.var.https == "on" and "wss://" or "ws://"
  local ws, st = resty_io.new("server", opts, scheme .. (req.headers.host or "") .. req.path,
    sock, conn)
  websocket.opened(st, protocol, extensions)
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

-- Connect, TLS and the opening handshake, each step bounded by what is
-- left of options.timeout.  ws or nil, message, name [, status].
local function open_client(sock, conn, u, url, opts)
  local deadline = now() + opts.timeout
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
  local queued, qerr, qname = conn:request(websocket.request_spec(u, opts))
  if not queued then return nil, "handshake: " .. qerr, qname end
  sock:settimeouts(ms(left()), ms(left()), ms(left()))
  ok, err = sock:send(conn:take_output())
  if not ok then
    if err == "timeout" then return timed_out() end
    return nil, "sending the handshake failed: " .. tostring(err), E.IO
  end
  local ws, st = resty_io.new("client", opts, url, sock, conn)
  while true do
    local accepted, message, name, status = websocket.check_response(st)
    if accepted then return ws end
    if accepted == false then return nil, message, name, status end
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

-- connect(url [, options]) -> ws | nil, message, name [, status].
-- Where cosockets exist: rewrite/access/content_by_lua*, ngx.timer.
function resty.connect(url, opts)
  need_ngx("connect")
  if type(url) ~= "string" then
    misuse.arg(1, "connect", "URL string expected, got " .. type(url))
  end
  local u, why = core.parse_url(url)
  if not u then misuse.arg(1, "connect", why .. ": " .. url) end
  check_supported(opts, CLIENT, "connect")
  opts = options.client(opts, "connect")
  local sock = ngx.socket.tcp()
  local conn = core.conn("client")
  websocket.configure(conn, opts)
  local ws, message, name, status = open_client(sock, conn, u, url, opts)
  if not ws then
    sock:close()
    conn:release()
    return nil, message, name, status
  end
  return ws
end

return resty

-- Who the client is (issue 16): request.remote_address/remote_port and
-- ws.remote_address/remote_port, IPv4 and IPv6; behind HAProxy sending
-- the PROXY protocol (v1 and v2, plain and with TLS passed through);
-- behind nginx writing X-Forwarded-For (and Forwarded) for a trusted and
-- an untrusted peer.  Clients are Python's websockets bound to a source
-- address of their own (127.0.0.2, ::1), so the address the server
-- reports is not the proxy's.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local haproxy = require "spec.support.haproxy"
local nginx = require "spec.support.nginx"
local rawpeer = require "spec.support.rawpeer"
local certs = require "spec.support.certs"
local json = require "dkjson"
local ws_client = require "spec.support.ws_client"

local track, cleanup = process.tracker()
after_each(cleanup)

-- A server that answers "who" with what it learnt: the request's and the
-- socket's address and port.  opts are moonws.listen options.
local function who_server(opts)
  local o = { host = "127.0.0.1", port = 0 }
  for k, v in pairs(opts or {}) do o[k] = v end
  local seen = {}
  local srv = assert(moonws.serve(o, function(ws, request)
    local data = ws:receive(10)
    if data then
      local t = { request.remote_address, request.remote_port, ws.remote_address,
        ws.remote_port }
      seen[#seen + 1] = t
      ws:send(json.encode({ address = t[1], port = t[2], ws_address = t[3], ws_port = t[4] }))
    end
    ws:close()
  end))
  return srv, seen
end

-- Run ws_client.py (args: a list) to the end; its JSON result.
local function python_client(args) return ws_client.run(track, args) end

-- The server's view, decoded from the client's reply.
local function seen_by_server(result)
  assert.equal("open", result.event, result.error)
  return json.decode(result.reply)
end

describe("the peer's address without a proxy", function()
  it("IPv4: the client's own address and port, on the request and the socket", function()
    local srv = who_server()
    local got = seen_by_server(python_client { "ws://127.0.0.1:" .. srv.port .. "/",
      "--source", "127.0.0.2" })
    srv:close()
    -- what python printed as its own end of the connection
    local r = got
    assert.equal("127.0.0.2", r.address)
    assert.equal("127.0.0.2", r.ws_address)
    assert.is_number(r.port)
    assert.equal(r.port, r.ws_port)
  end)

  it("IPv4 and IPv6: the port too, as the client's socket had it", function()
    for _, case in ipairs { { "127.0.0.1", "127.0.0.2" }, { "::1", "::1" } } do
      local srv = who_server { host = case[1] }
      local host = case[1]:find(":", 1, true) and "[" .. case[1] .. "]" or case[1]
      local result = python_client { ("ws://%s:%d/"):format(host, srv.port), "--source", case[2] }
      srv:close()
      local got = seen_by_server(result)
      assert.same({ case[2], result["local"][2] }, { got.address, got.port })
      assert.same({ case[2], result["local"][2] }, { got.ws_address, got.ws_port })
    end
  end)

  it("a client's socket knows the server's address", function()
    local srv = assert(moonws.listen { host = "::1", port = 0 })
    local ws = assert(moonws.connect("ws://[::1]:" .. srv.port .. "/"))
    assert.same({ "::1", srv.port }, { ws.remote_address, ws.remote_port })
    ws:close()
    srv:close()
  end)
end)

describe("behind HAProxy with the PROXY protocol", function()
  for _, send in ipairs { "send-proxy", "send-proxy-v2" } do
    for _, family in ipairs { { "127.0.0.1", "127.0.0.2" }, { "::1", "::1" } } do
      it(("%s, a client on %s"):format(send, family[2]), function()
        local srv = who_server { proxy_protocol = true }
        local h = haproxy.start { backend = srv.port, send = send, bind = { family[1] } }
        local host = family[1]:find(":", 1, true) and "[" .. family[1] .. "]" or family[1]
        local ok, err = pcall(function()
          local result = python_client { ("ws://%s:%d/"):format(host, h.port),
            "--source", family[2] }
          local got = seen_by_server(result)
          -- HAProxy's own connection comes from 127.0.0.1; the header names the client
          assert.same({ family[2], result["local"][2] }, { got.address, got.port })
          assert.same({ family[2], result["local"][2] }, { got.ws_address, got.ws_port })
        end)
        h:stop()
        srv:close()
        if not ok then error(err, 0) end
      end)
    end
  end

  it("send-proxy-v2 in front of a wss:// server: the header comes before TLS", function()
    local c = certs.get()
    local srv = who_server { proxy_protocol = true, tls = { cert = c.server_cert, key = c.server_key } }
    local h = haproxy.start { backend = srv.port, send = "send-proxy-v2" }
    local ok, err = pcall(function()
      local result = python_client { "wss://localhost:" .. h.port .. "/", "--source", "127.0.0.2",
        "--connect", "127.0.0.1:" .. h.port, "--cafile", c.ca }
      local got = seen_by_server(result)
      assert.same({ "127.0.0.2", result["local"][2] }, { got.address, got.port })
    end)
    h:stop()
    srv:close()
    if not ok then error(err, 0) end
  end)
end)

describe("proxy_protocol = true against hand-made headers", function()
  -- The raw peer sends hex bytes, then a handshake; the server's view.
  local function raw(hex, opts)
    local o = { proxy_protocol = true }
    for k, v in pairs(opts or {}) do o[k] = v end
    local srv = assert(moonws.listen(o))
    local conns = {}
    srv.onconnection = function(ws, request)
      conns[#conns + 1] = { request.remote_address, request.remote_port }
      ws:close()
    end
    local steps = {}
    if hex then steps[1] = { send_raw_hex = hex } end
    steps[#steps + 1] = { handshake = { timeout = 3 } }
    local p = track(rawpeer.client(srv.port, steps))
    local events = rawpeer.finish(p, 10, helpers.idle)
    helpers.idle(0.05)
    srv:close()
    return rawpeer.select(events, "response")[1], conns
  end

  local function v1(line) return rawpeer.hex(line) end
  local V2 = "0d0a0d0a000d0a515549540a"

  it("a v1 header: its source", function()
    local res, conns = raw(v1("PROXY TCP4 192.0.2.7 127.0.0.1 4711 80\r\n"))
    assert.equal(101, res.status)
    assert.same({ { "192.0.2.7", 4711 } }, conns)
  end)

  it("a v2 LOCAL header (a health check) keeps the socket's address", function()
    local res, conns = raw(V2 .. "20000000")
    assert.equal(101, res.status)
    assert.equal("127.0.0.1", conns[1][1])
    assert.is_number(conns[1][2])
  end)

  it("no header: the connection is closed, nothing answered, no connection handed over", function()
    local res, conns = raw(nil)
    assert.is_nil(res.status)
    assert.same({}, conns)
  end)

  it("a malformed header: closed the same way", function()
    local res, conns = raw(v1("PROXY TCP4 192.0.2.300 127.0.0.1 4711 80\r\n"))
    assert.is_nil(res.status)
    assert.same({}, conns)
  end)

  it("with trusted_proxies, only a trusted peer may send one", function()
    local res, conns = raw(v1("PROXY TCP4 192.0.2.7 127.0.0.1 4711 80\r\n"),
      { trusted_proxies = { "10.0.0.0/8" } })
    assert.is_nil(res.status)
    assert.same({}, conns)
    res, conns = raw(v1("PROXY TCP4 192.0.2.7 127.0.0.1 4711 80\r\n"),
      { trusted_proxies = { "127.0.0.0/8" } })
    assert.equal(101, res.status)
    assert.same({ { "192.0.2.7", 4711 } }, conns)
  end)
end)

describe("behind nginx writing X-Forwarded-For", function()
  local function proxy_to(port, extra)
    return nginx.start { proxy_only = true, server = ([[
    location / {
      proxy_pass http://127.0.0.1:%d;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      %s
    }]]):format(port, extra or "") }
  end

  -- The server's view of a client on 127.0.0.2 that goes through nginx
  -- (with headers it adds itself: a forged X-Forwarded-For, say).
  local function through_nginx(opts, headers, extra)
    local srv = who_server(opts)
    local n = proxy_to(srv.port, extra)
    local args = { "ws://127.0.0.1:" .. n.port .. "/", "--source", "127.0.0.2" }
    for _, h in ipairs(headers or {}) do
      args[#args + 1] = "--header"
      args[#args + 1] = h
    end
    local ok, result = pcall(python_client, args)
    n:stop()
    srv:close()
    if not ok then error(result, 0) end
    return seen_by_server(result), result
  end

  it("nginx trusted: the client's address", function()
    local got = through_nginx { trusted_proxies = { "127.0.0.1" } }
    assert.equal("127.0.0.2", got.address)
    assert.equal("127.0.0.2", got.ws_address)
    assert.is_nil(got.port) -- X-Forwarded-For names no port
  end)

  it("nginx trusted, a forged X-Forwarded-For from the client: still the client's", function()
    local got = through_nginx({ trusted_proxies = { "127.0.0.1" } },
      { "X-Forwarded-For:6.6.6.6, 127.0.0.1" })
    assert.equal("127.0.0.2", got.address)
  end)

  it("nginx not trusted: nginx's own address, the header ignored", function()
    local got = through_nginx({ trusted_proxies = { "10.0.0.0/8" } }, { "X-Forwarded-For:6.6.6.6" })
    assert.equal("127.0.0.1", got.address)
    assert.is_number(got.port)
  end)

  it("no trusted_proxies: nginx's own address", function()
    local got = through_nginx(nil, { "X-Forwarded-For:6.6.6.6" })
    assert.equal("127.0.0.1", got.address)
  end)

  it("forwarded_header = 'forwarded': RFC 7239, with a port; X-Forwarded-For ignored", function()
    local got, result = through_nginx({ trusted_proxies = { "127.0.0.1" },
      forwarded_header = "forwarded" }, { "X-Forwarded-For:6.6.6.6" },
      [[proxy_set_header Forwarded 'for="$remote_addr:$remote_port"';]])
    assert.same({ "127.0.0.2", result["local"][2] }, { got.address, got.port })
  end)

  it("a client that is not a trusted proxy cannot name an address (direct)", function()
    local srv = who_server { trusted_proxies = { "127.0.0.1" } }
    local result = python_client { "ws://127.0.0.1:" .. srv.port .. "/", "--source", "127.0.0.2",
      "--header", "X-Forwarded-For:6.6.6.6" }
    srv:close()
    assert.equal("127.0.0.2", seen_by_server(result).address)
  end)
end)

describe("trusted_proxies", function()
  it("takes addresses and CIDR ranges, IPv4 and IPv6; misuse raises", function()
    assert(moonws.listen { port = 0, trusted_proxies = { "10.0.0.0/8", "fd00::/8", "::1",
      "192.0.2.1", "::ffff:10.0.0.0/104" } }):close()
    assert.has_error(function() moonws.listen { trusted_proxies = { "10.0.0.0/33" } } end)
    assert.has_error(function() moonws.listen { trusted_proxies = { "example.org" } } end)
    assert.has_error(function() moonws.listen { trusted_proxies = 5 } end)
    assert.has_error(function() moonws.listen { forwarded_header = "x-real-ip" } end)
  end)
end)

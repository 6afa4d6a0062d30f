-- What a client learns from the server's answer to its upgrade request
-- (issue 16): on a refusal, the status, the headers and the start of the
-- body (bounded), in the error event and after connect's nil, message,
-- name; on success, ws.response_headers; and follow_redirects (off by
-- default, max_redirects 10) for 301/302/303/307/308, relative Locations,
-- never wss:// to ws://, within the one connect timeout.  Servers: a small
-- HTTP + WebSocket server in Python (spec/peers/redirect_server.py), the
-- raw peer for hand-made bodies (chunked, until close), moonws itself.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local rawpeer = require "spec.support.rawpeer"
local certs = require "spec.support.certs"
local core = require "moonws.core"
local json = require "dkjson"

local track, cleanup = process.tracker()
after_each(cleanup)

local function redirect_server(tls)
  local argv = { "/usr/bin/python3", "spec/peers/redirect_server.py" }
  if tls then
    local c = certs.get()
    argv[3], argv[4] = c.server_cert, c.server_key
  end
  local p = track(process.start(argv, 120))
  return p:port(helpers.idle)
end

local function encode(s)
  return (s:gsub("[^%w%-._~/]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- A path on the redirect server that answers status with Location to.
local function hop(status, to, extra)
  return ("/ws/hop?status=%d&location=%s%s"):format(status, encode(to), extra or "")
end

-- Connect; on success read the server's JSON report and close.
local function connect(url, opts)
  local r = table.pack(moonws.connect(url, opts))
  local ws = r[1]
  if not ws then return nil, r end
  local data = assert(ws:receive(5))
  local report = json.decode(data)
  ws:close()
  return ws, report
end

describe("a refused handshake, as the client sees it", function()
  it("coroutine style: nil, message, name, status, headers, body", function()
    local srv = assert(moonws.listen { port = 0, handshake = function()
      return false, { status = 401, headers = { ["WWW-Authenticate"] = 'Bearer realm="chat"' },
        body = "log in first" }
    end })
    local ws, message, name, status, headers, body = moonws.connect(
      "ws://127.0.0.1:" .. srv.port .. "/")
    srv:close()
    assert.is_nil(ws)
    assert.equal("handshake", name)
    assert.matches("401", message)
    assert.equal(401, status)
    assert.equal('Bearer realm="chat"', headers["www-authenticate"])
    assert.equal("log in first", body)
  end)

  it("event style: the error event carries status, headers and body", function()
    local srv = assert(moonws.listen { port = 0, handshake = function()
      return false, 429, "slow down", { ["Retry-After"] = "30" }
    end })
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port .. "/")
    local events = {}
    ws.onerror = function(e) events[#events + 1] = e end
    ws.onclose = function(e) events[#events + 1] = e end
    helpers.run_until(function() return #events == 2 end, 5)
    srv:close()
    assert.equal("error", events[1].type)
    assert.equal(429, events[1].status)
    assert.equal("30", events[1].headers["retry-after"])
    assert.equal("slow down\n", events[1].body)
    assert.equal(1006, events[2].code)
  end)

  local function from_raw(answer)
    local p = track(rawpeer.server({ { handshake = answer }, { close = true } }))
    return table.pack(moonws.connect(("ws://127.0.0.1:%d/"):format(p:port(helpers.idle)),
      { timeout = 5 }))
  end

  it("a chunked body is decoded", function()
    local r = from_raw { raw = "HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n" }
    assert.same({ 403, "hello, world" }, { r[4], r[6] })
  end)

  it("a body of no declared length: what came with the head", function()
    local r = from_raw { raw = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n"
      .. "down for maintenance" }
    assert.same({ 503, "down for maintenance" }, { r[4], r[6] })
  end)

  it("the body is bounded: the first HANDSHAKE_BODY_MAX bytes", function()
    local big = string.rep("x", core.HANDSHAKE_BODY_MAX * 3)
    local r = from_raw { raw = ("HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s")
      :format(#big, big) }
    assert.equal(400, r[4])
    assert.equal(core.HANDSHAKE_BODY_MAX, #r[6])
  end)

  it("a server that never sends the promised body: what came, at the connect timeout", function()
    local p = track(rawpeer.server({
      { handshake = { raw = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 100\r\n\r\npart" } },
      { sleep = 3 } }))
    local started = core.now()
    local ws, message, name, status, _, body = moonws.connect(
      ("ws://127.0.0.1:%d/"):format(p:port(helpers.idle)), { timeout = 1 })
    assert.is_nil(ws)
    assert.equal("handshake", name, message)
    assert.same({ 401, "part" }, { status, body })
    assert.is_true(core.now() - started < 2)
  end)

  it("a 101 that fails its checks has no body to wait for", function()
    local r = from_raw { accept = "wrong" }
    assert.equal("handshake", r[3])
    assert.is_nil(r[4])
  end)
end)

describe("ws.response_headers", function()
  it("holds the 101's headers, lower-case, with what the server's callback added", function()
    local srv = assert(moonws.listen { port = 0, handshake = function()
      return true, { ["Set-Cookie"] = "session=abc", ["X-Server"] = "moonws" }
    end })
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port .. "/"))
    assert.equal("session=abc", ws.response_headers["set-cookie"])
    assert.equal("moonws", ws.response_headers["x-server"])
    assert.equal("websocket", ws.response_headers.upgrade:lower())
    ws:close()
    srv:close()
  end)
end)

describe("follow_redirects", function()
  it("is off by default: a 302 fails with its status and Location", function()
    local port = redirect_server()
    local ws, r = connect(("ws://127.0.0.1:%d%s"):format(port, hop(302, "/ws/final")))
    assert.is_nil(ws)
    assert.same({ "handshake", 302, "/ws/final" }, { r[3], r[4], r[5].location })
  end)

  for _, status in ipairs { 301, 302, 303, 307, 308 } do
    it(status .. " is followed", function()
      local port = redirect_server()
      local ws, report = connect(("ws://127.0.0.1:%d%s"):format(port, hop(status, "/ws/final")),
        { follow_redirects = true })
      assert.truthy(ws)
      assert.equal("/ws/final", report.path)
      assert.equal(("ws://127.0.0.1:%d/ws/final"):format(port), ws.url)
    end)
  end

  it("resolves relative Locations against the URL asked (RFC 3986 5.2)", function()
    local port = redirect_server()
    local base = ("ws://127.0.0.1:%d"):format(port)
    for _, case in ipairs {
      { "final", "/ws/final" },                     -- same folder
      { "../ws/up/../final", "/ws/final" },         -- dot segments
      { "/ws/abs?x=1", "/ws/abs?x=1" },             -- absolute path, its query
      { ("//127.0.0.1:%d/ws/net"):format(port), "/ws/net" }, -- network path
      { ("http://127.0.0.1:%d/ws/http"):format(port), "/ws/http" }, -- http: is ws:
    } do
      local ws, report = connect(base .. hop(302, case[1]), { follow_redirects = true })
      assert.truthy(ws, case[1])
      assert.equal(case[2], report.path, case[1])
    end
  end)

  it("follows a chain; max_redirects bounds it", function()
    local port = redirect_server()
    local target = "/ws/end"
    for i = 1, 3 do target = hop(307, target, "&n=" .. i) end
    local url = ("ws://127.0.0.1:%d%s"):format(port, target)
    local ws, report = connect(url, { follow_redirects = true })
    assert.truthy(ws)
    assert.equal("/ws/end", report.path)
    local r
    ws, r = connect(url, { follow_redirects = true, max_redirects = 2 })
    assert.is_nil(ws)
    assert.equal("handshake", r[3])
    assert.matches("too many redirects %(max_redirects = 2%)", r[2])
  end)

  it("a redirect loop ends after max_redirects (default 10)", function()
    local port = redirect_server()
    local seen = 0
    local log = function(_, rec) if rec.event == "redirect" then seen = seen + 1 end end
    local ws, r = connect(("ws://127.0.0.1:%d/ws/loop?status=302&self=1"):format(port),
      { follow_redirects = true, log = log })
    assert.is_nil(ws)
    assert.matches("too many redirects %(max_redirects = 10%)", r[2])
    assert.equal(10, seen)
  end)

  it("never from wss:// to ws://; wss:// to wss:// is fine", function()
    local c = certs.get()
    local tls_port = redirect_server(true)
    local plain_port = redirect_server()
    local opts = { follow_redirects = true, tls = { cafile = c.ca } }
    local ws, r = connect(("wss://localhost:%d%s"):format(tls_port,
      hop(302, ("ws://127.0.0.1:%d/ws/plain"):format(plain_port))), opts)
    assert.is_nil(ws)
    assert.equal("handshake", r[3])
    assert.matches("would leave TLS", r[2])
    ws, r = connect(("wss://localhost:%d%s"):format(tls_port, hop(301, "/ws/still-tls")), opts)
    assert.truthy(ws)
    assert.equal("/ws/still-tls", r.path)
  end)

  it("all hops count toward the one connect timeout", function()
    local port = redirect_server()
    local target = "/ws/end"
    for i = 1, 4 do target = hop(302, target, "&delay=0.4&n=" .. i) end
    local started = core.now()
    local ws, r = connect(("ws://127.0.0.1:%d%s"):format(port, target),
      { follow_redirects = true, timeout = 1 })
    assert.is_nil(ws)
    assert.equal("timeout", r[3])
    assert.is_true(core.now() - started < 1.5)
  end)

  it("credentials stay with their origin", function()
    local port, other = redirect_server(), redirect_server()
    local opts = { follow_redirects = true,
      headers = { Authorization = "Bearer t0k3n", Cookie = "s=1", ["X-Keep"] = "yes" } }
    local _, same = connect(("ws://127.0.0.1:%d%s"):format(port, hop(302, "/ws/same")), opts)
    assert.same({ "Bearer t0k3n", "s=1" }, { same.authorization, same.cookie })
    local _, moved = connect(("ws://127.0.0.1:%d%s"):format(port,
      hop(302, ("ws://127.0.0.1:%d/ws/other"):format(other))), opts)
    assert.equal("/ws/other", moved.path)
    assert.is_nil(moved.authorization)
    assert.is_nil(moved.cookie)
  end)

  it("a redirect without Location fails as the refusal it is", function()
    local port = redirect_server()
    local ws, r = connect(("ws://127.0.0.1:%d/ws/x?status=302"):format(port),
      { follow_redirects = true })
    assert.is_nil(ws)
    assert.matches("without a Location", r[2])
  end)
end)

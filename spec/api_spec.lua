-- The public API surface of docs/API.md: constants, tables, and the
-- rule that misuse raises with a clear message.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws

describe("moonws module", function()
  it("exports the entry points of docs/API.md", function()
    for _, name in ipairs { "new", "connect", "listen", "serve", "spawn", "run", "step", "stop",
                            "sleep", "fd", "next_timeout" } do
      assert.is_function(moonws[name], name)
    end
    assert.equal(0, moonws.CONNECTING)
    assert.equal(1, moonws.OPEN)
    assert.equal(2, moonws.CLOSING)
    assert.equal(3, moonws.CLOSED)
  end)

  it("has every close code 1000-1015 in moonws.codes, both ways", function()
    local names = {
      [1000] = "NORMAL", [1001] = "GOING_AWAY", [1002] = "PROTOCOL_ERROR",
      [1003] = "UNSUPPORTED_DATA", [1004] = "RESERVED", [1005] = "NO_STATUS_RECEIVED",
      [1006] = "ABNORMAL_CLOSURE", [1007] = "INVALID_PAYLOAD", [1008] = "POLICY_VIOLATION",
      [1009] = "MESSAGE_TOO_BIG", [1010] = "MANDATORY_EXTENSION", [1011] = "INTERNAL_ERROR",
      [1012] = "SERVICE_RESTART", [1013] = "TRY_AGAIN_LATER", [1014] = "BAD_GATEWAY",
      [1015] = "TLS_HANDSHAKE",
    }
    for code = 1000, 1015 do
      assert.equal(names[code], moonws.codes[code])
      assert.equal(code, moonws.codes[names[code]])
    end
    assert.is_nil(moonws.codes[999])
    assert.is_nil(moonws.codes[1016])
  end)

  it("documents every stable error name in moonws.errors", function()
    for _, name in ipairs { "closed", "timeout", "refused", "resolve", "io", "handshake",
                            "protocol", "invalid_data", "too_big", "tls", "nomem", "handler" } do
      assert.is_string(moonws.errors[name], name)
    end
  end)
end)

describe("misuse raises", function()
  local srv, ws

  before_each(function()
    srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s) s.onmessage = function() end end
    ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
  end)

  after_each(function()
    ws:terminate()
    srv:close()
    helpers.idle(0.05)
  end)

  it("rejects close codes an endpoint may not send (reserved, or outside the ranges)", function()
    for _, code in ipairs { 1004, 1005, 1006, 1015, 1016, 2999, 5000, 999, 0 } do
      assert.has_error(function() ws:close(code) end,
        ("bad argument #1 to 'close' (code %d not allowed: use 1000-1003, 1007-1014 or "
          .. "3000-4999)"):format(code))
    end
    assert.has_error(function() ws:close(1000.5) end)
    assert.equal(moonws.OPEN, ws.readyState)
  end)

  it("a server may close with the RFC's endpoint codes: 1008 reaches the client", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(peer)
      peer.onmessage = function() peer:close(1008, "no spam") end
    end
    local client = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
    assert(client:send("spam"))
    local data, message, name = client:receive(5)
    srv:close()
    assert.is_nil(data)
    assert.equal("closed", name, message)
    assert.same({ 1008, "no spam" }, { client.closeCode, client.closeReason })
  end)

  it("rejects a close reason over 123 bytes or not UTF-8", function()
    assert.has_error(function() ws:close(1000, string.rep("r", 124)) end,
      "bad argument #2 to 'close' (reason over 123 bytes)")
    assert.has_error(function() ws:close(1000, "\xff") end,
      "bad argument #2 to 'close' (reason is not valid UTF-8)")
    assert.equal(moonws.OPEN, ws.readyState)
  end)

  it("rejects non-string data and unknown kinds", function()
    assert.has_error(function() ws:send(42) end,
      "bad argument #1 to 'send' (string expected, got number)")
    assert.has_error(function() ws:send({}) end)
    assert.has_error(function() ws:send("x", "json") end,
      "bad argument #2 to 'send' (\"text\" or \"binary\" expected)")
  end)

  it("rejects invalid UTF-8 sent as text, and accepts it as binary", function()
    assert.has_error(function() ws:send("\xc3\x28") end)
    assert.is_true(ws:send("\xc3\x28", "binary"))
  end)

  it("rejects control payloads over 125 bytes", function()
    assert.has_error(function() ws:ping(string.rep("p", 126)) end,
      "bad argument #1 to 'ping' (payload over 125 bytes)")
    assert.has_error(function() ws:pong(string.rep("p", 126)) end)
    assert.is_number(ws:ping(string.rep("p", 125))) -- it waits: the round trip
  end)

  it("keeps readyState and bufferedAmount read-only", function()
    assert.has_error(function() ws.readyState = 3 end, "readyState is read-only")
    assert.has_error(function() ws.bufferedAmount = 0 end, "bufferedAmount is read-only")
  end)

  it("rejects handlers that are not functions", function()
    assert.has_error(function() ws.onmessage = "print" end)
    ws.onmessage = function() end
    ws.onmessage = nil
    assert.is_nil(ws.onmessage)
  end)

  it("lets user fields through", function()
    ws.user_id = 7
    assert.equal(7, ws.user_id)
  end)
end)

describe("send while CONNECTING", function()
  it("raises, like the browser's InvalidStateError", function()
    local srv = assert(moonws.listen { port = 0 })
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    assert.equal(moonws.CONNECTING, ws.readyState)
    assert.has_error(function() ws:send("too early") end,
      "send while CONNECTING: wait for onopen (or use moonws.connect)")
    ws:terminate()
    srv:close()
  end)
end)

describe("options", function()
  it("raise on unknown or mistyped options", function()
    assert.has_error(function() moonws.new("ws://127.0.0.1:1", { timout = 3 }) end,
      "unknown option 'timout' to 'new'")
    assert.has_error(function() moonws.new("ws://127.0.0.1:1", { timeout = -1 }) end,
      "option 'timeout' must be a positive number")
    assert.has_error(function() moonws.new("ws://127.0.0.1:1", { max_payload = 1.5 }) end,
      "option 'max_payload' must be a positive integer")
    assert.has_error(function() moonws.new("ws://127.0.0.1:1", { protocols = { "a b" } }) end)
    assert.has_error(function() moonws.new("ws://127.0.0.1:1", { headers = { ["X-A"] = "a\r\nB: c" } }) end)
    assert.has_error(function() moonws.listen { port = 70000 } end,
      "option 'port' must be an integer 0..65535")
  end)

  it("raise on URLs that are not WebSocket URLs", function()
    assert.has_error(function() moonws.new("ftp://example.org/") end)
    assert.has_error(function() moonws.new("ws://example.org/#frag") end)
    assert.has_error(function() moonws.new("ws://:80/") end)
    assert.has_error(function() moonws.new(42) end,
      "bad argument #1 to 'new' (URL string expected, got number)")
  end)

  it("report an unavailable listening address as nil, message, name", function()
    local a = assert(moonws.listen { port = 0 })
    local b, message, name = moonws.listen { port = a.port }
    assert.is_nil(b)
    assert.matches("in use", message)
    assert.equal("io", name)
    a:close()
  end)
end)

describe("ws.url, protocol, extensions", function()
  it("reflect the URL and the negotiation", function()
    local srv = assert(moonws.listen { port = 0, protocols = { "chat" } })
    local server_ws
    srv.onconnection = function(s) server_ws = s; s.onmessage = function() end end
    local url = "ws://127.0.0.1:" .. srv.port .. "/room?x=1"
    local ws = assert(moonws.connect(url, { protocols = { "superchat", "chat" } }))
    assert.equal(url, ws.url)
    assert.equal("chat", ws.protocol)
    assert.equal("", ws.extensions)
    helpers.run_until(function() return server_ws end, 5)
    assert.equal("chat", server_ws.protocol)
    assert.equal("ws://127.0.0.1:" .. srv.port .. "/room?x=1", server_ws.url)
    assert.is_number(ws:getfd())
    ws:close()
    srv:close()
  end)
end)

describe("addresses", function()
  it("a URL gives the Host field and the CONNECT authority every front sends", function()
    local core = require "moonws.core"
    local cases = {
      { "ws://example.org/x", "example.org", "example.org:80" },
      { "wss://example.org:443/", "example.org", "example.org:443" },
      { "ws://example.org:8080", "example.org:8080", "example.org:8080" },
      { "wss://[::1]:8443/", "[::1]:8443", "[::1]:8443" },
      { "ws://[::1]/", "[::1]", "[::1]:80" },
    }
    for _, c in ipairs(cases) do
      local u = assert(core.parse_url(c[1]))
      assert.same({ c[2], c[3] }, { u.host_header, u.authority }, c[1])
    end
  end)

  it("serve and connect over IPv6 ([::1])", function()
    local srv = assert(moonws.listen { host = "::1", port = 0 })
    local peer_url
    srv.onconnection = function(s, request)
      peer_url = s.url
      s.onmessage = function(e) s:send(e.data) end
    end
    local ws = assert(moonws.connect("ws://[::1]:" .. srv.port .. "/v6"))
    assert(ws:send("over IPv6"))
    assert.equal("over IPv6", ws:receive(5))
    assert.equal("ws://[::1]:" .. srv.port .. "/v6", peer_url)
    ws:close()
    srv:close()
  end)
end)

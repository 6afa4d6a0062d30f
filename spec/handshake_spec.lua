-- The opening handshake (RFC 6455 section 4), both sides, against a raw
-- peer (spec/peers/raw_peer.py) with its own HTTP code: as a client it
-- sends hand-made requests and checks moonws's status line and headers
-- (computing Sec-WebSocket-Accept itself); as a server it answers moonws's
-- request with scripted responses and reports the request it got.

local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"   -- luacheck: ignore (rawpeer starts them)
local rawpeer = require "spec.support.rawpeer"

local header = rawpeer.header

---------------------------------------------------------------- harness

local close_steps = {
  { send_frame = { opcode = 8, close_code = 1000 } },
  { read_frames = { ["until"] = "close", timeout = 5 } },
  { read_frames = { ["until"] = "eof", timeout = 5 } },
}
-- As the server: wait for the client's close, echo it, end TCP first
-- (RFC 6455 7.1.1).
local server_close_steps = {
  { read_frames = { ["until"] = "close", timeout = 5 } },
  { send_frame = { opcode = 8, close_code = 1000 } },
  { close = true },
}
local eof_steps = { { read_frames = { ["until"] = "eof", timeout = 5 } } }

-- Server side: a raw client sends the handshake `hs` to a fresh moonws
-- server (options opts), then `after` (default: read until EOF).  Returns
-- the response observation, the list of onconnection calls
-- ({ ws, request, protocol }) and all observations.
local function to_server(hs, opts, after)
  local o = { host = "127.0.0.1", port = 0 }
  for k, v in pairs(opts or {}) do o[k] = v end
  local srv = assert(moonws.listen(o))
  local conns = {}
  srv.onconnection = function(ws, request)
    conns[#conns + 1] = { ws = ws, request = request, protocol = ws.protocol }
  end
  local steps = { { handshake = hs } }
  for _, s in ipairs(after or eof_steps) do steps[#steps + 1] = s end
  local p = rawpeer.client(srv.port, steps)
  local ok, events = pcall(function()
    local ev = rawpeer.finish(p, 15, helpers.idle)
    helpers.idle(0.05)
    return ev
  end)
  srv:close()
  p:cleanup()
  if not ok then error(events, 0) end
  assert.equal("response", events[1].event)
  return events[1], conns, events
end

-- A refusal: exactly `status`, no onconnection, and the server ended TCP
-- (with FIN: "eof"; `ending` = "any" also takes a reset, for the cases
-- where the request was not read to its end).
local function expect_refusal(status, hs, opts, ending)
  local res, conns, events = to_server(hs, opts)
  assert.equal(status, res.status)
  assert.matches("^HTTP/1%.1 " .. status .. " ", res.status_line)
  assert.is_nil(header(res.headers, "Sec-WebSocket-Accept"))
  assert.equal(0, #conns)
  if ending == "any" then
    assert.is_truthy(events[2].event == "eof" or events[2].event == "reset", events[2].event)
  else
    assert.equal("eof", events[2].event)
  end
  return res, events
end

-- An acceptance: 101, the accept value the peer computed, one connection.
local function expect_accept(hs, opts)
  local res, conns, events = to_server(hs, opts, close_steps)
  assert.equal(101, res.status)
  assert.is_true(res.accept_ok)
  assert.equal("websocket", header(res.headers, "Upgrade"):lower())
  assert.equal("upgrade", header(res.headers, "Connection"):lower())
  assert.equal(1, #conns)
  local echo = rawpeer.select(events, "frame", 8)
  assert.equal(1, #echo)
  assert.equal(1000, echo[1].close_code)
  return res, conns[1]
end

-- Client side: a raw server answers with `answer` (its handshake spec) and
-- then runs `after`; moonws.connect(url or "/", opts) runs meanwhile.
-- Returns connect's results, the peer's observations.
local function to_client(answer, opts, path, after)
  local p = rawpeer.server({ { handshake = answer }, table.unpack(after or eof_steps) })
  local results, events
  local ok, err = pcall(function()
    local port = p:port()
    local o = { timeout = 5 }
    for k, v in pairs(opts or {}) do o[k] = v end
    results = table.pack(moonws.connect(("ws://127.0.0.1:%d%s"):format(port, path or "/"), o))
    if results[1] then results[1]:close() end
    events = rawpeer.finish(p, 10, helpers.idle)
  end)
  p:cleanup()
  if not ok then error(err, 0) end
  assert.equal("request", events[1].event)
  return results, events
end

local function expect_handshake_error(answer, opts)
  local results = to_client(answer, opts)
  assert.is_nil(results[1])
  assert.equal("string", type(results[2]))
  assert.equal("handshake", results[3])
  return results[2]
end

local KEY = "dGhlIHNhbXBsZSBub25jZQ=="  -- RFC 6455 1.3's sample key

---------------------------------------------------------------- server side

describe("handshake, server side: slow clients", function()
  it("a request head that never completes is dropped after `timeout`", function()
    local core = require "moonws.core"
    local srv = assert(moonws.listen { host = "127.0.0.1", port = 0, timeout = 0.3 })
    local connected = false
    srv.onconnection = function() connected = true end
    local p = rawpeer.client(srv.port, {
      { send_raw_hex = rawpeer.hex("GET / HTTP/1.1\r\nHost: x\r\n") }, -- no blank line
      { read_frames = { ["until"] = "eof", timeout = 5 } },
    })
    local t0 = core.now()
    local ok, events = pcall(rawpeer.finish, p, 10, helpers.idle)
    local elapsed = core.now() - t0
    srv:close()
    p:cleanup()
    assert(ok, events)
    assert.is_false(connected)
    assert.equal(1, #rawpeer.select(events, "eof"))
    assert.is_true(elapsed >= 0.25 and elapsed < 3, "dropped after " .. elapsed)
  end)
end)


describe("handshake, server side: refusals (RFC 6455 4.2.1, 4.2.2)", function()
  it("Sec-WebSocket-Version 12 -> 426 with Sec-WebSocket-Version: 13", function()
    local res = expect_refusal(426, { version = "12" })
    assert.equal("13", header(res.headers, "Sec-WebSocket-Version"))
  end)

  it("missing Sec-WebSocket-Version -> 426 with Sec-WebSocket-Version: 13", function()
    local res = expect_refusal(426, { omit = { "Sec-WebSocket-Version" } })
    assert.equal("13", header(res.headers, "Sec-WebSocket-Version"))
  end)

  it("POST -> 405 with Allow: GET", function()
    local res = expect_refusal(405, { method = "POST" })
    assert.equal("GET", header(res.headers, "Allow"))
  end)

  it("HTTP/1.0 -> 400", function()
    expect_refusal(400, { http = "HTTP/1.0" })
  end)

  it("missing Host -> 400", function()
    expect_refusal(400, { omit = { "Host" } })
  end)

  it("missing Sec-WebSocket-Key -> 400", function()
    expect_refusal(400, { omit = { "Sec-WebSocket-Key" } })
  end)

  local bad_keys = {
    { "15 bytes of base64", "AAAAAAAAAAAAAAAAAAAA" },
    { "17 bytes of base64", "AAAAAAAAAAAAAAAAAAAAAAA=" },
    { "no padding", "dGhlIHNhbXBsZSBub25jZQ" },
    { "not base64", "not*base64*at*all!!!!!==" },
  }
  for _, case in ipairs(bad_keys) do
    it("malformed Sec-WebSocket-Key (" .. case[1] .. ") -> 400", function()
      expect_refusal(400, { key = case[2] })
    end)
  end

  it("missing Upgrade -> 426 naming Upgrade: websocket (RFC 7231 6.5.15)", function()
    local res = expect_refusal(426, { omit = { "Upgrade" } })
    assert.equal("websocket", (header(res.headers, "Upgrade") or ""):lower())
  end)

  it("missing Connection: Upgrade -> 400", function()
    expect_refusal(400, { omit = { "Connection" } })
  end)

  it("headers over max_handshake (default 16 KiB) -> 431", function()
    expect_refusal(431, { pad = 17 * 1024 }, nil, "any")
  end)

  it("headers over a small max_handshake -> 431", function()
    expect_refusal(431, { pad = 600 }, { max_handshake = 512 }, "any")
  end)

  it("after a 431 the server closes with FIN, not RST (RFC 7230 6.6 staged close)", function()
    -- closing with unread request bytes makes the kernel send RST, which
    -- lets a client's TCP stack discard the 431 before the client reads it
    local _, events = expect_refusal(431, { pad = 17 * 1024 }, nil, "any")
    assert.equal("eof", events[2].event)
  end)
end)

describe("handshake, server side: accepted requests", function()
  it("'Connection: keep-alive, Upgrade' and mixed-case names -> 101 with the right accept",
    function()
      local res = expect_accept {
        key = KEY,
        raw = "GET /mixed HTTP/1.1\r\n"
          .. "hOsT: 127.0.0.1\r\n"
          .. "uPgRaDe: WebSocket\r\n"
          .. "CONNECTION: keep-alive, Upgrade\r\n"
          .. "sec-websocket-key: " .. KEY .. "\r\n"
          .. "SEC-WEBSOCKET-VERSION: 13\r\n\r\n",
      }
      -- RFC 6455 1.3's worked example
      assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", header(res.headers, "Sec-WebSocket-Accept"))
    end)

  it("a head written one byte at a time still works", function()
    expect_accept { split = 1, split_sleep = 0.001 }
  end)

  it("headers just under max_handshake are accepted", function()
    expect_accept({ pad = 300 }, { max_handshake = 1024 })
  end)
end)

describe("handshake, server side: subprotocols (RFC 6455 4.2.2 /subprotocol/)", function()
  it("client offers 'superchat, chat', server has {'chat'} -> 'chat' chosen", function()
    local res, conn = expect_accept({ protocol = "superchat, chat" }, { protocols = { "chat" } })
    assert.equal("chat", header(res.headers, "Sec-WebSocket-Protocol"))
    assert.equal("chat", conn.protocol)
    assert.equal("chat", conn.ws.protocol)
  end)

  it("no common protocol -> no Sec-WebSocket-Protocol header, ws.protocol ''", function()
    local res, conn = expect_accept({ protocol = "superchat, v2.chat" }, { protocols = { "chat" } })
    assert.is_nil(header(res.headers, "Sec-WebSocket-Protocol"))
    assert.equal("", conn.protocol)
  end)

  it("a protocols function chooses among the offers", function()
    local offered
    local res, conn = expect_accept({ protocol = "a, b, c" }, {
      protocols = function(list) offered = list; return "b" end,
    })
    assert.same({ "a", "b", "c" }, offered)
    assert.equal("b", header(res.headers, "Sec-WebSocket-Protocol"))
    assert.equal("b", conn.protocol)
  end)
end)

describe("handshake, server side: the handshake callback", function()
  it("sees request.path, lowercase request.headers and request.origin", function()
    local seen
    local _, conn = expect_accept({
      path = "/room/7?user=ann&x=%20",
      origin = "http://app.example",
      headers = { { "X-Token", "s3cret" } },
    }, {
      handshake = function(req) seen = req; return true end,
    })
    assert.equal("/room/7?user=ann&x=%20", seen.path)
    assert.equal("http://app.example", seen.origin)
    assert.equal("s3cret", seen.headers["x-token"])
    assert.is_nil(seen.headers["X-Token"])
    assert.equal("websocket", seen.headers.upgrade)
    assert.equal("13", seen.headers["sec-websocket-version"])
    assert.matches("^127%.0%.0%.1:%d+$", seen.headers.host)
    assert.equal("/room/7?user=ann&x=%20", conn.request.path)
  end)

  it("return false, 401, 'no token' -> 401 response, no onconnection", function()
    local calls = 0
    local res = expect_refusal(401, {}, {
      handshake = function(req)
        calls = calls + 1
        if req.headers["x-token"] ~= "s3cret" then return false, 401, "no token" end
        return true
      end,
    })
    assert.equal(1, calls)
    assert.matches("no token", res.body or "", 1, true)
  end)

  it("the same callback lets a request with the token in", function()
    expect_accept({ headers = { { "X-Token", "s3cret" } } }, {
      handshake = function(req)
        if req.headers["x-token"] ~= "s3cret" then return false, 401, "no token" end
        return true
      end,
    })
  end)
end)

---------------------------------------------------------------- client side

describe("handshake, client side: checking the response (RFC 6455 4.1)", function()
  it("101 with a wrong Sec-WebSocket-Accept -> nil, msg, 'handshake'", function()
    expect_handshake_error { accept = "wrong" }
  end)

  it("101 without Sec-WebSocket-Accept -> 'handshake'", function()
    expect_handshake_error { omit = { "Sec-WebSocket-Accept" } }
  end)

  it("a 401 response -> 'handshake' error whose message mentions 401", function()
    local msg = expect_handshake_error { status = 401, reason = "Unauthorized", body = "go away" }
    assert.matches("401", msg, 1, true)
  end)

  it("a 200 response -> 'handshake'", function()
    expect_handshake_error { status = 200, reason = "OK", body = "hello" }
  end)

  it("a subprotocol the client did not offer -> 'handshake'", function()
    expect_handshake_error({ protocol = "superchat" }, { protocols = { "chat" } })
  end)

  it("a subprotocol when the client offered none -> 'handshake'", function()
    expect_handshake_error { protocol = "chat" }
  end)

  it("no subprotocol when the client offered some -> 'handshake' (as the browser)", function()
    local msg = expect_handshake_error({}, { protocols = { "chat", "superchat" } })
    assert.matches("server chose none of the offered subprotocols", msg, 1, true)
  end)

  it("no subprotocol chosen by a moonws server without a common one -> 'handshake'", function()
    local srv = assert(moonws.listen { port = 0, protocols = { "v2" } })
    local ws, msg, name = moonws.connect("ws://127.0.0.1:" .. srv.port .. "/",
      { protocols = { "v1" } })
    srv:close()
    assert.is_nil(ws)
    assert.equal("handshake", name)
    assert.matches("none of the offered subprotocols", msg, 1, true)
  end)

  it("Sec-WebSocket-Extensions when none were offered -> 'handshake'", function()
    expect_handshake_error({ extensions = "permessage-deflate" }, { compression = false })
  end)

  it("missing Upgrade -> 'handshake'", function()
    expect_handshake_error { omit = { "Upgrade" } }
  end)

  it("missing Connection -> 'handshake'", function()
    expect_handshake_error { omit = { "Connection" } }
  end)

  it("Upgrade naming another protocol -> 'handshake'", function()
    expect_handshake_error { headers = { Upgrade = "h2c" } }
  end)

  it("event style: onerror('handshake') then onclose(1006, wasClean=false), once", function()
    local p = rawpeer.server({ { handshake = { status = 401, body = "no" } },
      table.unpack(eof_steps) })
    local log = {}
    local ok, err = pcall(function()
      local ws = moonws.new(("ws://127.0.0.1:%d/"):format(p:port()), { timeout = 5 })
      ws.onopen = function() log[#log + 1] = { kind = "open" } end
      ws.onerror = function(e) log[#log + 1] = { kind = "error", error = e.error, message = e.message } end
      ws.onclose = function(e)
        log[#log + 1] = { kind = "close", code = e.code, wasClean = e.wasClean }
      end
      helpers.run_until(function() return #log >= 2 end, 10, "onclose")
      rawpeer.finish(p, 10, helpers.idle)
      helpers.idle(0.05)
    end)
    p:cleanup()
    if not ok then error(err, 0) end
    assert.equal(2, #log)
    assert.equal("error", log[1].kind)
    assert.equal("handshake", log[1].error)
    assert.matches("401", log[1].message, 1, true)
    assert.equal("close", log[2].kind)
    assert.equal(1006, log[2].code)
    assert.is_false(log[2].wasClean)
  end)
end)

describe("handshake, client side: the request moonws sends (RFC 6455 4.1)", function()
  it("has Host, Upgrade, Connection, a 24-char key, version 13, protocols, headers, origin, path",
    function()
      local results, events = to_client({ protocol = "chat" }, {
        protocols = { "chat", "superchat" },
        headers = { ["X-Token"] = "abc", ["X-Trace"] = "1 2 3" },
        origin = "http://origin.example",
        compression = false,
      }, "/chat/room?id=7&x=y", server_close_steps)
      local req = events[1]
      assert.equal("GET /chat/room?id=7&x=y HTTP/1.1", req.request_line)
      local h = req.headers
      assert.matches("^127%.0%.0%.1:%d+$", header(h, "Host"))
      assert.equal("websocket", header(h, "Upgrade"):lower())
      assert.matches("upgrade", header(h, "Connection"):lower(), 1, true)
      local key = header(h, "Sec-WebSocket-Key")
      assert.equal(24, #key)
      assert.matches("^[A-Za-z0-9+/]+[AQgw]==$", key) -- base64 of exactly 16 bytes
      assert.equal("13", header(h, "Sec-WebSocket-Version"))
      assert.equal("chat, superchat", header(h, "Sec-WebSocket-Protocol"))
      assert.equal("abc", header(h, "X-Token"))
      assert.equal("1 2 3", header(h, "X-Trace"))
      assert.equal("http://origin.example", header(h, "Origin"))
      assert.is_nil(header(h, "Sec-WebSocket-Extensions"))
      -- and the connection opened with the chosen protocol
      assert.truthy(results[1], results[2])
      assert.equal("chat", results[1].protocol)
    end)

  it("offers permessage-deflate by default, and nothing with compression = false", function()
    local _, events = to_client({}, {}, "/", server_close_steps)
    assert.equal("permessage-deflate; client_max_window_bits",
      header(events[1].headers, "Sec-WebSocket-Extensions"))
    local _, plain = to_client({}, { compression = false }, "/", server_close_steps)
    assert.is_nil(header(plain[1].headers, "Sec-WebSocket-Extensions"))
  end)

  it("uses a fresh key for every connection", function()
    local _, e1 = to_client({}, nil, "/", server_close_steps)
    local _, e2 = to_client({}, nil, "/", server_close_steps)
    local k1, k2 = header(e1[1].headers, "Sec-WebSocket-Key"), header(e2[1].headers, "Sec-WebSocket-Key")
    assert.are_not.equal(k1, k2)
  end)
end)

describe("handshake, client side: data right after the 101", function()
  it("a text frame in the same TCP segment as the 101 is delivered after onopen", function()
    local p = rawpeer.server({
      { handshake = { frames = { { opcode = 1, payload_text = "early bird" } } } },
      { read_frames = { ["until"] = "close", timeout = 5 } },
      { send_frame = { opcode = 8, close_code = 1000 } },
      { close = true },
    })
    local log = {}
    local ok, err = pcall(function()
      local ws = moonws.new(("ws://127.0.0.1:%d/"):format(p:port()))
      ws.onopen = function() log[#log + 1] = "open" end
      ws.onmessage = function(e)
        log[#log + 1] = "message " .. e.data
        ws:close(1000)
      end
      ws.onclose = function(e) log[#log + 1] = ("close %d %s"):format(e.code, tostring(e.wasClean)) end
      helpers.run_until(function() return #log >= 3 end, 10, "onclose")
      rawpeer.finish(p, 10, helpers.idle)
      helpers.idle(0.05)
    end)
    p:cleanup()
    if not ok then error(err, 0) end
    assert.same({ "open", "message early bird", "close 1000 true" }, log)
  end)

  it("101, a text frame and a close in one segment: connect returns the socket, "
    .. "receive() gets the message, then 'closed'", function()
    local p = rawpeer.server({
      { handshake = { frames = {
        { opcode = 1, payload_text = "last words" },
        { opcode = 8, close_code = 1000, close_reason = "done" },
      } } },
      { read_frames = { ["until"] = "close", timeout = 5 } },
      { close = true },
    })
    local ws, msg, name, got, again
    local ok, err = pcall(function()
      ws, msg, name = moonws.connect(("ws://127.0.0.1:%d/"):format(p:port()), { timeout = 5 })
      if ws then
        got = table.pack(ws:receive(2))
        again = table.pack(ws:receive(2))
      end
      rawpeer.finish(p, 10, helpers.idle)
    end)
    p:cleanup()
    if not ok then error(err, 0) end
    assert.truthy(ws, ("connect returned nil, %s, %s"):format(tostring(msg), tostring(name)))
    assert.same({ "last words", "text", n = 2 }, got)
    assert.is_nil(again[1])
    assert.equal("closed", again[3])
    assert.equal(1000, ws.closeCode)
    assert.equal("done", ws.closeReason)
  end)

  it("coroutine style: the early frame is the first receive()", function()
    local p = rawpeer.server({
      { handshake = { frames = { { opcode = 2, payload_hex = "cafe" } } } },
      { read_frames = { ["until"] = "close", timeout = 5 } },
      { send_frame = { opcode = 8, close_code = 1000 } },
      { close = true },
    })
    local got
    local ok, err = pcall(function()
      local ws = assert(moonws.connect(("ws://127.0.0.1:%d/"):format(p:port()), { timeout = 5 }))
      got = table.pack(ws:receive(2))
      assert.is_true(ws:close(1000))
      rawpeer.finish(p, 10, helpers.idle)
    end)
    p:cleanup()
    if not ok then error(err, 0) end
    assert.equal("\202\254", got[1])
    assert.equal("binary", got[2])
  end)
end)

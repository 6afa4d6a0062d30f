-- permessage-deflate (RFC 7692) through the binding of moonws.core
-- (csrc/lua/lconn.c), below the public API: a client conn and a server conn
-- in memory, their bytes moved by hand with take_output()/feed().  The
-- conns negotiate by themselves once set_compression() is called: the
-- client's request() carries the offer, the server's respond_upgrade()
-- answers from the request, the client's parse_response() judges the
-- answer; then send()/next_event() compress and inflate.

local helpers = require "spec.support.helpers" -- luacheck: ignore (paths)
local core = require "moonws.core"

local MAX = 16384

-- The request bytes a client conn would send, and the conn.
local function client_request(opts, request)
  local cli = core.conn("client")
  if opts ~= nil then cli:set_compression(opts) end
  assert(cli:request(request or { host = "example.org", target = "/chat" }))
  return cli, cli:take_output()
end

-- The 101 or its refusal reaches the client; returns parse_response's
-- values.
local function answer(cli, srv)
  cli:feed(srv:take_output())
  return cli:parse_response(MAX, nil, false)
end

-- A whole handshake.  Returns both conns, the server's answer, the
-- client's verdict (ok, protocol, extensions) and the request bytes.
-- setup(srv) runs after the 101 is queued, before the handshake ends.
local function handshake(client_opts, server_opts, extensions, setup)
  local cli, req_bytes = client_request(client_opts)
  local srv = core.conn("server")
  if server_opts ~= nil then srv:set_compression(server_opts) end
  srv:feed(req_bytes)
  local req = assert(srv:parse_request(MAX))
  local ok, sext = srv:respond_upgrade(req.key, nil, extensions, nil)
  assert.is_true(ok)
  if setup then setup(srv) end
  srv:handshake_done()
  local cok, proto, cext = answer(cli, srv)
  if cok then cli:handshake_done() end
  return cli, srv, sext, { cok, proto, cext }, req_bytes, req
end

-- Every event the receiver makes from what the sender queued.
local function deliver(from, to)
  local wire = from:take_output()
  to:feed(wire)
  local events = {}
  while true do
    local ev = table.pack(to:next_event())
    if ev[1] == nil then break end
    events[#events + 1] = ev
  end
  return events, wire
end

local function text(n)
  local words = { "moon ", "websocket ", "deflate ", "été ", "€ ", "lua " }
  local t, len, i = {}, 0, 0
  while len < n do
    i = i + 1
    local w = words[i % #words + 1]
    t[#t + 1] = w
    len = len + #w
  end
  return (table.concat(t):sub(1, n):gsub("[\128-\255]+$", "")) -- whole chars
end

-- Is the first frame on the wire marked compressed (RSV1)?
local function rsv1(wire) return (wire:byte(1) & 0x40) ~= 0 end

describe("permessage-deflate in moonws.core", function()
  it("is offered by a client with compression and agreed by the server", function()
    local cli, srv, sext, verdict, req_bytes = handshake(true, true)
    assert.matches("\r\nSec%-WebSocket%-Extensions: permessage%-deflate; "
      .. "client_max_window_bits\r\n", req_bytes)
    assert.equal("permessage-deflate", sext)
    assert.same({ true, "", "permessage-deflate" }, verdict)
    -- Both ways: long messages go compressed and come back whole.
    local msg = text(20000)
    assert.is_true(cli:send(msg))
    local events, wire = deliver(cli, srv)
    assert.is_true(rsv1(wire))
    assert.is_true(#wire < #msg / 4)
    assert.same({ "text", msg, n = 2 }, events[1])
    assert.is_true(srv:send(msg:rep(3), true))
    events, wire = deliver(srv, cli)
    assert.is_true(rsv1(wire))
    assert.same({ "binary", msg:rep(3), n = 2 }, events[1])
    -- Below the threshold (1024 by default) they go plain.
    assert.is_true(cli:send("short"))
    events, wire = deliver(cli, srv)
    assert.is_false(rsv1(wire))
    assert.same({ "text", "short", n = 2 }, events[1])
    cli:release()
    srv:release()
  end)

  it("negotiates the RFC 7692 parameters both sides asked for", function()
    local cli, srv, sext, verdict = handshake(
      { server_max_window_bits = 10, client_no_context_takeover = true, threshold = 0 },
      { client_max_window_bits = 9, server_no_context_takeover = true, threshold = 0 })
    local want = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
      .. "server_max_window_bits=10; client_max_window_bits=9"
    assert.equal(want, sext)
    assert.same({ true, "", want }, verdict)
    for i = 1, 5 do -- several messages each way, contexts reset each time
      local m = text(3000 + i)
      assert.is_true(cli:send(m))
      local events, wire = deliver(cli, srv)
      assert.is_true(rsv1(wire))
      assert.same({ "text", m, n = 2 }, events[1])
      assert.is_true(srv:send("x" .. m))
      events = deliver(srv, cli)
      assert.same({ "text", "x" .. m, n = 2 }, events[1])
    end
    -- Window bits 8 work too (moonws compresses within them).
    cli, srv, sext = handshake({ server_max_window_bits = 8, threshold = 0 },
                               { client_max_window_bits = 8, threshold = 0 })
    assert.equal("permessage-deflate; server_max_window_bits=8; client_max_window_bits=8", sext)
    local m = text(50000)
    assert.is_true(srv:send(m))
    assert.same({ "text", m, n = 2 }, deliver(srv, cli)[1])
    assert.is_true(cli:send(m))
    assert.same({ "text", m, n = 2 }, deliver(cli, srv)[1])
  end)

  it("stays off unless both sides want it", function()
    -- The server does not: it answers nothing, whatever the client offered.
    local cli, srv, sext, verdict, req_bytes = handshake(true, nil)
    assert.matches("permessage%-deflate", req_bytes)
    assert.equal("", sext)
    assert.same({ true, "", "" }, verdict)
    assert.is_true(cli:send(text(5000)))
    local events, wire = deliver(cli, srv)
    assert.is_false(rsv1(wire))
    assert.equal("text", events[1][1])
    -- The client does not: no offer, no answer.
    cli, srv, sext, verdict, req_bytes = handshake(false, true)
    assert.is_nil(req_bytes:find("Sec-WebSocket-Extensions", 1, true))
    assert.equal("", sext)
    assert.same({ true, "", "" }, verdict)
    assert.is_true(srv:send(text(5000)))
    events, wire = deliver(srv, cli)
    assert.is_false(rsv1(wire))
    -- A server that limits the client's window declines an offer that
    -- would not let it.
    local c2, req2 = client_request(false, { host = "h", target = "/",
                                             extensions = "permessage-deflate" })
    local s2 = core.conn("server")
    s2:set_compression { client_max_window_bits = 10 }
    s2:feed(req2)
    local req = assert(s2:parse_request(MAX))
    local ok, ext = s2:respond_upgrade(req.key)
    assert.is_true(ok)
    assert.equal("", ext)
    c2:release()
    s2:release()
  end)

  it("takes the first acceptable offer among several header fields", function()
    local cli = core.conn("client")
    assert(cli:request { host = "h", target = "/", headers = {
      ["Sec-WebSocket-Extensions"] = "permessage-deflate; client_max_window_bits=7, x-foo",
    } })
    -- A second field, as a proxy could add it.
    local bytes = cli:take_output():gsub("\r\n\r\n$",
      "\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=11\r\n\r\n")
    local srv = core.conn("server")
    srv:set_compression(true)
    srv:feed(bytes)
    local req = assert(srv:parse_request(MAX))
    local ok, ext = srv:respond_upgrade(req.key)
    assert.is_true(ok)
    assert.equal("permessage-deflate; server_max_window_bits=11", ext)
    assert.matches("\r\nSec%-WebSocket%-Extensions: permessage%-deflate; server_max_window_bits=11\r\n",
                   srv:take_output())
  end)

  it("fails the client on an answer that breaks the offer", function()
    local cases = {
      { true, "permessage-deflate; server_max_window_bits=16",
        "invalid permessage-deflate answer: invalid server_max_window_bits (not 8..15)" },
      { true, "x-foo",
        "invalid permessage-deflate answer: server answered with an extension that was not offered" },
      { true, "permessage-deflate; client_max_window_bits",
        "invalid permessage-deflate answer: client_max_window_bits without a value in the answer" },
      { { client_max_window_bits = 10 }, "permessage-deflate; client_max_window_bits=12",
        "invalid permessage-deflate answer: client_max_window_bits larger than offered" },
      { { server_max_window_bits = 10 }, "permessage-deflate",
        "invalid permessage-deflate answer: server did not confirm server_max_window_bits" },
      { true, "permessage-deflate; permessage-deflate",
        "invalid permessage-deflate answer: unknown permessage-deflate parameter" },
      { true, "permessage-deflate, permessage-deflate",
        "invalid permessage-deflate answer: server answered permessage-deflate twice" },
    }
    for _, c in ipairs(cases) do
      -- A server without compression writes the extensions it is given.
      local _, _, _, verdict = handshake(c[1], nil, c[2])
      assert.is_false(verdict[1], c[2])
      assert.equal(c[3], verdict[2])
      assert.equal(101, verdict[3])
    end
    -- Without an offer, any answer is refused by the handshake itself.
    local _, _, _, verdict = handshake(false, nil, "permessage-deflate")
    assert.same({ false, "server sent Sec-WebSocket-Extensions but none were offered", 101 },
                { verdict[1], verdict[2], verdict[3] })
  end)

  it("sends fragmented messages compressed piece by piece", function()
    local cli, srv = handshake(true, true)
    local parts = { text(3000), "", text(10), text(70000) }
    for i, p in ipairs(parts) do
      assert.is_true(cli:send_fragment(p, false, i == #parts))
      if i == 2 then assert.is_true(cli:ping("between")) end
    end
    local events, wire = deliver(cli, srv)
    assert.is_true(rsv1(wire))
    assert.equal("ping", events[1][1])
    assert.same({ "text", table.concat(parts), n = 2 }, events[2])
    assert.is_true(#wire < 20000)
  end)

  it("limits the inflated size and refuses corrupt data", function()
    -- limits() rebuilds the core after the extension was agreed.
    local cli, srv = handshake(true, true, nil, function(s) s:limits(10000, 10000) end)
    assert.is_true(cli:send(text(9000)))
    assert.equal("text", deliver(cli, srv)[1][1])
    assert.is_true(cli:send(string.rep("a", 1000000))) -- ~1 KB on the wire
    local events, wire = deliver(cli, srv)
    assert.is_true(#wire < 10000)
    assert.same({ "error", "payload exceeds max_payload 10000 bytes once decompressed", "too_big", 1009,
                  n = 4 },
                events[1])
    -- The failure's close frame waits for fail_close (the Lua layer first
    -- lets the application answer earlier messages).
    assert.same({ false, false, true, n = 3 }, table.pack(srv:state()))
    assert.is_true(srv:fail_close())
    assert.same({ true, false, true, n = 3 }, table.pack(srv:state()))
    -- Corrupt data: 1007.
    cli, srv = handshake(true, true)
    cli:feed("\xc1\x03\xff\xff\xff") -- an unmasked server frame, BTYPE 11
    events = table.pack(cli:next_event())
    assert.same({ "error", "invalid compressed data: invalid block type", "invalid_data", 1007,
                  n = 4 }, events)
    -- RSV1 on a control frame: 1002.
    cli, srv = handshake(true, true)
    cli:feed("\xc9\x00")
    events = table.pack(cli:next_event())
    assert.same({ "error", "RSV1 set on a control frame", "protocol", 1002, n = 4 }, events)
  end)

  it("closes cleanly and releases the zlib state", function()
    local cli, srv = handshake(true, true)
    assert.is_true(cli:send(text(5000)))
    deliver(cli, srv)
    assert.is_true(cli:close(1000, "bye"))
    local events = deliver(cli, srv)
    assert.same({ "close", 1000, "bye", n = 3 }, events[1])
    -- After its close the server sends nothing more, compressed or not.
    local ok, _, name = srv:send(text(5000))
    assert.is_nil(ok)
    assert.equal("closed", name)
    events = deliver(srv, cli)
    assert.same({ "close", 1000, "bye", n = 3 }, events[1]) -- code and reason echoed
    cli:release()
    srv:release()
    assert.has_error(function() cli:send("x") end, "attempt to use a closed websocket connection")
    -- Collected with live zlib streams (valgrind and ASan runs watch this).
    for _ = 1, 20 do
      local c, s = handshake(true, true)
      c:send(text(5000)); deliver(c, s)
      s:send(text(5000)); deliver(s, c)
    end
    collectgarbage()
    collectgarbage()
  end)

  it("checks its options and when they may be set", function()
    local c = core.conn("client")
    assert.has_error(function() c:set_compression { client_max_window_bits = 7 } end,
                     "compression.client_max_window_bits must be 8..15")
    assert.has_error(function() c:set_compression { server_max_window_bits = 16 } end,
                     "compression.server_max_window_bits must be 8..15")
    assert.has_error(function() c:set_compression { level = 10 } end,
                     "compression.level out of range")
    assert.has_error(function() c:set_compression { threshold = "big" } end,
                     "compression.threshold must be an integer")
    assert.has_error(function() c:set_compression(42) end)
    c:set_compression { client_max_window_bits = true, server_max_window_bits = false }
    assert(c:request { host = "h", target = "/" })
    assert.matches("Extensions: permessage%-deflate; client_max_window_bits\r\n", c:take_output())
    local cli = handshake(true, true)
    assert.has_error(function() cli:set_compression(true) end,
                     "compression can only be set before the handshake")
  end)
end)

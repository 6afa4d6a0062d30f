-- RFC 6455 framing and closing rules as a moonws CLIENT must follow them,
-- checked against a raw-socket server (spec/peers/raw_peer.py, not built on
-- moonws) that scripts every byte it sends and reports every frame it gets.

local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"   -- luacheck: ignore (rawpeer starts them)
local rawpeer = require "spec.support.rawpeer"
local core = require "moonws.core"

local select_events = rawpeer.select

---------------------------------------------------------------- harness

local record, kinds, count_closes = rawpeer.record, rawpeer.kinds, rawpeer.count_closes

-- Start a raw server with steps; call body(port, p) and clean up after it.
local function with_peer(steps, body)
  local p = rawpeer.server(steps)
  local ok, err = pcall(function() body(p:port(), p) end)
  p:cleanup()
  if not ok then error(err, 0) end
end

-- Event style: a moonws.new client (options opts) against the raw server;
-- returns the peer's observations and the client's event log once onclose
-- fired and the peer finished.
local function run_client(steps, opts)
  local events, log
  with_peer(steps, function(port, p)
    log = {}
    local ws = moonws.new(("ws://127.0.0.1:%d/"):format(port), opts)
    record(ws, log)
    helpers.run_until(function() return count_closes(log) > 0 end, 10, "onclose")
    events = rawpeer.finish(p, 10, helpers.idle)
    helpers.idle(0.05) -- a second onclose would show up now
  end)
  return events, log
end

local function handshake(t) return { handshake = t or {} } end
local function frame(f) return { send_frame = f } end
local function read_until(what, t) return { read_frames = { ["until"] = what, timeout = t or 5 } } end

-- The peer's observations after the request it read.
local function after_request(events)
  assert.equal("request", events[1].event)
  assert.equal("GET", events[1].method)
  local out = {}
  for i = 2, #events do out[#out + 1] = events[i] end
  return out
end

-- Every frame the client sent is masked (RFC 6455 5.3) and the peer says so.
local function assert_masked(frames)
  for _, f in ipairs(frames) do
    assert.is_true(f.masked)
    assert.is_true(f.mask_ok)
    assert.equal(8, #f.mask_key_hex)
  end
end

---------------------------------------------------------------- specs

describe("client: masking (RFC 6455 5.1, 5.3)", function()
  it("a masked server frame -> 1002", function()
    local events, log = run_client {
      handshake(),
      frame { opcode = 1, payload_text = "fine" },
      frame { opcode = 1, payload_text = "masked!", mask = true },
      read_until("eof"),
    }
    local seen = after_request(events)
    assert.equal("frame", seen[1].event)
    assert.equal(8, seen[1].opcode)
    assert.equal(1002, seen[1].close_code)
    assert_masked { seen[1] }
    assert.equal("eof", seen[2].event)
    -- the good message arrived; nothing from the masked one; error then close, once
    assert.same({ "open", "message", "error", "close" }, kinds(log))
    assert.equal("fine", log[2].data)
    assert.equal("protocol", log[3].error)
    assert.equal(1002, log[3].code)
    assert.equal(1006, log[4].code)
    assert.is_false(log[4].wasClean)
  end)

  it("client frames are masked, with a different key for every frame", function()
    with_peer({
      handshake(),
      read_until("close"),
      frame { opcode = 8, close_code = 1000 },
      read_until("eof", 3),
    }, function(port, p)
      local ws = assert(moonws.connect(("ws://127.0.0.1:%d/"):format(port),
        { timeout = 5, ping_timeout = 0.2 }))
      assert(ws:send("one"))
      assert(ws:send("two", "binary"))
      assert(ws:send(("three"):rep(100)))
      local rtt, _, name = ws:ping("p") -- it waits for a pong this peer never sends
      assert.same({ nil, "timeout" }, { rtt, name })
      assert(ws:send(""))
      assert.is_true(ws:close(1000, "bye"))
      local events = rawpeer.finish(p, 10, helpers.idle)
      local frames = select_events(after_request(events), "frame")
      assert.equal(6, #frames)
      assert_masked(frames)
      local expect = {
        { 1, rawpeer.hex("one") }, { 2, rawpeer.hex("two") },
        { 1, rawpeer.hex(("three"):rep(100)) }, { 9, rawpeer.hex("p") }, { 1, "" },
        { 8, "03e8" .. rawpeer.hex("bye") },
      }
      local keys = {}
      for i, f in ipairs(frames) do
        assert.same(expect[i], { f.opcode, f.payload_hex })
        assert.is_true(f.fin)
        assert.equal(0, f.rsv)
        assert.is_nil(keys[f.mask_key_hex], "mask key reused: " .. f.mask_key_hex)
        keys[f.mask_key_hex] = true
      end
      assert.equal(1000, ws.closeCode)
    end)
  end)
end)

describe("client: reserved bits and UTF-8 from the server", function()
  it("RSV1 set by the server (no extension) -> 1002", function()
    local events, log = run_client {
      handshake(), frame { opcode = 1, payload_text = "x", rsv = 4 }, read_until("eof"),
    }
    local seen = after_request(events)
    assert.equal(1002, seen[1].close_code)
    assert_masked { seen[1] }
    assert.same({ "open", "error", "close" }, kinds(log))
    assert.equal("protocol", log[2].error)
    assert.equal(1002, log[2].code)
    assert.equal(1006, log[3].code)
    assert.is_false(log[3].wasClean)
  end)

  it("invalid UTF-8 in a server text frame -> 1007", function()
    local events, log = run_client {
      handshake(), frame { opcode = 1, payload_hex = "eda080" }, read_until("eof"),
    }
    local seen = after_request(events)
    assert.equal(1007, seen[1].close_code)
    assert.same({ "open", "error", "close" }, kinds(log))
    assert.equal("invalid_data", log[2].error)
    assert.equal(1007, log[2].code)
    assert.equal(1006, log[3].code)
    assert.is_false(log[3].wasClean)
  end)

  it("a server frame over max_payload -> 1009", function()
    local events, log = run_client({
      handshake(), frame { opcode = 2, payload_size = 1001 }, read_until("eof"),
    }, { max_payload = 1000 })
    local seen = after_request(events)
    assert.equal(1009, seen[1].close_code)
    assert.same({ "open", "error", "close" }, kinds(log))
    assert.equal("too_big", log[2].error)
    assert.equal(1009, log[2].code)
    assert.equal(1006, log[3].code)
  end)
end)

describe("client: closing handshake (RFC 6455 5.5.1, 7.1)", function()
  it("a server close 1000 is echoed; the client waits for the server's TCP close", function()
    local events, log = run_client {
      handshake(),
      frame { opcode = 8, close_code = 1000, close_reason = "bye" },
      read_until("close"),
      read_until("eof", 0.6),      -- must time out: the client leaves TCP to the server
      { mark = "server closes" },
      { close = true },
    }
    local seen = after_request(events)
    assert.equal(8, seen[1].opcode)
    assert.equal(1000, seen[1].close_code)
    assert_masked { seen[1] }
    assert.equal("timeout", seen[2].event)
    assert.equal("mark", seen[3].event)
    assert.same({ "open", "close" }, kinds(log))
    assert.equal(1000, log[2].code)
    assert.equal("bye", log[2].reason)
    assert.is_true(log[2].wasClean)
  end)

  it("the readyState is CLOSING until the server ends TCP, then CLOSED", function()
    with_peer({
      handshake(),
      frame { opcode = 8, close_code = 3001, close_reason = "later" },
      read_until("close"),
      { sleep = 0.5 },
      { close = true },
    }, function(port, p)
      local log = {}
      local ws = moonws.new(("ws://127.0.0.1:%d/"):format(port))
      record(ws, log)
      rawpeer.wait_event(p, "frame", 5, helpers.idle)
      assert.equal(moonws.CLOSING, ws.readyState)
      assert.equal(0, count_closes(log))
      rawpeer.finish(p, 10, helpers.idle)
      helpers.run_until(function() return count_closes(log) > 0 end, 5, "onclose")
      assert.equal(moonws.CLOSED, ws.readyState)
      assert.equal(3001, log[#log].code)
      assert.equal("later", log[#log].reason)
      assert.is_true(log[#log].wasClean)
      assert.equal(3001, ws.closeCode)
      assert.equal("later", ws.closeReason)
    end)
  end)

  it("a server that never answers close: after close_timeout, 1006 and wasClean=false", function()
    with_peer({
      handshake(),
      read_until("close"),
      read_until("eof", 4),       -- the client gives up and drops TCP
    }, function(port, p)
      local log = {}
      local ws = assert(moonws.connect(("ws://127.0.0.1:%d/"):format(port),
        { close_timeout = 0.5 }))
      record(ws, log)
      local t0 = core.now()
      local ok, msg, name = ws:close(1000, "going")
      local elapsed = core.now() - t0
      assert.is_nil(ok)
      assert.equal("string", type(msg))
      assert.equal("closed", name)
      assert.is_true(elapsed >= 0.45 and elapsed < 2, "waited " .. elapsed .. "s")
      local events = rawpeer.finish(p, 10, helpers.idle)
      local seen = after_request(events)
      assert.equal(8, seen[1].opcode)
      assert.equal(1000, seen[1].close_code)
      assert.equal("going", seen[1].close_reason)
      assert.equal("eof", seen[2].event)
      helpers.idle(0.05)
      assert.same({ "close" }, kinds(log))
      assert.equal(1006, log[1].code)
      assert.equal("", log[1].reason)
      assert.is_false(log[1].wasClean)
    end)
  end)
end)

describe("client: opening handshake timeout", function()
  it("a server that never completes the handshake -> nil, msg, 'timeout' after `timeout`", function()
    with_peer({
      handshake { answer = false },
      read_until("eof", 4),
    }, function(port, p)
      local t0 = core.now()
      local ws, msg, name = moonws.connect(("ws://127.0.0.1:%d/"):format(port), { timeout = 0.5 })
      local elapsed = core.now() - t0
      assert.is_nil(ws)
      assert.equal("string", type(msg))
      assert.equal("timeout", name)
      assert.is_true(elapsed >= 0.45 and elapsed < 2, "waited " .. elapsed .. "s")
      local events = rawpeer.finish(p, 10, helpers.idle)
      assert.equal("request", events[1].event)
      assert.equal("eof", events[2].event) -- the client dropped the connection
    end)
  end)

  it("event style: the timeout fires onerror('timeout') then onclose(1006) once", function()
    local events, log = run_client({ handshake { answer = false }, read_until("eof", 4) },
      { timeout = 0.5 })
    assert.same({ "error", "close" }, kinds(log))
    assert.equal("timeout", log[1].error)
    assert.equal(1006, log[2].code)
    assert.is_false(log[2].wasClean)
    assert.equal("eof", events[2].event)
  end)
end)

describe("client: ping (RFC 6455 5.5.2, 5.5.3)", function()
  it("a ping from the server is answered with a masked pong carrying its payload", function()
    local events, log = run_client {
      handshake(),
      frame { opcode = 9, payload_hex = "0001feff" },
      { read_frames = { ["until"] = "opcode", opcode = 10, timeout = 3 } },
      frame { opcode = 8, close_code = 1000 },
      read_until("close"),
      { close = true },
    }
    local seen = after_request(events)
    assert.equal(10, seen[1].opcode)
    assert.equal("0001feff", seen[1].payload_hex)
    assert_masked { seen[1] }
    assert.equal(8, seen[2].opcode)
    assert.same({ "open", "ping", "close" }, kinds(log))
    assert.equal("\0\1\254\255", log[2].data)
    assert.is_true(log[3].wasClean)
  end)
end)

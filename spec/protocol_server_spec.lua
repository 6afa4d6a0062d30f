-- RFC 6455 framing rules as a moonws SERVER must enforce them, checked
-- with a raw-socket client (spec/peers/raw_peer.py) that sends what a
-- correct library never would.  For every violation: the close frame the
-- peer receives carries the exact RFC code, onerror fires first with the
-- error name and code, onclose follows once with 1006 / wasClean=false,
-- and nothing from the bad frame reaches onmessage.

local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"   -- luacheck: ignore (rawpeer starts them)
local rawpeer = require "spec.support.rawpeer"

local select_events = rawpeer.select

---------------------------------------------------------------- harness

local record, kinds, count_closes = rawpeer.record, rawpeer.kinds, rawpeer.count_closes

-- Run a raw client script against a fresh event-style moonws server with
-- options opts; returns the peer's observations, the server socket's event
-- log and the server socket.
local function run_case(steps, opts)
  local o = { host = "127.0.0.1", port = 0 }
  for k, v in pairs(opts or {}) do o[k] = v end
  local srv = assert(moonws.listen(o))
  local log, conns = {}, {}
  srv.onconnection = function(ws)
    conns[#conns + 1] = ws
    record(ws, log)
  end
  local p = rawpeer.client(srv.port, steps)
  local ok, events = pcall(function()
    local ev = rawpeer.finish(p, 15, helpers.idle)
    helpers.run_until(function() return count_closes(log) > 0 end, 5, "onclose")
    helpers.idle(0.05) -- a second onclose would show up now
    return ev
  end)
  srv:close()
  p:cleanup()
  if not ok then error(events, 0) end
  assert.equal(1, #conns)
  return events, log, conns[1]
end

local function handshake() return { handshake = {} } end
local function frame(f) return { send_frame = f } end
local function until_eof(t) return { read_frames = { ["until"] = "eof", timeout = t or 5 } } end
local function until_close(t) return { read_frames = { ["until"] = "close", timeout = t or 5 } } end

-- A script: handshake, the given frames, then read everything until EOF.
local function violation(...)
  local steps = { handshake() }
  for _, f in ipairs({ ... }) do steps[#steps + 1] = frame(f) end
  steps[#steps + 1] = until_eof()
  return steps
end

-- A script: handshake, the given frames, then a clean closing handshake.
local function then_close(...)
  local steps = { handshake() }
  for _, f in ipairs({ ... }) do steps[#steps + 1] = frame(f) end
  steps[#steps + 1] = frame { opcode = 8, close_code = 1000 }
  steps[#steps + 1] = until_close()
  steps[#steps + 1] = until_eof()
  return steps
end

-- The peer's observations after the handshake response.
local function after_response(events)
  assert.equal("response", events[1].event)
  assert.equal(101, events[1].status)
  local out = {}
  for i = 2, #events do out[#out + 1] = events[i] end
  return out
end

-- The failure contract: the only frame the peer got is one unmasked close
-- frame with `code`, then the server ended TCP; onerror(name, code) then
-- onclose(1006, wasClean=false), once; no message at all.
local function assert_failure(events, log, code, name)
  local seen = after_response(events)
  assert.equal("frame", seen[1].event)
  assert.equal(8, seen[1].opcode)
  assert.equal(code, seen[1].close_code)
  assert.is_false(seen[1].masked)
  assert.is_true(seen[1].fin)
  assert.equal(0, seen[1].rsv)
  assert.equal("eof", seen[2].event)
  assert.equal("done", seen[3].event)
  assert.same({ "error", "close" }, kinds(log))
  assert.equal(name, log[1].error)
  assert.equal(code, log[1].code)
  assert.equal("string", type(log[1].message))
  assert.equal(1006, log[2].code)
  assert.is_false(log[2].wasClean)
end

local function expect_failure(code, name, steps, opts)
  local events, log = run_case(steps, opts)
  assert_failure(events, log, code, name)
  return events, log
end

-- The clean contract: the peer got `frames` (opcode list, the close echo
-- last) and EOF; onclose(1000) clean; messages as given, nothing else.
local function expect_clean(steps, messages, opts)
  local events, log = run_case(steps, opts)
  local seen = after_response(events)
  local last_close = select_events(seen, "frame", 8)
  assert.equal(1, #last_close)
  assert.equal(1000, last_close[1].close_code)
  local got = {}
  for _, e in ipairs(log) do
    if e.kind == "message" then got[#got + 1] = { e.data, e.binary } end
  end
  assert.same(messages, got)
  for _, e in ipairs(log) do
    assert.are_not.equal("error", e.kind, e.message)
  end
  assert.equal(1, count_closes(log))
  assert.equal("close", log[#log].kind)
  assert.equal(1000, log[#log].code)
  assert.is_true(log[#log].wasClean)
  return events, log, seen
end

---------------------------------------------------------------- specs

describe("server: masking (RFC 6455 5.1, 5.3)", function()
  it("unmasked client frame -> 1002", function()
    expect_failure(1002, "protocol", violation { opcode = 1, payload_text = "x", mask = false })
  end)

  it("a masked client frame is unmasked and delivered", function()
    expect_clean(then_close { opcode = 1, payload_text = "masked ok", mask_key_hex = "a1b2c3d4" },
      { { "masked ok", false } })
  end)
end)

describe("server: reserved bits (RFC 6455 5.2, no extension negotiated)", function()
  for _, case in ipairs({ { "RSV1", 4 }, { "RSV2", 2 }, { "RSV3", 1 } }) do
    it(case[1] .. " set -> 1002", function()
      expect_failure(1002, "protocol", violation { opcode = 1, payload_text = "x", rsv = case[2] })
    end)
  end
end)

describe("server: opcodes (RFC 6455 5.2)", function()
  for op = 3, 7 do
    it(("reserved data opcode 0x%X -> 1002"):format(op), function()
      expect_failure(1002, "protocol", violation { opcode = op, payload_text = "x" })
    end)
  end
  for op = 0xB, 0xF do
    it(("reserved control opcode 0x%X -> 1002"):format(op), function()
      expect_failure(1002, "protocol", violation { opcode = op, payload_text = "x" })
    end)
  end
end)

describe("server: control frames (RFC 6455 5.5)", function()
  it("control frame payload 126 -> 1002", function()
    expect_failure(1002, "protocol", violation { opcode = 9, payload_size = 126 })
  end)

  it("control frame payload 125 is allowed (pong echoes it)", function()
    local _, _, seen = expect_clean(then_close { opcode = 9, payload_size = 125 }, {})
    local pongs = select_events(seen, "frame", 10)
    assert.equal(1, #pongs)
    assert.equal(("61"):rep(125), pongs[1].payload_hex)
  end)

  it("fragmented control frame (FIN=0 ping) -> 1002", function()
    expect_failure(1002, "protocol", violation { opcode = 9, fin = false, payload_text = "p" })
  end)
end)

describe("server: fragmentation (RFC 6455 5.4)", function()
  it("continuation with nothing to continue -> 1002", function()
    expect_failure(1002, "protocol", violation { opcode = 0, payload_text = "orphan" })
  end)

  it("new text frame inside a fragmented message -> 1002", function()
    expect_failure(1002, "protocol", violation(
      { opcode = 1, fin = false, payload_text = "first " },
      { opcode = 1, fin = true, payload_text = "intruder" }))
  end)

  it("new binary frame inside a fragmented message -> 1002", function()
    expect_failure(1002, "protocol", violation(
      { opcode = 2, fin = false, payload_hex = "0102" },
      { opcode = 2, fin = true, payload_hex = "0304" }))
  end)

  it("ping between fragments is allowed: pong with the payload, message whole", function()
    local _, log, seen = expect_clean(then_close(
      { opcode = 1, fin = false, payload_text = "frag" },
      { opcode = 9, payload_text = "mid-ping" },
      { opcode = 0, fin = false, payload_text = "men" },
      { opcode = 0, fin = true, payload_text = "ted" }), { { "fragmented", false } })
    local pongs = select_events(seen, "frame", 10)
    assert.equal(1, #pongs)
    assert.equal(rawpeer.hex("mid-ping"), pongs[1].payload_hex)
    assert.is_false(pongs[1].masked)
    assert.is_true(pongs[1].fin)
    -- onping saw it before the message completed
    assert.same({ "ping", "message", "close" }, kinds(log))
    assert.equal("mid-ping", log[1].data)
  end)

  it("binary message in fragments arrives whole as binary", function()
    expect_clean(then_close(
      { opcode = 2, fin = false, payload_hex = "00ff" },
      { opcode = 0, fin = false, payload_hex = "" },
      { opcode = 0, fin = true, payload_hex = "80" }), { { "\0\255\128", true } })
  end)
end)

describe("server: payload length encoding (RFC 6455 5.2)", function()
  it("64-bit length with the most significant bit set -> 1002", function()
    -- FIN+text, MASK+127, length 0x8000000000000005, key 00000000, 5 bytes
    expect_failure(1002, "protocol", {
      handshake(),
      { send_raw_hex = "81ff" .. "8000000000000005" .. "00000000" .. "6869686968" },
      until_eof(),
    })
  end)

  it("length 5 in the 16-bit form (non-minimal) -> 1002", function()
    expect_failure(1002, "protocol", violation { opcode = 1, payload_text = "hello", length_form = "16" })
  end)

  it("length 5 in the 64-bit form (non-minimal) -> 1002", function()
    expect_failure(1002, "protocol", violation { opcode = 1, payload_text = "hello", length_form = "64" })
  end)

  it("length 200 in the 64-bit form (non-minimal) -> 1002", function()
    expect_failure(1002, "protocol", violation { opcode = 2, payload_size = 200, length_form = "64" })
  end)

  it("minimal 16-bit (126) and 64-bit (65536) lengths are accepted", function()
    expect_clean(then_close(
      { opcode = 2, payload_size = 126 },
      { opcode = 2, payload_size = 65536 }),
      { { ("a"):rep(126), true }, { ("a"):rep(65536), true } })
  end)
end)

describe("server: UTF-8 in text messages (RFC 6455 8.1)", function()
  local bad = {
    { "lone continuation byte", "80" },
    { "overlong encoding of '/'", "c0af" },
    { "UTF-16 surrogate U+D800", "eda080" },
    { "code point over U+10FFFF", "f4908080" },
    { "byte 0xFF", "41ff42" },
  }
  for _, case in ipairs(bad) do
    it("invalid UTF-8 in a single text frame (" .. case[1] .. ") -> 1007", function()
      expect_failure(1007, "invalid_data", violation { opcode = 1, payload_hex = case[2] })
    end)
  end

  it("invalid UTF-8 only at the join of valid-looking fragments -> 1007", function()
    -- "41 f0 90" is a valid prefix; the next fragment's "41" breaks the 4-byte character
    expect_failure(1007, "invalid_data", violation(
      { opcode = 1, fin = false, payload_hex = "41f090" },
      { opcode = 0, fin = true, payload_hex = "4142" }))
  end)

  it("invalid UTF-8 at the join: surrogate formed across fragments -> 1007", function()
    expect_failure(1007, "invalid_data", violation(
      { opcode = 1, fin = false, payload_hex = "41ed" },
      { opcode = 0, fin = false, payload_hex = "a0" },
      { opcode = 0, fin = true, payload_hex = "80" }))
  end)

  it("truncated sequence at the end of a fragmented message -> 1007", function()
    expect_failure(1007, "invalid_data", violation(
      { opcode = 1, fin = false, payload_hex = "41" },
      { opcode = 0, fin = true, payload_hex = "e282" }))
  end)

  it("truncated sequence at the end of a single text frame -> 1007", function()
    expect_failure(1007, "invalid_data", violation { opcode = 1, payload_hex = "41e282" })
  end)

  -- U+1F600 = f0 9f 98 80, inside "a...b"
  local splits = {
    { "a|f0|9f9880b", { "61f0", "9f9880", "62" } },
    { "af09f|98 80b", { "61f09f", "988062" } },
    { "af09f98|80b", { "61f09f98", "8062" } },
    { "every byte its own fragment", { "61", "f0", "9f", "98", "80", "62" } },
  }
  for _, case in ipairs(splits) do
    it("valid 4-byte character split across fragments is delivered (" .. case[1] .. ")", function()
      local frames = {}
      for i, h in ipairs(case[2]) do
        frames[i] = { opcode = i == 1 and 1 or 0, fin = i == #case[2], payload_hex = h }
      end
      expect_clean(then_close(table.unpack(frames)), { { "a\u{1F600}b", false } })
    end)
  end
end)

describe("server: close frames (RFC 6455 5.5.1, 7.4)", function()
  it("close frame with a 1-byte payload -> 1002", function()
    expect_failure(1002, "protocol", violation { opcode = 8, payload_hex = "03" })
  end)

  for _, code in ipairs({ 0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000 }) do
    it(("close code %d (not allowed on the wire) -> 1002"):format(code), function()
      expect_failure(1002, "protocol", violation { opcode = 8, close_code = code })
    end)
  end

  for _, code in ipairs({ 1000, 1001, 3000, 4999 }) do
    it(("close code %d is echoed; onclose sees code and reason, wasClean"):format(code), function()
      local events, log = run_case({
        handshake(),
        frame { opcode = 8, close_code = code, close_reason = "bye \u{e9}" },
        until_close(), until_eof(),
      })
      local seen = after_response(events)
      assert.equal(8, seen[1].opcode)
      assert.equal(code, seen[1].close_code)
      assert.is_false(seen[1].masked)
      assert.equal("eof", seen[2].event)
      assert.same({ "close" }, kinds(log))
      assert.equal(code, log[1].code)
      assert.equal("bye \u{e9}", log[1].reason)
      assert.is_true(log[1].wasClean)
    end)
  end

  it("close reason with invalid UTF-8 -> 1007", function()
    expect_failure(1007, "invalid_data",
      violation { opcode = 8, close_code = 1000, close_reason_hex = "6f6bff" })
  end)

  it("empty close frame: echoed empty, onclose sees 1005, wasClean", function()
    local events, log = run_case({
      handshake(), frame { opcode = 8, payload_hex = "" }, until_close(), until_eof(),
    })
    local seen = after_response(events)
    assert.equal(8, seen[1].opcode)
    assert.equal("", seen[1].payload_hex)
    assert.equal("eof", seen[2].event)
    assert.same({ "close" }, kinds(log))
    assert.equal(1005, log[1].code)
    assert.equal("", log[1].reason)
    assert.is_true(log[1].wasClean)
  end)

  it("data after a close frame is ignored", function()
    local events, log = run_case({
      handshake(),
      { send_frames = {   -- one write: moonws has the late frames in hand
        { opcode = 1, payload_text = "before" },
        { opcode = 8, close_code = 1000, close_reason = "done" },
        { opcode = 1, payload_text = "after close" },
        { opcode = 9, payload_text = "late ping" },
      } },
      until_close(), until_eof(),
    })
    local seen = after_response(events)
    assert.equal(8, seen[1].opcode) -- no pong for the late ping, only the echo
    assert.equal(1000, seen[1].close_code)
    assert.same({ "message", "close" }, kinds(log))
    assert.equal("before", log[1].data)
    assert.equal(1000, log[2].code)
    assert.equal("done", log[2].reason)
    assert.is_true(log[2].wasClean)
  end)
end)

describe("server: size limits (max_payload, max_frame -> 1009)", function()
  it("a message of exactly max_payload is delivered", function()
    expect_clean(then_close { opcode = 2, payload_size = 1000 }, { { ("a"):rep(1000), true } },
      { max_payload = 1000 })
  end)

  it("one frame over max_payload -> 1009", function()
    expect_failure(1009, "too_big", violation { opcode = 2, payload_size = 1001 },
      { max_payload = 1000 })
  end)

  it("fragments whose sum exceeds max_payload -> 1009", function()
    expect_failure(1009, "too_big", violation(
      { opcode = 1, fin = false, payload_size = 600 },
      { opcode = 0, fin = false, payload_size = 300 },
      { opcode = 0, fin = true, payload_size = 101 }), { max_payload = 1000 })
  end)

  it("a frame over max_frame -> 1009", function()
    expect_failure(1009, "too_big", violation { opcode = 2, payload_size = 501 },
      { max_frame = 500 })
  end)

  it("frames within max_frame make a bigger message", function()
    expect_clean(then_close(
      { opcode = 2, fin = false, payload_size = 500 },
      { opcode = 0, fin = false, payload_size = 500 },
      { opcode = 0, fin = true, payload_size = 500 }), { { ("a"):rep(1500), true } },
      { max_frame = 500 })
  end)

  it("a header announcing 2^40 bytes -> 1009 at once, before any data", function()
    local events = expect_failure(1009, "too_big", {
      handshake(),
      frame { opcode = 2, len_override = 1 << 40, length_form = "64" },
      until_eof(2),
    })
    assert.equal(0, #select_events(events, "timeout"))
  end)
end)

describe("server: robustness", function()
  it("a frame written one byte at a time still works", function()
    expect_clean(then_close(
      { opcode = 1, payload_text = "byte by byte", split = 1, split_sleep = 0.01 },
      { opcode = 2, payload_size = 130, split = 1, split_sleep = 0.001 }),
      { { "byte by byte", false }, { ("a"):rep(130), true } })
  end)

  it("a peer ping is answered with its payload while the app sleeps (coroutine style)", function()
    local results, woke = {}, false
    local srv = assert(moonws.serve({ host = "127.0.0.1", port = 0 }, function(ws)
      moonws.sleep(1.5)                      -- never calls receive meanwhile
      woke = true
      local data, kind = ws:receive(2)
      results[#results + 1] = { data, kind }
      results[#results + 1] = { ws:receive(2) }
    end))
    local p = rawpeer.client(srv.port, {
      handshake(),
      frame { opcode = 9, payload_hex = "00ff7f80" },
      { read_frames = { ["until"] = "opcode", opcode = 10, timeout = 1 } },
      { mark = "ponged" },
      frame { opcode = 1, payload_text = "after pong" },
      frame { opcode = 8, close_code = 1000 },
      until_close(3), until_eof(3),
    })
    local ok, err = pcall(function()
      rawpeer.wait_event(p, "mark", 5, helpers.idle)
      assert.is_false(woke) -- the pong came while the handler slept
      local events = rawpeer.finish(p, 10, helpers.idle)
      helpers.run_until(function() return #results == 2 end, 5, "handler")
      local seen = after_response(events)
      assert.equal(10, seen[1].opcode)
      assert.equal("00ff7f80", seen[1].payload_hex)
      assert.is_false(seen[1].masked)
      assert.equal("mark", seen[2].event)
      assert.same({ "after pong", "text" }, results[1])
      assert.equal(nil, results[2][1])
      assert.equal("closed", results[2][3])
    end)
    srv:close()
    p:cleanup()
    if not ok then error(err, 0) end
  end)
end)

describe("server: coroutine style sees violations as receive() errors", function()
  local cases = {
    { "unmasked frame", 1002, "protocol", { opcode = 1, payload_text = "x", mask = false } },
    { "invalid UTF-8", 1007, "invalid_data", { opcode = 1, payload_hex = "c0af" } },
    { "over max_payload", 1009, "too_big", { opcode = 2, payload_size = 101 } },
  }
  for _, case in ipairs(cases) do
    it(case[1] .. " -> receive() gives the good message, then nil, msg, '" .. case[3] .. "'",
      function()
        local results, done = {}, false
        local srv = assert(moonws.serve({ host = "127.0.0.1", port = 0, max_payload = 100 },
          function(ws)
            for _ = 1, 3 do
              local a, b, c = ws:receive(5)
              results[#results + 1] = { a, b, c }
              if a == nil then break end
            end
            results.code = ws.closeCode
            done = true
          end))
        local p = rawpeer.client(srv.port, violation(
          { opcode = 1, payload_text = "good" }, case[4]))
        local ok, err = pcall(function()
          local events = rawpeer.finish(p, 10, helpers.idle)
          helpers.run_until(function() return done end, 5, "handler")
          local closes = select_events(events, "frame", 8)
          assert.equal(1, #closes)
          assert.equal(case[2], closes[1].close_code)
          assert.equal(2, #results)
          assert.same({ "good", "text" }, results[1])
          assert.equal(nil, results[2][1])
          assert.equal("string", type(results[2][2]))
          assert.equal(case[3], results[2][3])
          assert.equal(1006, results.code)
        end)
        srv:close()
        p:cleanup()
        if not ok then error(err, 0) end
      end)
  end
end)

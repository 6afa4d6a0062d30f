-- permessage-deflate against hostile peers (RFC 7692; docs/DESIGN.md 1.5
-- `compression`, `max_payload`): a compression bomb must be stopped at
-- max_payload with 1009 without the server ever holding the inflated data,
-- and corrupt or misflagged compressed frames fail with 1007 / 1002.
--
-- The server is moonws in a CHILD lua5.4 process, so its peak memory
-- (VmHWM of /proc/self/status) belongs to it alone: it prints one line per
-- event, and its VmHWM after each close.  The attacker is
-- spec/peers/raw_peer.py (not built on moonws), which negotiates
-- permessage-deflate in its handshake and writes the frames itself.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local rawpeer = require "spec.support.rawpeer"

local MiB = 1024 * 1024
local GiB = 1024 * MiB
local MAX_PAYLOAD = 16 * MiB

-- The server: echoes every message; prints OPEN/MESSAGE/ERROR/CLOSE lines
-- (tab-separated) and "HWM <id> <kB>" after each close.
local SERVER = ([[
  package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
  package.cpath = "./?.so;" .. package.cpath
  io.stdout:setvbuf("line")
  local moonws = require "moonws"
  local function hwm()
    for line in io.lines("/proc/self/status") do
      local kb = line:match("^VmHWM:%%s*(%%d+) kB")
      if kb then return kb end
    end
  end
  local srv = assert(moonws.listen { port = 0, compression = true, max_payload = %d })
  local n = 0
  srv.onconnection = function(ws)
    n = n + 1
    local id = n
    print("OPEN", id, ws.extensions)
    ws.onmessage = function(e)
      print("MESSAGE", id, #e.data, e.binary)
      ws:send(e.data, e.binary and "binary" or "text")
    end
    ws.onerror = function(e) print("ERROR", id, e.error, e.code) end
    ws.onclose = function(e)
      print("CLOSE", id, e.code, e.wasClean)
      print("HWM", id, hwm())
    end
  end
  print("HWM", 0, hwm())
  print("PORT " .. srv.port)
  moonws.run()
]]):format(MAX_PAYLOAD)

-- Every process a test starts, killed after it (busted keeps only one
-- `finally` per test, so they are tracked here).
local track, cleanup_started = process.tracker()

local function start_server()
  local p = track(process.start({ "lua5.4", "-e", SERVER }, 60))
  return p, p:port()
end

local function raw_client(port, steps) return track(rawpeer.client(port, steps)) end

-- The child's output lines after PORT, split on tabs.
local function server_lines(p)
  local out = {}
  for line in p:stdout():gmatch("[^\n]+") do
    if not line:find("^PORT") and not line:find("^HWM\t0\t") then
      local fields = {}
      for f in (line .. "\t"):gmatch("([^\t]*)\t") do fields[#fields + 1] = f end
      out[#out + 1] = fields
    end
  end
  return out
end

-- Wait until the child printed a line starting with prefix (e.g. "HWM\t1").
local function wait_line(p, prefix)
  return p:wait_for("^(" .. prefix:gsub("%p", "%%%0") .. ".*)$", 15)
end

-- A raw client handshake that offers permessage-deflate.
local HANDSHAKE = { handshake = {
  headers = { { "Sec-WebSocket-Extensions", "permessage-deflate" } } } }

local function read_until_close(timeout)
  return { read_frames = { ["until"] = "close", timeout = timeout or 10 } }
end

-- The peer's 101 response and the frames it received.
local function outcome(events)
  local response = rawpeer.select(events, "response")[1]
  return response, rawpeer.select(events, "frame")
end

-- The raw peer's handshake got 101 with exactly "permessage-deflate".
local function assert_negotiated(response)
  assert.equal(101, response.status)
  assert.is_true(response.accept_ok)
  assert.equal("permessage-deflate", rawpeer.header(response.headers, "Sec-WebSocket-Extensions"))
end

describe("a deflate bomb", function()
  after_each(cleanup_started)

  it("1 GiB of zeros in one compressed frame -> 1009; the server's peak RSS stays small",
    function()
    local server, port = start_server()
    local peer = raw_client(port, {
      HANDSHAKE,
      { send_deflated_zeros = { zeros = GiB } },
      read_until_close(),
    })
    local events = rawpeer.finish(peer, 20)
    local response, frames = outcome(events)
    assert_negotiated(response)
    local sent = rawpeer.select(events, "sent")[1]
    assert.equal(GiB, sent.inflated)
    assert.is_true(sent.bytes > 1000000 and sent.bytes < 1100000, "about 1 MiB compressed")
    -- Only a close frame came back: 1009, nothing of the message.
    assert.equal(1, #frames)
    assert.same({ 8, 1009, 0 }, { frames[1].opcode, frames[1].close_code, frames[1].rsv })

    local hwm = tonumber(wait_line(server, "HWM\t1\t"):match("(%d+)$"))
    assert.same({
      { "OPEN", "1", "permessage-deflate" },
      { "ERROR", "1", "too_big", "1009" },
      { "CLOSE", "1", "1006", "false" },
      { "HWM", "1", tostring(hwm) },
    }, server_lines(server))
    assert.is_true(hwm < 100 * 1024, ("the server's peak RSS was %d kB"):format(hwm))

    -- The server lives on and serves a normal compressed connection.
    assert.is_true(server:alive())
    local text = string.rep("compressible text ", 10000)
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. port, { compression = true,
      timeout = 5 }))
    assert.equal("permessage-deflate", ws.extensions)
    assert(ws:send(text))
    assert.same({ text, "text" }, { ws:receive(5) })
    assert.is_true(ws:close(1000))
    wait_line(server, "HWM\t2\t")
    local lines = server_lines(server)
    assert.same({ "MESSAGE", "2", tostring(#text), "false" }, lines[6])
    assert.same({ "CLOSE", "2", "1000", "true" }, lines[7])
  end)

  it("a message inflating to exactly max_payload is delivered; one byte more -> 1009",
    function()
    local server, port = start_server()
    local fits = raw_client(port, {
      HANDSHAKE,
      { send_deflated_zeros = { zeros = MAX_PAYLOAD } },
      { read_frames = { ["until"] = "count", count = MAX_PAYLOAD // (256 * 1024), timeout = 10 } },
      { send_frame = { opcode = 8, close_code = 1000 } },
      read_until_close(),
    })
    local _, frames = outcome(rawpeer.finish(fits, 20))
    -- The echo comes back compressed (RSV1 on its first frame) and small,
    -- deflated max_step_bytes (256 KiB) a round: one fragment for each.
    local pieces = MAX_PAYLOAD // (256 * 1024)
    assert.same({ 2, 4, false }, { frames[1].opcode, frames[1].rsv, frames[1].fin })
    local wire = 0
    for i = 1, pieces do
      wire = wire + frames[i].length
      assert.same({ i == 1 and 2 or 0, i == pieces }, { frames[i].opcode, frames[i].fin })
    end
    assert.is_true(wire < 64 * 1024, "compressed echo of 16 MiB of zeros")
    assert.same({ 8, 1000 }, { frames[pieces + 1].opcode, frames[pieces + 1].close_code })

    local over = raw_client(port, {
      HANDSHAKE,
      { send_deflated_zeros = { zeros = MAX_PAYLOAD + 1 } },
      read_until_close(),
    })
    _, frames = outcome(rawpeer.finish(over, 20))
    assert.equal(1, #frames)
    assert.same({ 8, 1009 }, { frames[1].opcode, frames[1].close_code })

    wait_line(server, "HWM\t2\t")
    local lines = server_lines(server)
    assert.same({ "MESSAGE", "1", tostring(MAX_PAYLOAD), "true" }, lines[2])
    assert.same({ "CLOSE", "1", "1000", "true" }, lines[3])
    assert.same({ "ERROR", "2", "too_big", "1009" }, lines[6])
  end)
end)

describe("malformed compressed frames", function()
  local server, port
  before_each(function() server, port = start_server() end)
  after_each(cleanup_started)

  local function run_peer(steps)
    return outcome(rawpeer.finish(raw_client(port, steps), 10))
  end

  -- "hello world" as a raw deflate stream, split after "hello " with a sync
  -- flush (zlib.compressobj(6, DEFLATED, -15)); the final 00 00 ff ff is
  -- removed (RFC 7692 7.2.1).
  local PART1 = "ca48cdc9c95700000000ffff"
  local PART2 = "2acf2fca490100"

  it("a compressed message split over two frames is delivered (RSV1 on the first only)",
    function()
    local response, frames = run_peer {
      HANDSHAKE,
      { send_frame = { opcode = 1, fin = false, rsv = 4, payload_hex = PART1 } },
      { send_frame = { opcode = 0, fin = true, rsv = 0, payload_hex = PART2 } },
      { read_frames = { ["until"] = "opcode", opcode = 1 } },
      { send_frame = { opcode = 8, close_code = 1000 } },
      read_until_close(),
    }
    assert_negotiated(response)
    -- Under the 1024-byte threshold, the echo is sent uncompressed.
    assert.same({ 1, 0, rawpeer.hex("hello world") },
      { frames[1].opcode, frames[1].rsv, frames[1].payload_hex })
    assert.same({ 8, 1000 }, { frames[2].opcode, frames[2].close_code })
  end)

  it("RSV1 set on a continuation frame -> 1002", function()
    local response, frames = run_peer {
      HANDSHAKE,
      { send_frame = { opcode = 1, fin = false, rsv = 4, payload_hex = PART1 } },
      { send_frame = { opcode = 0, fin = true, rsv = 4, payload_hex = PART2 } },
      read_until_close(),
    }
    assert_negotiated(response)
    assert.equal(1, #frames)
    assert.same({ 8, 1002 }, { frames[1].opcode, frames[1].close_code })
    wait_line(server, "HWM\t1\t")
    assert.same({ "ERROR", "1", "protocol", "1002" }, server_lines(server)[2])
  end)

  it("corrupt compressed data (RSV1 frame of garbage) -> 1007", function()
    -- 0xff: a final block of the reserved type 3, invalid in deflate.
    local response, frames = run_peer {
      HANDSHAKE,
      { send_frame = { opcode = 1, rsv = 4, payload_hex = "ffffffffffffffff" } },
      read_until_close(),
    }
    assert_negotiated(response)
    assert.equal(1, #frames)
    assert.same({ 8, 1007 }, { frames[1].opcode, frames[1].close_code })
    wait_line(server, "HWM\t1\t")
    local lines = server_lines(server)
    assert.same({ "ERROR", "1", "invalid_data", "1007" }, lines[2])
    assert.same({ "CLOSE", "1", "1006", "false" }, lines[3])
  end)

  it("RSV1 when permessage-deflate was not negotiated -> 1002", function()
    local response, frames = run_peer {
      { handshake = {} },
      { send_frame = { opcode = 1, rsv = 4, payload_hex = "ca48cdc9c95728cf2fca490100" } },
      read_until_close(),
    }
    assert.equal(101, response.status)
    assert.is_nil(rawpeer.header(response.headers, "Sec-WebSocket-Extensions"))
    assert.equal(1, #frames)
    assert.same({ 8, 1002 }, { frames[1].opcode, frames[1].close_code })
  end)
end)

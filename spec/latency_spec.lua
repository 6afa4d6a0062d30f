-- Round trips (issue 16): ws:ping() where the caller can wait returns the
-- seconds until its pong (event style: true at once); ws.latency holds the
-- last round trip, measured by keepalive pings (ping_interval) too.
-- Against Python's websockets (it answers pings at once) and the raw peer
-- (its pong comes when its script says: the round trip can be checked).
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local rawpeer = require "spec.support.rawpeer"

local track, cleanup = process.tracker()
after_each(cleanup)

-- A Python websockets echo server (spec/peers/python_peer.py).
local function python_server()
  local p = track(process.start({ "/usr/bin/python3", "spec/peers/python_peer.py", "server" }, 60))
  return ("ws://127.0.0.1:%d/"):format(p:port(helpers.idle))
end

-- A raw server that answers the first ping (payload `payload`) after
-- `delay` seconds, then closes when asked.
local function slow_ponger(payload, delay)
  local p = track(rawpeer.server({
    { handshake = {} },
    { read_frames = { ["until"] = "opcode", opcode = 9, timeout = 5 } },
    { sleep = delay },
    { send_frame = { opcode = 10, payload_text = payload } },
    { read_frames = { ["until"] = "close", timeout = 5 } },
    { send_frame = { opcode = 8, close_code = 1000 } },
  }))
  return ("ws://127.0.0.1:%d/"):format(p:port(helpers.idle))
end

describe("ws:ping() waits for its pong", function()
  it("against Python's websockets: a round trip in seconds; ws.latency the same", function()
    local ws = assert(moonws.connect(python_server()))
    assert.equal(0, ws.latency)
    local rtt = ws:ping()
    assert.is_number(rtt)
    assert.is_true(rtt > 0 and rtt < 1, tostring(rtt))
    assert.equal(rtt, ws.latency)
    local rtt2 = assert(ws:ping("with a payload"))
    assert.equal(rtt2, ws.latency)
    ws:close()
  end)

  it("the raw peer answers after 0.3 s: the round trip says so", function()
    local ws = assert(moonws.connect(slow_ponger("late", 0.3)))
    local rtt = ws:ping("late")
    assert.is_true(rtt >= 0.3 and rtt < 1, tostring(rtt))
    assert.equal(rtt, ws.latency)
    ws:close()
  end)

  it("inside a coroutine too", function()
    local url, rtt = python_server(), nil
    moonws.spawn(function()
      local ws = assert(moonws.connect(url))
      rtt = ws:ping()
      ws:close()
    end)
    helpers.run_until(function() return rtt end, 10)
    assert.is_number(rtt)
  end)

  it("no pong within ping_timeout: nil, message, 'timeout'", function()
    local ws = assert(moonws.connect(slow_ponger("other", 2), { ping_timeout = 0.3 }))
    local rtt, message, name = ws:ping("unanswered")
    assert.is_nil(rtt)
    assert.equal("timeout", name)
    assert.matches("no pong within ping_timeout", message)
    ws:terminate()
  end)

  it("event style: true at once, and the pong still updates ws.latency", function()
    local ws = moonws.new(python_server())
    local result, pongs = nil, 0
    ws.onopen = function() result = ws:ping("from a handler") end
    ws.onpong = function() pongs = pongs + 1 end
    helpers.run_until(function() return pongs == 1 end, 10)
    assert.is_true(result)
    assert.is_true(ws.latency > 0)
    ws:close()
  end)
end)

describe("ws.latency from keepalive", function()
  it("ping_interval measures it against Python's websockets", function()
    local ws = assert(moonws.connect(python_server(), { ping_interval = 0.1 }))
    helpers.run_until(function() return ws.latency > 0 end, 5, "a keepalive round trip")
    assert.is_true(ws.latency < 1)
    ws:close()
  end)

  it("and against a peer that answers late, the time it took", function()
    local ws = assert(moonws.connect(slow_ponger("", 0.4), { ping_interval = 0.1 }))
    helpers.run_until(function() return ws.latency > 0 end, 5, "a keepalive round trip")
    assert.is_true(ws.latency >= 0.4 and ws.latency < 1.2, tostring(ws.latency))
    ws:close()
  end)
end)

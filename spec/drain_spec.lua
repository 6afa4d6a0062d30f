-- ondrain (issue 16; Node ws users ask for it, ws#1218): after event-style
-- sends put bufferedAmount over send_buffer (the high-water mark), or a
-- send was refused at send_limit, ondrain fires once when bufferedAmount
-- is down to send_low_water (default: half of send_buffer), so handler
-- code need not poll.  The reader is Python's websockets reading one
-- message at a time with sleeps (spec/peers/slow_reader.py).
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local json = require "dkjson"

local track, cleanup = process.tracker()
after_each(cleanup)

local KiB = 1024

local function slow_reader(port, count, delay)
  return track(process.start({ "/usr/bin/python3", "spec/peers/slow_reader.py",
    ("ws://127.0.0.1:%d/"):format(port), tostring(count), tostring(delay) }, 60))
end

describe("ondrain with a slow reader", function()
  it("fires once bufferedAmount is down to send_low_water, then sending goes on", function()
    local CHUNK, COUNT = 64 * KiB, 320 -- 20 MiB: over what the kernel buffers on loopback
    local log = { drains = {} }
    local srv = assert(moonws.listen { port = 0, send_buffer = 256 * KiB,
      send_low_water = 64 * KiB })
    srv.onconnection = function(ws)
      local sent = 0
      local function pump()
        -- Send until over the high-water mark; ondrain calls again.
        while sent < COUNT and ws.bufferedAmount <= 256 * KiB do
          assert(ws:send(string.rep("x", CHUNK), "binary"))
          sent = sent + 1
        end
        log.peak = math.max(log.peak or 0, ws.bufferedAmount)
      end
      ws.ondrain = function(e)
        log.drains[#log.drains + 1] = { buffered = e.bufferedAmount, now = ws.bufferedAmount,
          target = e.target == ws, type = e.type }
        pump()
      end
      pump()
    end
    local p = slow_reader(srv.port, COUNT, 0.002)
    assert(p:wait_exit(40, helpers.idle), "the reader did not finish:\n" .. p:stderr())
    srv:close()
    local got = json.decode(p:stdout():match("[^\n]+") or "")
    assert.same({ received = COUNT, bytes = COUNT * CHUNK }, got)
    assert.is_true(log.peak > 256 * KiB)
    assert.is_true(#log.drains >= 2, "ondrain fired " .. #log.drains .. " times")
    for _, d in ipairs(log.drains) do
      assert.same({ "drain", true }, { d.type, d.target })
      assert.is_true(d.buffered <= 64 * KiB, tostring(d.buffered))
      assert.equal(d.buffered, d.now)
    end
  end)

  it("after a send refused at send_limit", function()
    local events = {}
    local srv = assert(moonws.listen { port = 0, send_buffer = 64 * KiB, send_limit = 512 * KiB })
    srv.onconnection = function(ws)
      local refused
      while true do
        local ok, _, name = ws:send(string.rep("y", 64 * KiB), "binary")
        if not ok then refused = name break end
      end
      events[#events + 1] = "refused: " .. refused
      ws.ondrain = function(e)
        events[#events + 1] = ("drain at %d"):format(e.bufferedAmount)
        ws:send("done")
      end
    end
    local p = slow_reader(srv.port, 0, 0.001)
    assert(p:wait_exit(40, helpers.idle), "the reader did not finish:\n" .. p:stderr())
    srv:close()
    assert.equal("refused: too_big", events[1])
    assert.matches("^drain at %d+$", events[2])
    assert.is_true(tonumber(events[2]:match("%d+")) <= 32 * KiB)
  end)

  it("does not fire while the output stays under send_buffer", function()
    local drains = 0
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(ws)
      ws.ondrain = function() drains = drains + 1 end
      for _ = 1, 10 do ws:send("small") end
    end
    local p = slow_reader(srv.port, 10, 0)
    assert(p:wait_exit(20, helpers.idle))
    srv:close()
    assert.equal(0, drains)
  end)

  it("send_low_water is checked: at most send_buffer", function()
    assert.has_error(function() moonws.listen { send_buffer = 1000, send_low_water = 1001 } end,
      "option 'send_low_water' must not be over send_buffer")
    assert.has_error(function() moonws.listen { send_low_water = -1 } end,
      "option 'send_low_water' must be a non-negative integer")
  end)
end)

-- Topics across processes: two server processes on one real redis-server,
-- 500 subscribers each; every subscriber in either process gets every
-- message once, all in one order, the sender excepted; each process takes
-- each message from Redis once and fans it out itself.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local new_redis = require("spec.support.redis").new

local PER_PROCESS = 500

describe("topics across processes through redis #host #slow", function()
  it("2 processes x 500 subscribers: once each, one order, except the sender", function()
    local r = new_redis()
    finally(function() r:cleanup() end)
    local servers, ports = {}, {}
    for i = 1, 2 do
      servers[i] = process.start({ "lua5.4", "spec/support/topic_server.lua", r:url() }, 120)
      ports[i] = tonumber(servers[i]:wait_for("^port (%d+)$", 15, helpers.idle))
    end
    finally(function() for _, p in ipairs(servers) do p:cleanup() end end)

    local clients, opened = {}, 0
    for i = 1, 2 * PER_PROCESS do
      local port = ports[(i - 1) % 2 + 1]
      local ws = moonws.new(("ws://127.0.0.1:%d/"):format(port))
      local c = { ws = ws, got = {}, side = (i - 1) % 2 + 1 }
      ws.onopen = function() opened = opened + 1 end
      ws.onmessage = function(e) c.got[#c.got + 1] = e.data end
      clients[i] = c
    end
    finally(function() for _, c in ipairs(clients) do c.ws:terminate() end end)
    helpers.run_until(function() return opened == #clients end, 60, "every client open")

    -- Redis confirms a channel some time after the first subscriber: probe
    -- until a message from each side reaches everybody else.
    local function everyone_but(sender, data)
      for _, c in ipairs(clients) do
        if c ~= sender and c.got[#c.got] ~= data then return false end
      end
      return true
    end
    for side = 1, 2 do
      local sender = clients[side]
      local k = 0
      helpers.run_until(function()
        k = k + 1
        local probe = ("probe %d %d"):format(side, k)
        sender.ws:send(probe)
        helpers.idle(0.2)
        return everyone_but(sender, probe)
      end, 30, "a probe from side " .. side)
    end
    for _, c in ipairs(clients) do c.got = {} end

    local function relay_stats(c)
      c.got = {}
      c.ws:send("stats?")
      helpers.run_until(function() return c.got[1] end, 10, "stats")
      local a, b, z = c.got[1]:match("^stats (%d+) (%d+) (%d+)$")
      c.got = {}
      return tonumber(a), tonumber(b), tonumber(z)
    end
    local before = { { relay_stats(clients[1]) }, { relay_stats(clients[2]) } }

    -- Two senders, one on each side, interleaved.
    local a, b = clients[1], clients[2]
    local n = 50
    for i = 1, n do
      a.ws:send(("A%03d"):format(i))
      b.ws:send(("B%03d"):format(i))
    end
    helpers.run_until(function()
      for _, c in ipairs(clients) do
        local want = (c == a or c == b) and n or 2 * n
        if #c.got < want then return false end
      end
      return true
    end, 60, "every message everywhere")
    helpers.idle(0.3) -- nothing more comes (no duplicates)
    local order = nil
    for _, c in ipairs(clients) do
      if c ~= a and c ~= b then
        assert.equal(2 * n, #c.got)
        local line = table.concat(c.got, " ")
        order = order or line
        assert.equal(order, line) -- one order for everybody, in both processes
      end
    end
    -- Each sender got the other's messages only, in the same order.
    assert.equal((order:gsub("A%d+ ?", "")):gsub(" $", ""), table.concat(a.got, " "))
    assert.equal((order:gsub("B%d+ ?", "")):gsub(" $", ""), table.concat(b.got, " "))
    -- Each side's messages keep the order they were sent in.
    local as = {}
    for m in order:gmatch("A%d+") do as[#as + 1] = m end
    for i = 1, n do assert.equal(("A%03d"):format(i), as[i]) end

    -- Each process took each message from Redis once and fanned it out.
    for side = 1, 2 do
      local relayed, deliveries = relay_stats(clients[side])
      assert.equal(2 * n, relayed - before[side][1])
      assert.equal(2 * n * PER_PROCESS - n, deliveries - before[side][2])
    end
  end)
end)

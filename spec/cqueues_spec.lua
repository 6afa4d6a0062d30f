-- moonws inside a cqueues controller (the loop lua-http runs on), through
-- the cqueues polling protocol: cqueues.poll(moonws) -- or a socket, or a
-- server -- yields until moonws has work, then moonws.step(0) does it.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws

package.path = package.path .. ";/usr/share/lua/5.4/?.lua;/usr/share/lua/5.4/?/init.lua"
package.cpath = package.cpath .. ";/usr/lib/x86_64-linux-gnu/lua/5.4/?.so"
local cqueues = require "cqueues"

describe("the cqueues polling protocol", function()
  it("every moonws object answers pollfd, events and timeout with the loop's", function()
    local srv = assert(moonws.listen { port = 0 })
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    for _, obj in ipairs { moonws, srv, ws } do
      assert.equal(moonws.fd(), obj:pollfd())
      assert.equal("r", obj:events())
    end
    assert.equal(0, ws:timeout()) -- the connect is ready to start now
    ws:terminate()
    srv:close()
  end)

  it("a cqueues controller drives moonws while its own coroutines run", function()
    local cq = cqueues.new()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(peer)
      peer.onmessage = function(e) peer:send("echo: " .. e.data) end
    end
    local got, closed, ticks, done = {}, nil, 0, false
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    ws.onopen = function() ws:send("one") end
    ws.onmessage = function(e)
      got[#got + 1] = e.data
      if #got == 1 then ws:send("two") else ws:close(4000, "enough") end
    end
    ws.onclose = function(e) closed = { e.code, e.reason, e.wasClean } done = true end

    local steps, slept = 0, false
    moonws.spawn(function() moonws.sleep(0.2) slept = true end) -- a moonws timer
    cq:wrap(function() -- moonws, driven by cqueues
      while not (done and slept) do
        cqueues.poll(moonws)
        moonws.step(0)
        steps = steps + 1
      end
      srv:close()
    end)
    cq:wrap(function() -- a cqueues coroutine of its own, meanwhile
      while not done do
        ticks = ticks + 1
        cqueues.sleep(0.01)
      end
    end)
    local deadline = cqueues.monotime() + 10
    while not cq:empty() and cqueues.monotime() < deadline do
      assert(cq:step(0.1))
    end
    assert.is_true(done and slept, "the exchange or the sleep did not finish inside cqueues")
    -- cqueues.poll waited on moonws's descriptor and timer: a few steps
    -- per event, not a busy loop over 0.2 s.
    assert.is_true(steps < 200, steps .. " steps")
    assert.same({ "echo: one", "echo: two" }, got)
    assert.same({ 4000, "enough", true }, closed)
    assert.is_true(ticks >= 1)
  end)
end)

-- Lifetime (docs/DESIGN.md 1.6, the browser's rules): the loop keeps a socket
-- alive while it is not CLOSED and has a handler or a waiting coroutine; a
-- socket nobody references is collected, and collection starts a close.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

describe("socket lifetime", function()
  it("a socket held only by its handlers keeps working after GC", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s) s.onmessage = function(e) s:send(e.data) end end
    local echoed, closed
    do
      local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
      ws.onopen = function(e) full_gc(); e.target:send("still here") end
      ws.onmessage = function(e) echoed = e.data; e.target:close(1000) end
      ws.onclose = function(e) closed = e.code end
    end
    full_gc()
    helpers.run_until(function() return closed end, 5)
    srv:close()
    assert.equal("still here", echoed)
    assert.equal(1000, closed)
  end)

  it("a socket nobody references is collected and its close has no status code", function()
    local srv = assert(moonws.listen { port = 0 })
    local seen
    srv.onconnection = function(s)
      s.onclose = function(e) seen = { e.code, e.wasClean } end
    end
    local weak = setmetatable({}, { __mode = "v" })
    do
      local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
      weak[1] = ws
    end
    full_gc()
    assert.is_nil(weak[1])
    helpers.run_until(function() return seen end, 5)
    srv:close()
    assert.equal(1005, seen[1])
  end)

  it("run() returns once nothing is left, even with an unreferenced socket", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s) s.onmessage = function() end end
    do
      assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
    end
    full_gc()
    srv:close()
    moonws.run() -- would never return if the collected socket still counted
    assert.is_true(true)
  end)

  it("a coroutine waiting on a socket keeps both alive", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s)
      s.onmessage = function(e) moonws.spawn(function() moonws.sleep(0.2); s:send(e.data) end) end
    end
    local got
    moonws.spawn(function()
      local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
      ws:send("wait for me")
      got = ws:receive(5)
      ws:close()
    end)
    for _ = 1, 10 do
      moonws.step(0.05)
      full_gc()
    end
    helpers.run_until(function() return got end, 5)
    srv:close()
    assert.equal("wait for me", got)
  end)
end)

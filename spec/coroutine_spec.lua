-- Coroutine style (docs/DESIGN.md 1.1, 1.4): sequential code, nonblocking underneath;
-- the same calls from a plain script drive the loop themselves.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local core = require "moonws.core"

local function echo_server()
  return assert(moonws.serve({ port = 0 }, function(ws)
    while true do
      local data, kind = ws:receive()
      if not data then return end
      ws:send(data, kind)
    end
  end))
end

describe("inside moonws.spawn", function()
  it("ws.receive stays the method: the same for every socket, and a socket's own when set", function()
    local srv = echo_server()
    local got, methods = {}, {}
    moonws.spawn(function()
      local a = assert(moonws.connect("ws://127.0.0.1:" .. srv.port, { timeout = 5 }))
      local b = assert(moonws.connect("ws://127.0.0.1:" .. srv.port, { timeout = 5 }))
      assert(a:send("1")); assert(b:send("2"))
      got[#got + 1] = a:receive()
      got[#got + 1] = b:receive()
      methods[1], methods[2] = a.receive, b.receive
      local method = a.receive
      a.receive = function(self) local data = method(self); return "mine " .. data end
      assert(a:send("3"))
      got[#got + 1] = a:receive()
      a.receive = nil -- back to the method
      assert(a:send("4"))
      got[#got + 1] = a:receive()
      methods[3] = a.receive
      a:close(); b:close()
      srv:close()
    end)
    moonws.run()
    assert.same({ "1", "2", "mine 3", "4" }, got)
    assert.equal(methods[1], methods[2])
    assert.equal(methods[1], methods[3])
  end)

  it("connect, send, receive and close read sequentially", function()
    local srv = echo_server()
    local log = {}
    moonws.spawn(function()
      local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port .. "/feed", { timeout = 5 }))
      log[#log + 1] = ws.readyState
      assert(ws:send("subscribe"))
      log[#log + 1] = { ws:receive() }
      assert(ws:send("\0\1\2", "binary"))
      log[#log + 1] = { ws:receive() }
      log[#log + 1] = { ws:close(1000, "done") }
      log[#log + 1] = { ws:receive() }
      srv:close()
    end)
    moonws.run()
    assert.same({
      moonws.OPEN,
      { "subscribe", "text" },
      { "\0\1\2", "binary" },
      { true },
      { nil, "closed (1000 done)", "closed" },
    }, log)
  end)

  it("messages queued together keep their kinds, and a drained queue forgets them", function()
    -- Both batches are all queued before the first receive; the second
    -- reuses the queue's slots with the kinds swapped, so a binary mark
    -- left behind by the first would show as a wrong kind.
    local kinds = { "text", "binary", "binary", "text", "binary", "text" }
    local swapped = {}
    for i, k in ipairs(kinds) do swapped[i] = k == "text" and "binary" or "text" end
    local srv = assert(moonws.serve({ port = 0 }, function(ws)
      for _, batch in ipairs({ kinds, swapped }) do
        assert(ws:receive())
        for i, k in ipairs(batch) do assert(ws:send(k .. i, k)) end
      end
      ws:receive()
    end))
    local got = {}
    moonws.spawn(function()
      local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port, { timeout = 5 }))
      for b = 1, 2 do
        assert(ws:send("go"))
        moonws.sleep(0.2)
        local batch = {}
        for _ = 1, #kinds do batch[#batch + 1] = { ws:receive(5) } end
        got[b] = batch
      end
      ws:close(1000)
      srv:close()
    end)
    moonws.run()
    for b, batch in ipairs({ kinds, swapped }) do
      for i, k in ipairs(batch) do assert.same({ k .. i, k }, got[b][i]) end
    end
  end)

  it("many coroutines interleave on one loop", function()
    local srv = echo_server()
    local finished = 0
    for c = 1, 20 do
      moonws.spawn(function()
        local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
        for i = 1, 10 do
          local msg = c .. ":" .. i
          assert(ws:send(msg))
          assert.equal(msg, ws:receive(5))
        end
        ws:close(1000)
        finished = finished + 1
        if finished == 20 then srv:close() end
      end)
    end
    moonws.run()
    assert.equal(20, finished)
  end)

  it("receive(timeout) returns nil, message, 'timeout' and the socket stays open", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s) s.onmessage = function() end end
    local result, state
    moonws.spawn(function()
      local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
      local t0 = core.now()
      result = { ws:receive(0.2) }
      result.elapsed = core.now() - t0
      state = ws.readyState
      ws:close()
      srv:close()
    end)
    moonws.run()
    assert.same({ nil, "receive timed out", "timeout" }, { result[1], result[2], result[3] })
    assert.is_true(result.elapsed >= 0.19 and result.elapsed < 2, "elapsed " .. result.elapsed)
    assert.equal(moonws.OPEN, state)
  end)

  it("sleep yields to the loop without blocking other coroutines", function()
    local order = {}
    moonws.spawn(function()
      moonws.sleep(0.1)
      order[#order + 1] = "slow"
    end)
    moonws.spawn(function()
      moonws.sleep(0.01)
      order[#order + 1] = "fast"
    end)
    moonws.run()
    assert.same({ "fast", "slow" }, order)
  end)

  it("a socket with <close> is closed with 1000 at scope end", function()
    local srv = assert(moonws.listen { port = 0 })
    local seen
    srv.onconnection = function(s)
      s.onclose = function(e) seen = { e.code, e.wasClean }; srv:close() end
    end
    moonws.spawn(function()
      local ws <close> = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
      assert(ws:send("bye soon"))
    end)
    moonws.run()
    assert.same({ 1000, true }, seen)
  end)

  it("connection failures return nil, message, name", function()
    local srv = assert(moonws.listen { port = 0 })
    local port = srv.port
    srv:close()
    local r
    moonws.spawn(function() r = { moonws.connect("ws://127.0.0.1:" .. port) } end)
    moonws.run()
    assert.is_nil(r[1])
    assert.matches("refused", r[2])
    assert.equal("refused", r[3])
  end)

  it("a server that never answers the handshake times out", function()
    -- A listener that accepts TCP (the kernel does) but never speaks.
    local listener = assert(core.listen("127.0.0.1", 0))
    local r, elapsed
    moonws.spawn(function()
      local t0 = core.now()
      r = { moonws.connect("ws://127.0.0.1:" .. listener:port(), { timeout = 0.3 }) }
      elapsed = core.now() - t0
    end)
    moonws.run()
    listener:close()
    assert.is_nil(r[1])
    assert.equal("timeout", r[3])
    assert.is_true(elapsed >= 0.29 and elapsed < 3, "elapsed " .. elapsed)
  end)

  it("errors in a coroutine are reported and the loop goes on", function()
    local reported
    moonws.onerror = function(e) reported = e.message end
    local after = false
    moonws.spawn(function() error("coroutine failure") end)
    moonws.spawn(function() moonws.sleep(0.01); after = true end)
    moonws.run()
    moonws.onerror = nil
    assert.matches("coroutine failure", reported)
    assert.is_true(after)
  end)
end)

describe("from a plain script (main thread, no spawn)", function()
  it("the same calls drive the loop until they can return", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s) s.onmessage = function(e) s:send(e.data:upper()) end end
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
    assert(ws:send("plain"))
    assert.same({ "PLAIN", "text" }, { ws:receive(5) })
    assert.is_true(ws:close(1000, "bye"))
    assert.equal(moonws.CLOSED, ws.readyState)
    srv:close()
  end)

  it("moonws.sleep drives the loop", function()
    local t0 = core.now()
    moonws.sleep(0.05)
    assert.is_true(core.now() - t0 >= 0.049)
  end)
end)

describe("inside an event handler", function()
  it("a call that would wait raises a clear error instead of stalling the loop", function()
    local srv = assert(moonws.listen { port = 0 })
    local err
    srv.onconnection = function(s)
      local ok, e = pcall(function() return s:receive() end)
      err = e
      s:close()
    end
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    ws.onclose = function() srv:close() end
    moonws.run()
    assert.matches("receive would block inside an event handler", err)
  end)
end)

describe("a handler that steps the loop itself", function()
  it("leaves the round it runs in whole: coroutines woken, errors told", function()
    -- The dispatch in C holds the loop's ready list and the socket whose
    -- handler runs across the handler; a handler's own round (here between
    -- two coroutines' sockets read in one round) must not lose either.
    -- What bites here is the second (the error must reach its socket); the
    -- nested round reads the later sockets first, so the list is kept by
    -- run_ready's rule rather than tested.
    local coro_srv = assert(moonws.serve({ host = "127.0.0.1", port = 0 }, function(ws)
      while true do
        local data = ws:receive()
        if not data then return end
        ws:send(data)
      end
    end))
    local event_srv = assert(moonws.listen { host = "127.0.0.1", port = 0 })
    local errors = {}
    event_srv.onconnection = function(s)
      s.onmessage = function(e)
        moonws.step(0)
        s:send(e.data)
        if e.data == "5" then error("boom") end
      end
      s.onerror = function(e) errors[#errors + 1] = { e.target == s, e.message } end
    end
    local got = 0
    local clients = {
      moonws.new("ws://127.0.0.1:" .. coro_srv.port),
      moonws.new("ws://127.0.0.1:" .. event_srv.port),
      moonws.new("ws://127.0.0.1:" .. coro_srv.port),
    }
    for _, c in ipairs(clients) do
      c.onmessage = function() got = got + 1 end
    end
    helpers.run_until(function()
      for _, c in ipairs(clients) do
        if c.readyState ~= moonws.OPEN then return false end
      end
      return true
    end, 5, "all open")
    for round = 1, 20 do
      -- In this order, so the server reads them in one round, in it.
      for _, c in ipairs(clients) do c:send(tostring(round)) end
      helpers.run_until(function() return got == 3 * round end, 5, "three echoes")
    end
    assert.equal(1, #errors)
    assert.is_true(errors[1][1])
    assert.matches("error in onmessage handler: .*boom", errors[1][2])
    for _, c in ipairs(clients) do c:close() end
    coro_srv:close()
    event_srv:close()
    moonws.run()
  end)
end)

describe("messages and onmessage", function()
  it("go to onmessage when set, else to the receive queue, never both", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s)
      s.onmessage = function(e)
        for i = 1, 3 do s:send(e.data .. i) end
      end
    end
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
    local via_handler = {}
    ws:send("a")
    assert.equal("a1", ws:receive(5))
    ws.onmessage = function(e) via_handler[#via_handler + 1] = e.data end
    helpers.run_until(function() return #via_handler == 2 end, 5)
    assert.same({ "a2", "a3" }, via_handler)
    ws.onmessage = nil
    ws:send("b")
    assert.equal("b1", ws:receive(5))
    assert.equal("b2", ws:receive(5))
    assert.equal("b3", ws:receive(5))
    ws:close()
    srv:close()
  end)

  it("the queue is bounded by max_queue: reading pauses, then resumes", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s)
      s.onmessage = function() for i = 1, 50 do s:send(tostring(i)) end end
    end
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port, { max_queue = 8 }))
    ws:send("go")
    helpers.idle(0.2)
    local got = {}
    for i = 1, 50 do got[i] = ws:receive(5) end
    local want = {}
    for i = 1, 50 do want[i] = tostring(i) end
    assert.same(want, got)
    ws:close()
    srv:close()
  end)
end)

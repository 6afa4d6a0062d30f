-- Keepalive with dead-peer detection, backpressure both ways, and the
-- closing-handshake timeout.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local core = require "moonws.core"

describe("keepalive", function()
  it("pings every ping_interval and a live peer keeps the connection", function()
    local srv = assert(moonws.listen { port = 0 })
    local pings = 0
    srv.onconnection = function(s) s.onping = function() pings = pings + 1 end end
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port,
      { ping_interval = 0.05, ping_timeout = 0.5 }))
    local pongs = 0
    ws.onpong = function() pongs = pongs + 1 end
    helpers.idle(0.4)
    assert.equal(moonws.OPEN, ws.readyState)
    assert.is_true(pings >= 4, "pings " .. pings)
    assert.is_true(pongs >= 4, "pongs " .. pongs)
    ws:close()
    srv:close()
  end)

  it("a peer silent for ping_timeout after a ping is terminated: onerror then 1006", function()
    local srv = assert(moonws.listen { port = 0 })
    local deaf
    srv.onconnection = function(s) -- reads nothing, so answers nothing
      deaf = s
      s:pause()
    end
    -- A paused socket never reads the end of stream: without this, it stays
    -- open until a collection, and a later spec's moonws.run() waits for it.
    finally(function() if deaf then deaf:terminate() end end)
    local events = {}
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port,
      { ping_interval = 0.05, ping_timeout = 0.2 }))
    ws.onerror = function(e) events[#events + 1] = { e.error, e.message } end
    ws.onclose = function(e) events[#events + 1] = { e.code, e.wasClean } end
    local t0 = core.now()
    helpers.run_until(function() return ws.readyState == moonws.CLOSED end, 5)
    local elapsed = core.now() - t0
    srv:close()
    assert.equal("timeout", events[1][1])
    assert.matches("ping_timeout", events[1][2])
    assert.same({ 1006, false }, events[2])
    assert.is_true(elapsed >= 0.24 and elapsed < 2, "elapsed " .. elapsed)
  end)

  it("pings are answered while the application is busy elsewhere", function()
    local srv = assert(moonws.serve({ port = 0 }, function(ws)
      moonws.sleep(0.5) -- never inside receive()
      ws:close()
    end))
    local pongs = {}
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
    ws.onpong = function(e) pongs[#pongs + 1] = e.data end
    ws:ping("one")
    ws:ping("two")
    helpers.run_until(function() return #pongs == 2 end, 2)
    assert.same({ "one", "two" }, pongs)
    ws:close()
    srv:close()
  end)
end)

-- A server whose connection starts paused (reads nothing) and counts what
-- it receives once resumed.  Returns the server and a state table with
-- .ws (the server socket, once connected), .bytes and .messages.
local function paused_server()
  local srv = assert(moonws.listen { port = 0 })
  local state = { bytes = 0, messages = 0 }
  srv.onconnection = function(s)
    state.ws = s
    s:pause()
    s.onmessage = function(e)
      state.bytes = state.bytes + #e.data
      state.messages = state.messages + 1
    end
  end
  return srv, state
end

describe("backpressure", function()
  it("bufferedAmount grows when the peer stops reading, and drains after", function()
    local srv, peer = paused_server()
    -- A high-water mark above what we queue, so send never waits here.
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port,
      { send_buffer = 64 * 1024 * 1024 }))
    helpers.run_until(function() return peer.ws end, 5)
    local chunk = string.rep("b", 1024 * 1024)
    for _ = 1, 32 do assert(ws:send(chunk, "binary")) end
    helpers.idle(0.1)
    local stuck = ws.bufferedAmount
    -- Loopback kernel buffers take a few MiB at most; the rest waits in moonws.
    assert.is_true(stuck > 8 * 1024 * 1024, "bufferedAmount " .. stuck)
    peer.ws:resume()
    helpers.run_until(function() return peer.bytes == 32 * #chunk end, 20)
    assert.equal(0, ws.bufferedAmount)
    ws:close()
    srv:close()
  end)

  it("a coroutine send yields above send_buffer until the peer catches up", function()
    local srv, peer = paused_server()
    local sent, max_buffered = 0, 0
    local chunk = string.rep("c", 256 * 1024)
    moonws.spawn(function()
      local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port, { send_buffer = 512 * 1024 }))
      for _ = 1, 100 do
        assert(ws:send(chunk, "binary"))
        sent = sent + 1
        if ws.bufferedAmount > max_buffered then max_buffered = ws.bufferedAmount end
      end
      ws:close()
    end)
    helpers.run_until(function() return peer.ws end, 5)
    helpers.idle(0.3)
    assert.is_true(sent < 100, "the sender should be waiting, sent " .. sent)
    assert.is_true(max_buffered <= 512 * 1024 + #chunk + 64, "buffered " .. max_buffered)
    peer.ws:resume()
    helpers.run_until(function() return peer.messages == 100 end, 20)
    assert.equal(100, sent)
    srv:close()
    moonws.run()
  end)

  it("a send a round (written by C at the round's end) still backs up, drains in order and fires ondrain", function()
    local srv, peer = paused_server()
    local order_ok, expect = true, 1
    local KiB, COUNT = 1024, 400 -- 12.8 MiB: more than loopback's kernel buffers take
    local ws, sent, drains = nil, 0, 0
    moonws.spawn(function()
      ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port, { send_buffer = 512 * KiB }))
      ws.ondrain = function() drains = drains + 1 end
      local pad = string.rep("d", 32 * KiB - 6)
      for i = 1, COUNT do
        assert(ws:send(("%06d"):format(i) .. pad, "binary"))
        sent = i
        moonws.sleep(0.0005) -- the next send in a later round
      end
    end)
    helpers.run_until(function() return peer.ws end, 5)
    local on_message = peer.ws.onmessage
    peer.ws.onmessage = function(e)
      if tonumber(e.data:sub(1, 6)) ~= expect then order_ok = false end
      expect = expect + 1
      on_message(e)
    end
    -- Over send_buffer: the sender waits in send (run_until raises if never).
    helpers.run_until(function() return sent > 0 and ws.bufferedAmount > 512 * KiB end, 10)
    helpers.idle(0.2)
    assert.is_true(sent < COUNT, "the sender should be waiting, sent " .. sent)
    peer.ws:resume()
    helpers.run_until(function() return peer.messages == COUNT end, 30)
    assert.same({ COUNT, COUNT * 32 * KiB, true }, { sent, peer.bytes, order_ok })
    helpers.run_until(function() return ws.bufferedAmount == 0 end, 5)
    assert.is_true(drains >= 1, "ondrain fired " .. drains .. " times")
    ws:close()
    srv:close()
    moonws.run()
  end)

  it("sends past send_limit are refused while the peer does not read", function()
    local srv, peer = paused_server()
    local MiB = 1024 * 1024
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port,
      { send_buffer = 64 * MiB, send_limit = 4 * MiB }))
    helpers.run_until(function() return peer.ws end, 5)
    local chunk = string.rep("q", MiB)
    local accepted, refusal = 0, nil
    for _ = 1, 64 do
      local ok, message, name = ws:send(chunk, "binary")
      helpers.idle(0.01)
      if not ok then refusal = { message, name }; break end
      accepted = accepted + 1
    end
    assert.is_table(refusal, "a send was refused")
    assert.equal("too_big", refusal[2])
    assert.matches("send_limit", refusal[1])
    -- What waits is bounded: the limit plus at most one message.
    assert.is_true(ws.bufferedAmount <= 5 * MiB, "bufferedAmount " .. ws.bufferedAmount)
    assert.equal(moonws.OPEN, ws.readyState)
    peer.ws:resume()
    helpers.run_until(function() return peer.messages == accepted end, 20)
    assert.is_true(ws:send(chunk, "binary"))
    helpers.run_until(function() return peer.messages == accepted + 1 end, 20)
    ws:close()
    srv:close()
  end)

  it("pause()/resume() stop and restart reading toward the peer", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s) s.onmessage = function(e) s:send(e.data) end end
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
    local got = {}
    ws.onmessage = function(e) got[#got + 1] = e.data end
    ws:pause()
    ws:send("while paused")
    helpers.idle(0.1)
    assert.same({}, got)
    ws:resume()
    helpers.run_until(function() return #got == 1 end, 5)
    assert.same({ "while paused" }, got)
    ws:close()
    srv:close()
  end)
end)

describe("close_timeout", function()
  it("drops the connection when the peer never answers the close frame", function()
    local srv = assert(moonws.listen { port = 0 })
    -- The deaf peer is held: a paused socket with no handlers and no
    -- reference is collected, and a collected one closes its connection,
    -- which is an answer (seen under ASan, when a collection fell in connect).
    local deaf
    srv.onconnection = function(s) deaf = s; s:pause() end -- never reads our close frame
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port, { close_timeout = 0.2 }))
    local closed
    ws.onclose = function(e) closed = { e.code, e.wasClean } end
    local t0 = core.now()
    local ok, message, name = ws:close(1000, "anyone?")
    local elapsed = core.now() - t0
    deaf:terminate()
    srv:close()
    assert.same({ 1006, false }, closed)
    assert.is_nil(ok)
    assert.equal("closed", name)
    assert.is_string(message)
    assert.is_true(elapsed >= 0.19 and elapsed < 2, "elapsed " .. elapsed)
  end)
end)

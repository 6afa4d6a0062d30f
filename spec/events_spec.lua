-- Event style (docs/DESIGN.md 1.1): the browser's shape, both ends in one process.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws

local function server(opts)
  opts = opts or {}
  opts.port = 0
  return assert(moonws.listen(opts))
end

describe("the seed scenario", function()
  it("server closes with 4000/bye: the client's onclose sees it, cleanly", function()
    local srv = server()
    local got
    srv.onconnection = function(ws)
      ws.onmessage = function(e)
        got = e.data
        ws:close(4000, "bye")
      end
    end
    local events = {}
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port .. "/chat")
    ws.onopen = function(e)
      events[#events + 1] = "open"
      assert.equal(ws, e.target)
      ws:send("Hello Server!")
    end
    ws.onclose = function(e)
      events[#events + 1] = { e.code, e.reason, e.wasClean }
      srv:close()
    end
    ws.onerror = function(e) events[#events + 1] = "error " .. e.message end
    moonws.run()
    assert.equal("Hello Server!", got)
    assert.same({ "open", { 4000, "bye", true } }, events)
    assert.equal(moonws.CLOSED, ws.readyState)
    assert.equal(4000, ws.closeCode)
    assert.equal("bye", ws.closeReason)
  end)

  it("client closes with 1000/done: the server's handler sees it, cleanly", function()
    local srv = server()
    local seen
    srv.onconnection = function(ws)
      ws.onclose = function(e)
        seen = { e.code, e.reason, e.wasClean }
        srv:close()
      end
    end
    local client_close
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    ws.onopen = function() ws:close(1000, "done") end
    ws.onclose = function(e) client_close = { e.code, e.wasClean } end
    moonws.run()
    assert.same({ 1000, "done", true }, seen)
    assert.same({ 1000, true }, client_close)
  end)
end)

describe("onclose", function()
  it("fires exactly once, after onerror, with 1006 when the peer vanished", function()
    local srv = server()
    srv.onconnection = function(ws)
      ws.onmessage = function() ws:terminate() end
    end
    local order = {}
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    ws.onopen = function() ws:send("go") end
    ws.onerror = function(e) order[#order + 1] = "error:" .. e.error end
    ws.onclose = function(e)
      order[#order + 1] = ("close:%d:%s"):format(e.code, tostring(e.wasClean))
      srv:close()
    end
    moonws.run()
    assert.same({ "error:io", "close:1006:false" }, order)
  end)

  it("reports 1005 when the peer's close frame had no code", function()
    local srv = server()
    srv.onconnection = function(ws) ws.onmessage = function() ws:close() end end
    local code
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    ws.onopen = function() ws:send("x") end
    ws.onclose = function(e) code = e.code; srv:close() end
    moonws.run()
    assert.equal(1005, code)
  end)

  it("terminate() is immediate: 1006, wasClean false, no onerror", function()
    local srv = server()
    local server_saw
    srv.onconnection = function(s)
      s.onclose = function(e) server_saw = e.code; srv:close() end
    end
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    local events = {}
    ws.onopen = function()
      ws:terminate()
      events[#events + 1] = "after terminate " .. ws.readyState
    end
    ws.onerror = function() events[#events + 1] = "error" end
    ws.onclose = function(e) events[#events + 1] = ("close %d %s"):format(e.code, tostring(e.wasClean)) end
    moonws.run()
    assert.same({ "close 1006 false", "after terminate 3" }, events)
    assert.equal(1006, server_saw)
  end)

  it("a reason without a code is sent with 1000, as the browser does", function()
    local srv = server()
    local seen
    srv.onconnection = function(s) s.onclose = function(e) seen = { e.code, e.reason } end end
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    ws.onopen = function() ws:close(nil, "just a reason") end
    ws.onclose = function() srv:close() end
    moonws.run()
    assert.same({ 1000, "just a reason" }, seen)
  end)
end)

describe("after close", function()
  it("send, ping and pong return nil, message, 'closed' and send nothing", function()
    local srv = server()
    local received = {}
    srv.onconnection = function(s)
      s.onmessage = function(e) received[#received + 1] = e.data end
    end
    local results
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    ws.onopen = function()
      ws:send("before")
      ws:close(1000)
      results = { { ws:send("after") }, { ws:ping() }, { ws:pong() } }
    end
    ws.onclose = function() srv:close() end
    moonws.run()
    for _, r in ipairs(results) do
      assert.is_nil(r[1])
      assert.is_string(r[2])
      assert.equal("closed", r[3])
    end
    assert.same({ "before" }, received)
  end)

  it("a new object reopens: sockets are not reusable, as in the browser", function()
    local srv = server()
    srv.onconnection = function(s) s.onmessage = function(e) s:send(e.data) end end
    local echoes = {}
    local function open_once(n)
      local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
      ws.onopen = function() ws:send("round " .. n) end
      ws.onmessage = function(e) echoes[#echoes + 1] = e.data; ws:close(1000) end
      ws.onclose = function()
        if n < 3 then open_once(n + 1) else srv:close() end
      end
    end
    open_once(1)
    moonws.run()
    assert.same({ "round 1", "round 2", "round 3" }, echoes)
  end)
end)

describe("handler errors", function()
  it("go to the socket's onerror and never kill the loop", function()
    local srv = server()
    srv.onconnection = function(s) s.onmessage = function(e) s:send(e.data) end end
    local errors, messages = {}, {}
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    ws.onopen = function() ws:send("one"); ws:send("two") end
    ws.onmessage = function(e)
      messages[#messages + 1] = e.data
      if e.data == "one" then error("boom") end
      ws:close(1000)
    end
    ws.onerror = function(e) errors[#errors + 1] = e end
    ws.onclose = function() srv:close() end
    moonws.run()
    assert.same({ "one", "two" }, messages)
    assert.equal(1, #errors)
    assert.equal("handler", errors[1].error)
    assert.matches("error in onmessage handler: .*boom", errors[1].message)
  end)

  it("of one socket leave the others woken in the same round untouched", function()
    -- The loop pumps the sockets of a round under one protected call: a
    -- handler's error must reach its own socket and stop nothing else.
    local srv = server()
    local failed = {}
    srv.onconnection = function(s)
      s.onmessage = function(e)
        if e.data:match("^boom") then error("boom") end
        s:send(e.data)
      end
      s.onerror = function(e) failed[#failed + 1] = { e.target == s, e.message } end
    end
    local clients, opened, echoed = {}, 0, {}
    for i = 1, 4 do
      local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
      clients[i] = ws
      ws.onopen = function()
        opened = opened + 1
        if opened < 4 then return end
        -- All at once: the server reads the four in one round.
        for j, c in ipairs(clients) do
          c:send((j == 2 and "boom " or "msg ") .. j)
          c:send("after " .. j)
        end
      end
      ws.onmessage = function(e) echoed[#echoed + 1] = e.data end
    end
    helpers.run_until(function() return #echoed == 7 end, 5, "seven echoes")
    for _, c in ipairs(clients) do c:close() end
    srv:close()
    moonws.run()
    table.sort(echoed)
    assert.same({ "after 1", "after 2", "after 3", "after 4", "msg 1", "msg 3", "msg 4" }, echoed)
    assert.equal(1, #failed)
    assert.is_true(failed[1][1])
    assert.matches("error in onmessage handler: .*boom", failed[1][2])
  end)

  it("go to moonws.onerror when the socket has no onerror", function()
    local srv = server()
    srv.onconnection = function(s) s.onmessage = function() end end
    local reported
    moonws.onerror = function(e) reported = e.message end
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    ws.onopen = function() error("open failed") end
    ws.onclose = function() srv:close() end
    helpers.run_until(function() return reported end, 5)
    moonws.onerror = nil
    ws:close()
    moonws.run()
    assert.matches("error in onopen handler: .*open failed", reported)
  end)
end)

describe("messages", function()
  it("keep their order and kind; binary data is byte-exact", function()
    local srv = server()
    srv.onconnection = function(s) s.onmessage = function(e) s:send(e.data, e.binary and "binary" or "text") end end
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    local bytes = table.concat(all)
    local got = {}
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    ws.onopen = function()
      ws:send("héllo wörld ✓")
      ws:send(bytes, "binary")
      ws:send("")
      ws:send(string.rep("z", 70000), "binary")
    end
    ws.onmessage = function(e)
      got[#got + 1] = { e.data, e.binary }
      if #got == 4 then ws:close(1000) end
    end
    ws.onclose = function() srv:close() end
    moonws.run()
    assert.same({ "héllo wörld ✓", false }, got[1])
    assert.same({ bytes, true }, got[2])
    assert.same({ "", false }, got[3])
    assert.same({ string.rep("z", 70000), true }, got[4])
  end)

  it("each event is a table of its own with type, data, binary and target", function()
    local srv = server()
    srv.onconnection = function(s) s.onmessage = function(e) s:send(e.data, e.binary and "binary" or "text") end end
    local events = {}
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    ws.onopen = function()
      ws:send("a")
      ws:send("b", "binary")
      ws:send("c")
    end
    local seen = {}
    ws.onmessage = function(e)
      events[#events + 1] = e
      seen[#seen + 1] = { e.type, e.data, e.binary, e.target == ws }
      e.binary, e.type, e.mine = "changed", "changed", #events -- the next event is not touched
      if #events == 3 then ws:close(1000) end
    end
    ws.onclose = function() srv:close() end
    moonws.run()
    assert.same({ { "message", "a", false, true }, { "message", "b", true, true },
      { "message", "c", false, true } }, seen)
    assert.are_not.equal(events[1], events[3])
    for i, e in ipairs(events) do assert.same({ i, "changed" }, { e.mine, e.binary }) end
  end)

  it("message events of two sockets each name their own socket, text and binary alike", function()
    local srv = server()
    srv.onconnection = function(s)
      s.onmessage = function(e) s:send(e.data, e.binary and "binary" or "text") end
    end
    local sockets, seen = {}, {}
    for i = 1, 2 do
      local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
      sockets[i] = ws
      ws.onopen = function()
        ws:send("t" .. i)
        ws:send("b" .. i, "binary")
        ws:send("t" .. i)
      end
      ws.onmessage = function(e)
        local own = {}
        for k in pairs(e) do own[#own + 1] = k end
        seen[#seen + 1] = { e.data, e.type, e.binary, e.target == ws, table.concat(own, ",") }
        if e.data == "b" .. i then e.target = "changed" end -- the next event is not touched
        if #seen == 6 then sockets[1]:close(); sockets[2]:close() end
      end
      ws.onclose = function() if sockets[1].readyState == 3 and sockets[2].readyState == 3 then srv:close() end end
    end
    moonws.run()
    table.sort(seen, function(a, b) return a[1] < b[1] end)
    assert.same({
      { "b1", "message", true, true, "data" }, { "b2", "message", true, true, "data" },
      { "t1", "message", false, true, "data" }, { "t1", "message", false, true, "data" },
      { "t2", "message", false, true, "data" }, { "t2", "message", false, true, "data" },
    }, seen)
  end)

  it("ws.send stays the method: the same for every socket, and a socket's own when set", function()
    local srv = server()
    local seen = {}
    srv.onconnection = function(s)
      s.onmessage = function(e)
        seen[#seen + 1] = s.send
        s:send(e.data)
      end
    end
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    local sent = {}
    ws.onopen = function()
      local method = ws.send
      ws.send = function(self, data) sent[#sent + 1] = data; return method(self, data) end
      ws:send("x")
      ws:send("y")
    end
    ws.onmessage = function(e) if e.data == "y" then ws:close(1000) end end
    ws.onclose = function() srv:close() end
    moonws.run()
    assert.same({ "x", "y" }, sent)
    assert.equal(2, #seen)
    assert.equal(seen[1], seen[2])
    ws.send = nil -- back to the method
    assert.equal(seen[1], ws.send)
  end)

  it("onping/onpong fire; pings are answered automatically", function()
    local srv = server()
    local server_pings = {}
    srv.onconnection = function(s)
      s.onping = function(e) server_pings[#server_pings + 1] = e.data end
      s.onmessage = function() end
    end
    local pongs = {}
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    ws.onopen = function() ws:ping("hi"); ws:ping("") end
    ws.onpong = function(e)
      pongs[#pongs + 1] = e.data
      if #pongs == 2 then ws:close(1000) end
    end
    ws.onclose = function() srv:close() end
    moonws.run()
    assert.same({ "hi", "" }, pongs)
    assert.same({ "hi", "" }, server_pings)
  end)
end)

describe("connection failures", function()
  it("a refused connection fires onerror 'refused' then onclose 1006", function()
    local srv = server()
    local port = srv.port
    srv:close()
    local order = {}
    local ws = moonws.new("ws://127.0.0.1:" .. port)
    ws.onerror = function(e) order[#order + 1] = e.error end
    ws.onclose = function(e) order[#order + 1] = e.code end
    moonws.run()
    assert.same({ "refused", 1006 }, order)
  end)

  it("a handshake refused by the server callback fires 'handshake'", function()
    local srv = server { handshake = function(req) return false, 401, "no token" end }
    local err
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    ws.onerror = function(e) err = e end
    ws.onclose = function() srv:close() end
    moonws.run()
    assert.equal("handshake", err.error)
    assert.matches("401", err.message)
  end)
end)

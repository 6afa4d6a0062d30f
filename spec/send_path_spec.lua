-- ws:send's hot path remembers the last socket it sent on and that
-- socket's conn (docs/DESIGN.md 2.5): every message must still leave on
-- its own socket's connection, however sends interleave and sockets come
-- and go.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws

-- A server that keeps its sockets in order of arrival, and clients that
-- record what each receives.
local function pairs_of(n)
  local srv = assert(moonws.listen { port = 0 })
  local accepted = {}
  srv.onconnection = function(s) accepted[#accepted + 1] = s end
  local clients, got = {}, {}
  for i = 1, n do
    got[i] = {}
    clients[i] = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
    clients[i].onmessage = function(e) table.insert(got[i], e.data) end
    -- one at a time, so accepted[i] is clients[i]'s peer
    helpers.run_until(function() return #accepted == i and clients[i].readyState == moonws.OPEN end,
      5, "connection " .. i)
  end
  return srv, accepted, clients, got
end

describe("ws:send's memory of its last socket", function()
  it("sends that alternate between sockets each leave on their own connection", function()
    local srv, accepted, clients, got = pairs_of(3)
    for round = 1, 5 do
      for _, i in ipairs { 1, 1, 2, 3, 2, 1 } do
        assert(accepted[i]:send(("to %d, round %d"):format(i, round)))
      end
    end
    helpers.run_until(function() return #got[1] == 15 and #got[2] == 10 and #got[3] == 5 end, 5)
    for i = 1, 3 do
      for _, data in ipairs(got[i]) do assert.equal(i, tonumber(data:match("^to (%d)"))) end
    end
    for i = 1, 3 do clients[i]:close() end
    srv:close()
  end)

  it("a socket closed after a send refuses the next, which never reaches its peer", function()
    local srv, accepted, clients, got = pairs_of(2)
    local a = accepted[1]
    assert(a:send("first"))
    a:terminate()
    local ok, message, name = a:send("after terminate")
    assert.is_nil(ok)
    assert.is_string(message)
    assert.equal("closed", name)
    assert(accepted[2]:send("other socket"))
    helpers.run_until(function() return #got[2] == 1 end, 5)
    helpers.idle(0.1)
    assert.same({ "first" }, got[1])
    assert.same({ "other socket" }, got[2])
    clients[2]:close()
    srv:close()
  end)

  it("sockets that come and go (their objects collected, their memory reused) never get another's message", function()
    local srv = assert(moonws.listen { port = 0 })
    local current
    srv.onconnection = function(s) current = s end
    for round = 1, 40 do
      current = nil
      local got = {}
      local c = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
      c.onmessage = function(e) got[#got + 1] = e.data end
      helpers.run_until(function() return current and c.readyState == moonws.OPEN end, 5)
      assert(current:send("round " .. round))
      assert(current:send("round " .. round))
      helpers.run_until(function() return #got == 2 end, 5, "round " .. round)
      assert.same({ "round " .. round, "round " .. round }, got)
      if round % 2 == 0 then current:terminate() else current:close() end
      c:close()
      helpers.run_until(function() return c.readyState == moonws.CLOSED end, 5)
      current, c = nil, nil
      collectgarbage()
      collectgarbage()
    end
    srv:close()
  end)

  it("a remembered socket still checks every send: the kind, the data, extra arguments", function()
    local srv, accepted, clients = pairs_of(1)
    local got = {}
    clients[1].onmessage = function(e) got[#got + 1] = { e.data, e.binary } end
    local s = accepted[1]
    assert(s:send("first", "text")) -- remembered from here on
    assert(s:send("no kind"))
    assert(s:send("\0\1", "binary"))
    assert(s:send("extra", "text", "ignored"))
    local ok, err = pcall(s.send, s, "x", "json")
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'send'", err)
    ok, err = pcall(s.send, s, 42)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'send'", err)
    ok, err = pcall(s.send, s, "\255")
    assert.is_false(ok)
    assert.matches("invalid UTF%-8", err)
    helpers.run_until(function() return #got == 4 end, 5)
    assert.same({ { "first", false }, { "no kind", false }, { "\0\1", true }, { "extra", false } },
      got)
    clients[1]:close()
    srv:close()
  end)

  it("coroutines sending on several sockets in turn", function()
    local srv = assert(moonws.serve({ port = 0 }, function(ws)
      while true do
        local data, kind = ws:receive()
        if not data then return end
        ws:send(data, kind)
        ws:send(data .. "!", kind)
      end
    end))
    local got = {}
    moonws.spawn(function()
      local a = assert(moonws.connect("ws://127.0.0.1:" .. srv.port, { timeout = 5 }))
      local b = assert(moonws.connect("ws://127.0.0.1:" .. srv.port, { timeout = 5 }))
      for i = 1, 20 do
        assert(a:send("a" .. i)); assert(b:send("b" .. i, "binary"))
      end
      for _ = 1, 40 do got[#got + 1] = "A " .. a:receive() end
      for _ = 1, 40 do got[#got + 1] = "B " .. b:receive() end
      a:close(); b:close()
      srv:close()
    end)
    moonws.run()
    assert.equal(80, #got)
    for _, line in ipairs(got) do
      local who, data = line:match("^(%u) (%l)")
      assert.equal(who:lower(), data, line)
    end
  end)
end)

-- moonws.pubsub against a real redis-server started on 127.0.0.1 for each
-- test (generated config in a temp dir, no persistence, killed by PID):
-- round trips in one process, two chat server processes relaying through
-- Redis, Redis killed and restarted on the same port (losses reported,
-- subscribers told, traffic back), and WebSocket traffic that keeps
-- flowing while Redis is unreachable.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"

local core = require "moonws.core"

local support_redis = require "spec.support.redis"
local new_redis, free_port = support_redis.new, support_redis.free_port

-- An in-process echo server and a connected client.
local function echo_pair()
  local srv = assert(moonws.listen { host = "127.0.0.1", port = 0 })
  srv.onconnection = function(ws) ws.onmessage = function(e) ws:send(e.data) end end
  local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port, { timeout = 5 }))
  return srv, ws
end

-- Records every event of a pubsub object.
local function recorder(ps)
  local log = { lost = {}, disconnect = {}, reconnect = {}, errors = {} }
  ps.onlost = function(e) log.lost[#log.lost + 1] = e end
  ps.ondisconnect = function(e) log.disconnect[#log.disconnect + 1] = e end
  ps.onreconnect = function(e) log.reconnect[#log.reconnect + 1] = e end
  ps.onerror = function(e) log.errors[#log.errors + 1] = e end
  return log
end

local function roles(list)
  local set = {}
  for _, e in ipairs(list) do set[e.role] = (set[e.role] or 0) + 1 end
  return set
end

describe("moonws.pubsub on redis #host", function()
  local cleanups

  before_each(function() cleanups = {} end)
  after_each(function()
    for i = #cleanups, 1, -1 do pcall(cleanups[i]) end
  end)

  local function later(fn) cleanups[#cleanups + 1] = fn end

  local function redis()
    local r = new_redis()
    later(function() r:cleanup() end)
    return r
  end

  local function pubsub(url, options)
    local ps = moonws.pubsub(url, options)
    later(function() ps:close() end)
    return ps
  end

  it("round trip in one process: bytes, order, several subscribers, unsubscribe", function()
    local r = redis()
    local ps = pubsub(r:url())
    local got, also = {}, {}
    ps:subscribe("room", function(data, channel) got[#got + 1] = { data, channel } end)
    local second = function(data) also[#also + 1] = data end
    ps:subscribe("room", second)
    assert.is_true(ps:wait(10))

    local binary = "a\0b\255\n" .. ("x"):rep(100000)
    assert.is_true(ps:publish("room", "hello"))
    assert.is_true(ps:publish("room", binary))
    for i = 1, 100 do assert.is_true(ps:publish("room", "n" .. i)) end
    helpers.run_until(function() return #got == 102 end, 10, "102 messages")
    assert.same({ "hello", "room" }, got[1])
    assert.equal(binary, got[2][1])
    for i = 1, 100 do assert.equal("n" .. i, got[i + 2][1]) end
    assert.equal(102, #also)

    -- Removing one function keeps the channel; removing all unsubscribes.
    ps:unsubscribe("room", second)
    local marks = {}
    ps:subscribe("mark", function(data) marks[#marks + 1] = data end)
    assert.is_true(ps:wait(10))
    ps:publish("room", "one left")
    ps:publish("mark", "1")
    helpers.run_until(function() return #marks == 1 end, 10, "mark 1")
    assert.equal("one left", got[103][1])
    assert.equal(102, #also)
    ps:unsubscribe("room")
    ps:publish("room", "nobody")
    ps:publish("mark", "2")
    helpers.run_until(function() return #marks == 2 end, 10, "mark 2")
    helpers.idle(0.1)
    assert.equal(103, #got)
  end)

  it("resolves localhost off the loop thread; publishes from a coroutine", function()
    local r = redis()
    local ps = pubsub("redis://localhost:" .. r.port)
    local got
    ps:subscribe("c", function(data) got = data end)
    local done
    moonws.spawn(function()
      assert(ps:wait(10))
      assert(ps:publish("c", "from a coroutine"))
      done = true
    end)
    helpers.run_until(function() return got ~= nil end, 10, "the message")
    assert.is_true(done)
    assert.equal("from a coroutine", got)
  end)

  -- examples/chat/server.lua with a Redis URL; returns the process and port.
  local function chat_server(redis_url)
    local p = process.start({ "lua5.4", "examples/chat/server.lua", "0", redis_url }, 60)
    later(function() p:cleanup() end)
    local port = tonumber(p:wait_for("^chat: listening on http://127%.0%.0%.1:(%d+)/", 10,
      helpers.idle))
    p:wait_for("^chat: redis ready", 10, helpers.idle)
    return p, port
  end

  -- A chat client that has read its greeting and join notices; returns
  -- the socket and its name ("guest1", "guest1@2" in a pool).
  local function chat_client(port)
    local ws = assert(moonws.connect(("ws://127.0.0.1:%d/chat"):format(port), { timeout = 5 }))
    later(function() ws:terminate() end)
    local name = assert(ws:receive(5)):match("^%* you are (%S+)$")
    assert.equal("* " .. name .. " joined", ws:receive(5))
    return ws, name
  end

  it("two chat servers relay through redis to each other's clients", function()
    local r = redis()
    local a, port_a = chat_server(r:url())
    local _, port_b = chat_server(r:url())
    assert.not_equal(port_a, port_b)
    local ca, name_a = chat_client(port_a)
    local cb, name_b = chat_client(port_b)

    assert(ca:send("hi from A"))
    assert.equal(name_a .. ": hi from A", ca:receive(5))   -- its own server, directly
    assert.equal(name_a .. ": hi from A", cb:receive(5))   -- the other server, via redis
    assert(cb:send("hi from B"))
    assert.equal(name_b .. ": hi from B", cb:receive(5))
    assert.equal(name_b .. ": hi from B", ca:receive(5))
    -- Nothing is delivered twice (a server skips its own lines from redis).
    local extra, _, name = ca:receive(0.3)
    assert.is_nil(extra)
    assert.equal("timeout", name)

    -- Redis goes away: the local room keeps working and the loss is said.
    r:stop()
    a:wait_for("redis publisher connection down", 10, helpers.idle)
    assert(ca:send("during the outage"))
    assert.equal(name_a .. ": during the outage", ca:receive(5))
    assert.equal("! not relayed to other servers: redis is disconnected", ca:receive(5))
    assert.is_nil(cb:receive(0.3))

    -- Back on the same port: clients hear of the gap, then lines cross.
    assert.is_true(r:start())
    local notice = "! reconnected to redis; lines from other servers may be lost"
    assert.equal(notice, ca:receive(15))
    assert.equal(notice, cb:receive(15))
    assert(ca:send("after the restart"))
    assert.equal(name_a .. ": after the restart", ca:receive(5))
    assert.equal(name_a .. ": after the restart", cb:receive(5))
  end)

  it("a pool of 2 chat workers on one port is one room through redis", function()
    local r = redis()
    local port = free_port()
    local pool = process.start({ "lua5.4", "-e", ([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = "./?.so;" .. package.cpath
      local ok, err = require("moonws.pool").run {
        script = "examples/chat/server.lua", args = { %d, %q }, workers = 2,
        onworker = function(e) print("WORKER", e.type, e.worker) io.stdout:flush() end,
      }
      print("POOL done", ok, err)
    ]]):format(port, r:url()) }, 60)
    later(function() pool:cleanup() end)
    -- Both workers listen once both subscribed ("redis ready" is theirs).
    helpers.run_until(function()
      local _, n = pool:stdout():gsub("chat: redis ready", "")
      return n == 2
    end, 15, "both workers ready")
    -- The kernel spreads connections: connect until both workers have one.
    local by_worker = {}
    for _ = 1, 40 do
      local ws, name = chat_client(port)
      local worker = name:match("@(%d+)$")
      if by_worker[worker] then ws:close() else by_worker[worker] = ws end
      if by_worker["1"] and by_worker["2"] then break end
    end
    local one, two = by_worker["1"], by_worker["2"]
    assert.truthy(one and two, "the kernel never gave worker 1 and worker 2 a client each")
    -- The next chat line, past "* guestN joined/left" notices of the
    -- clients connected (and closed) above.
    local function next_line(ws)
      local line
      repeat line = assert(ws:receive(5)) until line:sub(1, 2) ~= "* "
      return line
    end
    assert(one:send("from worker 1's client"))
    assert.matches("^guest%d+@1: from worker 1's client$", next_line(two))
    assert(two:send("and back"))
    assert.matches("^guest%d+@1: from worker 1's client$", next_line(one))
    assert.matches("^guest%d+@2: and back$", next_line(one))
  end)

  it("redis restarted on the same port: losses reported, subscribers told, traffic back",
    function()
      local r = redis()
      local ps = pubsub(r:url(), { reconnect_max = 0.5 })
      local log = recorder(ps)
      local got = {}
      ps:subscribe("news", function(data) got[#got + 1] = data end)
      assert.is_true(ps:wait(10))
      assert.is_true(ps:publish("news", "before"))
      helpers.run_until(function() return #got == 1 end, 10, "before")

      r:stop()
      helpers.run_until(function() return #log.disconnect == 2 end, 10, "both disconnects")
      assert.same({ publisher = 1, subscriber = 1 }, roles(log.disconnect))
      assert.equal("io", log.disconnect[1].error)
      assert.is_false(ps:ready())

      -- Publishing during the outage: refused, and counted once per round.
      local ok, message, name = ps:publish("news", "lost 1")
      assert.is_nil(ok)
      assert.equal("redis is disconnected", message)
      assert.equal("closed", name)
      assert.is_nil((ps:publish("news", "lost 2")))
      helpers.run_until(function() return #log.lost == 1 end, 5, "onlost")
      assert.equal(2, log.lost[1].count)
      assert.equal("closed", log.lost[1].error)
      assert.equal("redis is disconnected", log.lost[1].message)

      -- The same loop still serves WebSocket traffic meanwhile.
      local srv, ws = echo_pair()
      later(function() ws:terminate() srv:close() end)
      for i = 1, 10 do
        assert(ws:send("echo " .. i))
        assert.equal("echo " .. i, ws:receive(5))
      end
      assert.equal(0, #log.reconnect)

      assert.is_true(r:start())
      helpers.run_until(function() return #log.reconnect == 1 end, 15, "onreconnect")
      local e = log.reconnect[1]
      assert.is_true(e.missed)
      assert.same({ "news" }, e.channels)
      assert.is_true(e.down_for > 0)
      assert.is_true(ps:ready())
      assert.is_true(ps:publish("news", "after"))
      helpers.run_until(function() return #got == 2 end, 10, "after")
      assert.same({ "before", "after" }, got)
      -- One disconnect per connection per outage, however many retries.
      assert.equal(2, #log.disconnect)
      assert.equal(1, #log.lost)
      assert.same({}, log.errors)
    end)

  it("WebSocket traffic flows while redis is unreachable (connects that hang)", function()
    -- A listener whose accept queue is full: SYNs to it are dropped, so
    -- connecting hangs as to a host that went away.
    local black_hole = process.start({ "/usr/bin/python3", "-c", [[
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0)
fill = []
for _ in range(3):
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(s.getsockname())
    except BlockingIOError:
        pass
    fill.append(c)
time.sleep(0.2)
print("PORT %d" % s.getsockname()[1], flush=True)
time.sleep(60)
]] }, 70)
    later(function() black_hole:cleanup() end)
    local port = black_hole:port(helpers.idle)

    local srv, ws = echo_pair()
    later(function() ws:terminate() srv:close() end)
    local t0 = core.now()
    local ps = pubsub("redis://127.0.0.1:" .. port, { timeout = 1.5 })
    assert.is_true(core.now() - t0 < 0.5, "moonws.pubsub returned at once")
    local log = recorder(ps)

    local echoed = 0
    for i = 1, 20 do
      assert(ws:send("ping " .. i))
      assert.equal("ping " .. i, ws:receive(5))
      echoed = echoed + 1
    end
    -- All of that happened while the connects were still pending.
    assert.equal(20, echoed)
    assert.equal(0, #log.disconnect)
    local ok, message, name = ps:publish("c", "x")
    assert.is_nil(ok)
    assert.equal("redis is disconnected", message)
    assert.equal("closed", name)

    helpers.run_until(function() return #log.disconnect == 2 end, 10, "connect timeouts")
    assert.equal("timeout", log.disconnect[1].error)
    assert.matches("timed out connecting to redis", log.disconnect[1].message)
    assert(ws:send("still here"))
    assert.equal("still here", ws:receive(5))
  end)

  it("misuse raises; a closed object refuses use", function()
    assert.has_error(function() moonws.pubsub("http://127.0.0.1:6379") end)
    assert.has_error(function() moonws.pubsub("redis://u:p@127.0.0.1:6379") end)
    assert.has_error(function() moonws.pubsub("redis://127.0.0.1:99999") end)
    assert.has_error(function() moonws.pubsub("redis://127.0.0.1", { retries = 3 }) end)
    local r = redis()
    local ps = pubsub(r:url())
    assert.has_error(function() ps:subscribe("c") end)
    assert.has_error(function() ps:publish("c", 42) end)
    assert.is_true(ps:close())
    assert.is_true(ps:close())
    assert.has_error(function() ps:publish("c", "x") end, "attempt to use a closed pubsub")
  end)
end)

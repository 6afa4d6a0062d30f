-- The loop and embedding (docs/DESIGN.md 1.7): step, stop, fd, next_timeout,
-- and the poll() fallback backend.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local core = require "moonws.core"
local process = require "spec.support.process"

-- Run a Lua script in a fresh lua5.4 (moonws from the checkout), with
-- environment assignments env (a list like { "MOONWS_POLL=poll" });
-- returns its stdout and stderr.
local function run_lua(script, env)
  local argv = { "env" }
  for _, assignment in ipairs(env or {}) do argv[#argv + 1] = assignment end
  for _, a in ipairs { "lua5.4", "-e", [[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = "./?.so;" .. package.cpath
    ]] .. script } do
    argv[#argv + 1] = a
  end
  local p = process.start(argv, 20)
  assert.is_true(p:wait_exit(15), "the script did not finish")
  local out, err, status = p:stdout(), p:stderr(), p:exit_status()
  p:cleanup()
  assert.equal(0, status, err)
  return out, err
end

describe("moonws.step", function()
  it("step(0) never waits", function()
    local srv = assert(moonws.listen { port = 0 })
    local t0 = core.now()
    for _ = 1, 100 do moonws.step(0) end
    local elapsed = core.now() - t0
    srv:close()
    assert.is_true(elapsed < 0.5, "100 idle steps took " .. elapsed)
  end)

  it("a per-frame step(0) loop drives a whole exchange", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s) s.onmessage = function(e) s:send(e.data) end end
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    local got = {}
    ws.onopen = function() for i = 1, 5 do ws:send("frame " .. i) end end
    ws.onmessage = function(e) got[#got + 1] = e.data end
    local frames = 0
    while #got < 5 and frames < 1000 do
      moonws.step(0)
      frames = frames + 1
      os.execute("sleep 0.001") -- the rest of the game frame
    end
    ws:close()
    srv:close()
    moonws.run()
    assert.same({ "frame 1", "frame 2", "frame 3", "frame 4", "frame 5" }, got)
  end)
end)

describe("bounded work per step", function()
  it("a flood is dispatched at most max_step_events per socket per step, in order", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s)
      s.onmessage = function() for i = 1, 2000 do s:send(tostring(i)) end end
    end
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port,
      { max_step_events = 100, max_step_bytes = 4096 }))
    local got = {}
    ws.onmessage = function(e) got[#got + 1] = tonumber(e.data) end
    ws:send("flood me")
    local per_step, steps = 0, 0
    local deadline = core.now() + 10
    while #got < 2000 and core.now() < deadline do
      local before = #got
      moonws.step(0.01)
      per_step = math.max(per_step, #got - before)
      if #got > before then steps = steps + 1 end
    end
    ws:close()
    srv:close()
    assert.equal(2000, #got)
    for i = 1, 2000 do
      if got[i] ~= i then error(("message %d arrived as %s"):format(i, tostring(got[i]))) end
    end
    assert.is_true(per_step <= 100, "one step dispatched " .. per_step)
    assert.is_true(steps >= 20, "only " .. steps .. " steps")
  end)
end)

describe("moonws.run and moonws.stop", function()
  it("run returns when no socket, server, timer or coroutine is left", function()
    local done = false
    moonws.spawn(function() moonws.sleep(0.01); done = true end)
    moonws.run()
    assert.is_true(done)
  end)

  it("stop() makes run() return with work still pending", function()
    local srv = assert(moonws.listen { port = 0 })
    moonws.spawn(function() moonws.sleep(0.05); moonws.stop() end)
    local t0 = core.now()
    moonws.run()
    assert.is_true(core.now() - t0 < 2)
    srv:close()
  end)
end)

describe("host event loop integration", function()
  it("moonws.fd() turns readable when moonws has I/O work", function()
    local fd = moonws.fd()
    assert.is_number(fd)
    -- A foreign poller (the poll backend) watching moonws's descriptor.
    local host = assert(core.poller(true))
    host:set(fd, true, false)
    local fds, evs = {}, {}
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s) s.onmessage = function(e) s:send(e.data) end end
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port)
    local got
    ws.onopen = function() ws:send("via host loop") end
    ws.onmessage = function(e) got = e.data end
    local deadline = core.now() + 5
    while not got and core.now() < deadline do
      local timeout = moonws.next_timeout()
      if timeout == nil or timeout > 0.1 then timeout = 0.1 end
      host:wait(timeout, fds, evs)
      moonws.step(0)
    end
    host:close()
    ws:close()
    srv:close()
    moonws.run()
    assert.equal("via host loop", got)
  end)

  it("next_timeout() tells the seconds until the next timer", function()
    -- In a fresh process: earlier specs leave timers (lingering closes).
    local out, err = run_lua [[
      local moonws = require "moonws"
      print(moonws.next_timeout())
      local woke = false
      moonws.spawn(function() moonws.sleep(0.5); woke = true end)
      print(moonws.next_timeout()) -- the new coroutine is ready now
      moonws.step(0)
      local t = moonws.next_timeout()
      print(t > 0.3 and t <= 0.5)
      moonws.run()
      print(woke, moonws.next_timeout())
    ]]
    assert.equal("nil\n0\ntrue\ntrue\tnil\n", out, err)
  end)
end)

describe("signals", function()
  it("onsignal runs handlers in the loop; removing the last restores the default action",
    function()
      local script = [[
        package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
        package.cpath = "./?.so;" .. package.cpath
        local moonws = require "moonws"
        local pid = io.open("/proc/self/stat"):read("n")
        local srv = assert(moonws.listen { port = 0 })
        local seen = {}
        local off_usr1 = moonws.onsignal("USR1", function(name) seen[#seen + 1] = name end)
        local off_term
        off_term = moonws.onsignal("SIGTERM", function(name)
          seen[#seen + 1] = name
          srv:close() -- a clean shutdown: run() ends once nothing is left
        end)
        os.execute("kill -USR1 " .. pid .. "; (sleep 0.2; kill -TERM " .. pid .. ") &")
        moonws.run()
        print(table.concat(seen, ","))
        io.stdout:flush()
        off_usr1()
        off_term()
        os.execute("kill -TERM " .. pid) -- the default action again: the process dies
        moonws.sleep(2)
        print("still alive")
      ]]
      local p = process.start({ "lua5.4", "-e", script }, 20)
      assert.is_true(p:wait_exit(15))
      local out, status = p:stdout(), p:exit_status()
      p:cleanup()
      assert.equal("USR1,TERM\n", out)
      assert.equal(128 + 15, status)
    end)
end)

describe("the poll() fallback", function()
  it("runs a full exchange when epoll is not used", function()
    local out, err = run_lua([[
      local moonws = require "moonws"
      assert(require("moonws.loop").backend() == "poll")
      local srv = assert(moonws.listen { port = 0 })
      srv.onconnection = function(s) s.onmessage = function(e) s:send(e.data) end end
      local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
      ws:send("over poll")
      print(ws:receive(5))
      ws:close()
      srv:close()
    ]], { "MOONWS_POLL=poll" })
    assert.equal("over poll\ttext\n", out, err)
  end)
end)

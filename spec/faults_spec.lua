-- Faults a server meets in production: running out of file descriptors
-- must neither spin the CPU nor stop the server for good.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"

-- A moonws echo server in a child lua5.4 with at most `limit` descriptors.
local function limited_server(limit)
  local script = [[
    package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
    package.cpath = "./?.so;" .. package.cpath
    local moonws = require "moonws"
    moonws.onerror = function(e) io.stderr:write(e.message, "\n") end
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(ws) ws.onmessage = function(e) ws:send(e.data) end end
    print("PORT " .. srv.port)
    io.stdout:flush()
    moonws.run()
  ]]
  return process.start({ "sh", "-c", 'ulimit -n "$1" && exec lua5.4 -e "$2"', "sh",
    tostring(limit), script }, 60)
end

-- CPU seconds (user + system) a process has used so far.
local function cpu_seconds(pid)
  local f = assert(io.open("/proc/" .. pid .. "/stat"))
  local stat = f:read("a")
  f:close()
  local fields = {}
  for field in stat:match("%) (.*)"):gmatch("%S+") do fields[#fields + 1] = field end
  -- utime and stime are fields 14 and 15 of stat, 12 and 13 after "(comm) ".
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

describe("out of file descriptors (EMFILE on accept)", function()
  it("the server backs off instead of spinning, and serves everyone once descriptors free up",
    function()
      local server = limited_server(16)
      finally(function() server:cleanup() end)
      local port = server:port(helpers.idle)
      local clients, opened, echoed = {}, 0, 0
      for i = 1, 30 do
        local ws = moonws.new("ws://127.0.0.1:" .. port, { timeout = 20 })
        ws.onopen = function() opened = opened + 1; ws:send("hi " .. i) end
        ws.onmessage = function() echoed = echoed + 1; ws:close(1000) end
        clients[i] = ws
      end
      -- The server can only hold a few of them at once.
      local cpu0 = cpu_seconds(server.pid)
      helpers.idle(1.5)
      local cpu_while_full = cpu_seconds(server.pid) - cpu0
      -- Every client is served in the end: closing frees descriptors.
      helpers.run_until(function() return echoed == 30 end, 20, "all 30 echoes")
      assert.equal(30, opened)
      assert.is_true(cpu_while_full < 0.5,
        ("the server used %.2fs of CPU while out of descriptors"):format(cpu_while_full))
      assert.matches("accept failed: .*retrying", server:stderr())
      for _, ws in ipairs(clients) do ws:terminate() end
    end)
end)

---------------------------------------------------------------- bad peers

local rawpeer = require "spec.support.rawpeer"
local core = require "moonws.core"

-- A server whose sockets log their events, and a healthy client echoing on
-- it meanwhile; returns the server, its logs and a function that runs one
-- echo round trip on the healthy connection and returns its duration.
local function server_with_witness(opts)
  opts = opts or {}
  opts.host, opts.port = "127.0.0.1", 0
  local srv = assert(moonws.listen(opts))
  local logs = {}
  srv.onconnection = function(ws)
    local log = {}
    logs[#logs + 1] = log
    rawpeer.record(ws, log)
    ws.onmessage = function(e) log[#log + 1] = { kind = "message" }; ws:send(e.data) end
  end
  local witness = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
  local function echo()
    local t0 = core.now()
    assert(witness:send("still fine?"))
    assert.equal("still fine?", witness:receive(5))
    return core.now() - t0
  end
  return srv, logs, echo, witness
end

local FRAME_HEADER = { send_frame = { opcode = 2, payload_size = 10, len_override = 1000 } }

describe("peers that misbehave", function()
  it("a client that resets TCP mid-frame: onerror then 1006, nothing delivered", function()
    local srv, logs, echo, witness = server_with_witness()
    local p = rawpeer.client(srv.port, { { handshake = {} }, FRAME_HEADER, { reset = true } })
    rawpeer.finish(p, 10, helpers.idle)
    p:cleanup()
    helpers.run_until(function() return logs[2] and rawpeer.count_closes(logs[2]) == 1 end, 5)
    local log = logs[2]
    assert.same({ "error", "close" }, rawpeer.kinds(log))
    assert.equal("io", log[1].error)
    assert.same({ 1006, false }, { log[2].code, log[2].wasClean })
    assert.is_true(echo() < 1)
    witness:close()
    srv:close()
  end)

  it("a client that half-closes without a close frame: onerror then 1006", function()
    local srv, logs, echo, witness = server_with_witness()
    local p = rawpeer.client(srv.port, {
      { handshake = {} },
      { shutdown_write = true },
      { read_frames = { ["until"] = "eof", timeout = 5 } },
    })
    rawpeer.finish(p, 10, helpers.idle)
    p:cleanup()
    helpers.run_until(function() return logs[2] and rawpeer.count_closes(logs[2]) == 1 end, 5)
    assert.same({ "error", "close" }, rawpeer.kinds(logs[2]))
    assert.same({ 1006, false }, { logs[2][2].code, logs[2][2].wasClean })
    assert.is_true(echo() < 1)
    witness:close()
    srv:close()
  end)

  it("a handshake sent slowly, byte by byte, is dropped after `timeout`; others unaffected",
    function()
      local srv, logs, echo, witness = server_with_witness { timeout = 1 }
      local request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        .. "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
      local steps = {}
      for i = 1, 30 do -- 3 s of trickle: the head never completes within 1 s
        steps[#steps + 1] = { send_raw_hex = rawpeer.hex(request:sub(i, i)) }
        steps[#steps + 1] = { sleep = 0.1 }
      end
      steps[#steps + 1] = { read_frames = { ["until"] = "eof", timeout = 15 } }
      local p = rawpeer.client(srv.port, steps)
      local t0 = core.now()
      -- While it trickles in, the healthy connection keeps echoing promptly.
      local slowest = 0
      while core.now() - t0 < 0.8 do
        slowest = math.max(slowest, echo())
        helpers.idle(0.05)
      end
      local ok, events = pcall(rawpeer.finish, p, 20, helpers.idle)
      p:cleanup()
      assert(ok, events)
      assert.is_true(slowest < 0.5, "an echo took " .. slowest .. "s")
      assert.equal(1, #logs) -- only the witness was ever handed over
      local eof_or_reset = rawpeer.select(events, "eof")[1] or rawpeer.select(events, "reset")[1]
      assert.is_table(eof_or_reset, "the server ended the slow connection")
      witness:close()
      srv:close()
    end)

  it("connections that open TCP and never speak are dropped after `timeout`", function()
    local srv, logs, echo, witness = server_with_witness { timeout = 0.5 }
    local silent = {}
    for i = 1, 20 do
      silent[i] = rawpeer.client(srv.port, { { read_frames = { ["until"] = "eof", timeout = 10 } } })
    end
    local slowest = 0
    for _ = 1, 5 do slowest = math.max(slowest, echo()) end
    for i = 1, 20 do
      local events = rawpeer.finish(silent[i], 15, helpers.idle)
      silent[i]:cleanup()
      assert.equal(1, #rawpeer.select(events, "eof"), "silent client " .. i .. " was dropped")
    end
    assert.is_true(slowest < 0.5, "an echo took " .. slowest .. "s")
    assert.equal(1, #logs)
    witness:close()
    srv:close()
  end)
end)

---------------------------------------------------------------- memory

describe("out of memory", function()
  it("a message the server cannot allocate closes that connection with 1011; others go on",
    function()
      local shim = os.tmpname() .. ".so"
      assert(os.execute(("cc -shared -fPIC -O2 -o %q spec/support/failmalloc.c"):format(shim)))
      local script = [[
        package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
        package.cpath = "./?.so;" .. package.cpath
        local moonws = require "moonws"
        local srv = assert(moonws.listen { port = 0 })
        srv.onconnection = function(ws)
          ws.onmessage = function(e) ws:send(e.data, e.binary and "binary" or "text") end
          ws.onerror = function(e) io.stderr:write("server error: ", e.error, "\n") end
        end
        print("PORT " .. srv.port)
        io.stdout:flush()
        moonws.run()
      ]]
      -- Buffers over 4 MiB fail; the scratch and small ones do not.
      -- Under ASan (make test-asan) its allocator takes every malloc, so
      -- ask it for the same failure instead of preloading the shim.
      local env
      local preload = os.getenv("LD_PRELOAD") or ""
      if preload:find("libasan", 1, true) then
        env = { "env", "ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:"
          .. "max_allocation_size_mb=4" }
      else
        env = { "env", "LD_PRELOAD=" .. shim, "MOONWS_FAIL_ALLOC_ABOVE=" .. 4 * 1024 * 1024 }
      end
      for _, a in ipairs { "lua5.4", "-e", script } do env[#env + 1] = a end
      local server = process.start(env, 60)
      finally(function() -- busted keeps one finally per test
        server:cleanup()
        os.remove(shim)
      end)
      local port = server:port(helpers.idle)
      local big = assert(moonws.connect("ws://127.0.0.1:" .. port, { compression = false }))
      local closed
      big.onclose = function(e) closed = e.code end
      -- The server may fail the message (and close) before this send has
      -- written it all: then send reports the close instead of true.
      local sent, why = big:send(string.rep("m", 8 * 1024 * 1024), "binary")
      assert(sent or why == "closed before the message was sent", why)
      helpers.run_until(function() return closed end, 10, "the big connection to close")
      assert.equal(1011, closed)
      -- The server is alive and serving.
      local ws = assert(moonws.connect("ws://127.0.0.1:" .. port))
      assert(ws:send("after the failure"))
      assert.equal("after the failure", ws:receive(5))
      ws:close()
      assert.is_true(server:alive())
      assert.matches("server error: nomem", server:stderr())
    end)
end)

---------------------------------------------------------------- runtime failures

-- A child lua5.4 running script with extra environment (a list of
-- "NAME=value"), under ASan's runtime too when this spec runs under it.
local function child(script, env, limit)
  local argv = { "env" }
  for _, e in ipairs(env or {}) do argv[#argv + 1] = e end
  for _, a in ipairs { "lua5.4", "-e", [[
    package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
    package.cpath = "./?.so;" .. package.cpath
    io.stdout:setvbuf("line")
  ]] .. script } do argv[#argv + 1] = a end
  return process.start(argv, limit or 60)
end

-- A shim from spec/support, built for this test; removed by cleanup.
local function build_shim(name)
  local so = os.tmpname() .. ".so"
  assert(os.execute(("cc -shared -fPIC -O2 -o %q spec/support/%s.c -ldl"):format(so, name)))
  return so
end

-- LD_PRELOAD for a child: the shim after whatever this process preloads
-- (ASan's runtime must stay first).
local function preload(so)
  local current = os.getenv("LD_PRELOAD")
  return "LD_PRELOAD=" .. (current and current .. " " or "") .. so
end

describe("runtime failures fail one object, never the loop", function()
  it("the poller refuses an accepted socket (epoll_ctl ENOSPC): that client fails, "
    .. "the server goes on", function()
    local shim = build_shim("failepoll")
    -- epoll_ctl ADD #1 is the listener; #2 the first accepted socket.
    local server = child([[
      local moonws = require "moonws"
      print("BACKEND " .. require("moonws.loop").backend())
      local srv = assert(moonws.listen { port = 0 })
      srv.onconnection = function(ws) ws.onmessage = function(e) ws:send(e.data) end end
      print("PORT " .. srv.port)
      moonws.run()
    ]], { preload(shim), "MOONWS_FAIL_EPOLL_ADD=2" })
    finally(function()
      server:cleanup()
      os.remove(shim)
    end)
    local port = server:port(helpers.idle)
    local url = "ws://127.0.0.1:" .. port
    if server:stdout():find("BACKEND epoll", 1, true) then
      local ws, message, name = moonws.connect(url, { timeout = 5 })
      assert.is_nil(ws)
      -- The server drops it: a reset, or an end during the handshake.
      assert.is_true(name == "io" or name == "handshake", message)
      helpers.run_until(function() return server:stderr():find("cannot watch", 1, true) end,
        5, "the report")
      assert.matches("cannot watch the socket: .*No space left on device", server:stderr())
    end
    local ws = assert(moonws.connect(url, { timeout = 5 }))
    assert(ws:send("still serving"))
    assert.equal("still serving", ws:receive(5))
    ws:close()
    assert.is_true(server:alive())
  end)

  it("no descriptor left for the resolver: connect and pubsub fail, nothing raises", function()
    local script = [[
      local moonws = require "moonws"
      -- Loaded before the descriptors run out (loading opens files).
      local has_redis = pcall(require, "moonws.redis") and pcall(require, "moonws.pubsub")
      local hold = {}
      while true do -- use up every descriptor
        local f = io.open("/dev/null")
        if not f then break end
        hold[#hold + 1] = f
      end
      local ok, ws, message, name = pcall(moonws.connect, "ws://localhost:9/", { timeout = 5 })
      print("CONNECT", ok, ws, name, message)
      local ws2 = moonws.new("ws://localhost:9/", { timeout = 5 })
      ws2.onerror = function(e) print("ONERROR", e.error, e.message) end
      ws2.onclose = function(e) print("ONCLOSE", e.code) end
      moonws.run()
      if has_redis then
        local ps = moonws.pubsub("redis://localhost:9")
        ps.ondisconnect = function(e) print("PUBSUB", e.message); ps:close() end
        moonws.run()
      else
        print("PUBSUB no moonws.redis")
      end
      print("DONE")
    ]]
    local p = child(script)
    finally(function() p:cleanup() end)
    assert.is_true(p:wait_exit(30), p:stderr())
    local out = p:stdout()
    assert.equal("", p:stderr())
    assert.matches("CONNECT\ttrue\tnil\tio\tcannot resolve host 'localhost': resolver: ", out)
    assert.matches("ONERROR\tio\tcannot resolve host 'localhost': resolver: ", out)
    assert.matches("ONCLOSE\t1006", out)
    assert.matches("PUBSUB\tcannot resolve redis host 'localhost': resolver: ", out)
    assert.matches("DONE", out)
  end)
end)

describe("out of memory in the handshake", function()
  -- Allocations over 4 MiB fail (as the memory test above); the handshake's
  -- two extra headers (2 MiB each) make its output buffer grow past that.
  -- Each header alone stays under the limit, so Lua can still build it.
  local function env_for(shim)
    local current = os.getenv("LD_PRELOAD") or ""
    if current:find("libasan", 1, true) then
      return { "ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=4" }
    end
    return { "LD_PRELOAD=" .. shim, "MOONWS_FAIL_ALLOC_ABOVE=" .. 4 * 1024 * 1024 }
  end

  it("a server that cannot build its 101 answers 503 instead of opening a silent socket",
    function()
    local shim = build_shim("failmalloc")
    local server = child([[
      local moonws = require "moonws"
      moonws.onerror = function(e) io.stderr:write(e.message, "\n") end
      local srv = assert(moonws.listen { port = 0, max_handshake = 1024,
        handshake = function(req)
          return true, { ["X-Big"] = string.rep("a", 2 * 1024 * 1024),
            ["X-Bigger"] = string.rep("b", 2 * 1024 * 1024) }
        end })
      srv.onconnection = function() print("OPENED") end
      print("PORT " .. srv.port)
      moonws.run()
    ]], env_for(shim))
    finally(function()
      server:cleanup()
      os.remove(shim)
    end)
    local port = server:port(helpers.idle)
    local ws, message, name = moonws.connect("ws://127.0.0.1:" .. port, { timeout = 5 })
    assert.is_nil(ws)
    assert.equal("handshake", name)
    assert.matches("503", message)
    assert.is_nil(server:stdout():find("OPENED", 1, true))
    assert.matches("refused: out of memory", server:stderr())
  end)

  it("a client that cannot build its request fails at once with nomem", function()
    local shim = build_shim("failmalloc")
    local p = child([[
      local moonws = require "moonws"
      local core = require "moonws.core"
      local srv = assert(moonws.listen { port = 0 })
      local t0 = core.now()
      local ws, message, name = moonws.connect("ws://127.0.0.1:" .. srv.port, { timeout = 10,
        headers = { ["X-Big"] = string.rep("a", 2 * 1024 * 1024),
                    ["X-Bigger"] = string.rep("b", 2 * 1024 * 1024) } })
      print("RESULT", ws, name, message, core.now() - t0 < 5)
    ]], env_for(shim))
    finally(function()
      p:cleanup()
      os.remove(shim)
    end)
    assert.is_true(p:wait_exit(30), p:stderr())
    assert.matches("RESULT\tnil\tnomem\thandshake: .*\ttrue", p:stdout())
  end)
end)

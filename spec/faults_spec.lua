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
      -- Buffers of 4 MiB or more fail; the scratch and small ones do not.
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

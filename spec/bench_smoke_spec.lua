-- spec/bench_smoke_spec.lua -- keeps the benchmark (bench/, `make bench`)
-- from rotting: builds its C tools, runs every load-generator workload for
-- a fraction of a second against the moonws servers of bench/servers/ and
-- the C TCP echo, and checks what each run reports: messages went round,
-- every echo matched what was sent, nothing failed.  No timing is
-- asserted.  The load generator's own checks are tested against servers
-- that answer wrongly, so a broken checker cannot pass unnoticed.

local helpers = require "spec.support.helpers"
local process = require "spec.support.process"
local certs = require "spec.support.certs"
local parse = dofile("bench/flatjson.lua")

local BIN = "build/bench/"
local SECS = "0.3"

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function capture(cmd)
  local p = io.popen(cmd)
  local s = p:read("a") or ""
  p:close()
  return (s:gsub("%s+$", ""))
end

-- Run the load generator; returns its JSON result as a table (nil when it
-- printed none), its exit status and its stderr.
local function loadgen(args)
  local err = os.tmpname()
  local words = { "timeout -k 2 60", BIN .. "loadgen" }
  for _, a in ipairs(args) do words[#words + 1] = sh_quote(a) end
  local out = capture(table.concat(words, " ") .. " 2>" .. sh_quote(err) .. "; echo \"EXIT $?\"")
  local stderr = process.read_file(err)
  os.remove(err)
  local status = tonumber(out:match("EXIT (%d+)$"))
  return parse(out:match("^[^\n]*")), status, stderr
end

local function free_port()
  local port = tonumber(capture(BIN .. "loadgen port"))
  assert(port, "loadgen port printed no port")
  return port
end

-- Start argv (with {port}, {tls_port}, {cert}, {key} filled in) the way
-- bench/run does: the shell writes its PID, then execs the server, so
-- that PID is the server's (for CPU and RSS).  Waits until it answers.
local function start(argv, scheme, tls)
  local ctx = { port = free_port() }
  if tls then
    local c = certs.get()
    ctx.tls_port, ctx.cert, ctx.key = free_port(), c.server_cert, c.server_key
  end
  local pidfile = os.tmpname()
  local full = { "sh", "-c", 'echo $$ >"$0"; exec "$@"', pidfile }
  for _, a in ipairs(argv) do
    full[#full + 1] = (a:gsub("{([%w_]+)}", function(k) return tostring(ctx[k] or "") end))
  end
  local p = process.start(full, 60)
  local server = { proc = p, pidfile = pidfile,
    url = ("%s://127.0.0.1:%d/"):format(scheme, ctx.port),
    tls_url = ctx.tls_port and ("wss://127.0.0.1:%d/"):format(ctx.tls_port) }
  local ok = os.execute(("timeout 20 %sloadgen wait %s -T 15 2>/dev/null"):format(BIN, server.url))
  server.pid = tonumber(process.read_file(pidfile))
  if not ok or not server.pid then
    local why = p:stderr()
    p:cleanup()
    os.remove(pidfile)
    error("server did not answer: " .. table.concat(argv, " ") .. "\n" .. why, 2)
  end
  return server
end

local function stop(server)
  if server.pid then os.execute("kill -TERM " .. server.pid .. " 2>/dev/null") end
  server.proc:cleanup()
  os.remove(server.pidfile)
end

-- The checks every successful echo run must pass.
local function check_echo(r, status, stderr, size, conns)
  assert.is_table(r, "no result line; stderr: " .. stderr)
  assert.is_nil(r.error)
  assert.is_true(r.ok)
  assert.equal(0, status)
  assert.equal("echo", r.workload)
  assert.equal(size, r.size)
  assert.equal(conns, r.conns)
  assert.is_true(r.msgs > 0)
  assert.is_true(r.all_msgs >= r.msgs)
  assert.is_true(r.msgs_per_s > 0)
  assert.is_true(r.p50_us > 0 and r.p99_us >= r.p50_us)
  assert.is_number(r.server_cpu_ns_per_msg)
end

local function workloads(argv, scheme, tls)
  local server
  before_each(function() server = start(argv, scheme, tls) end)
  after_each(function() stop(server) end)

  local function echo(extra, size, conns)
    local args = { "echo", server.url, "-t", SECS, "-w", "0.1", "-p", tostring(server.pid) }
    for _, a in ipairs(extra) do args[#args + 1] = a end
    local r, status, stderr = loadgen(args)
    check_echo(r, status, stderr, size, conns)
    return r
  end

  it("64-byte text messages, 1 connection, 100 in flight: all echoed intact", function()
    local r = echo({ "-c", "1", "-d", "100", "-s", "64" }, 64, 1)
    assert.equal(100, r.depth)
    assert.is_false(r.binary)
  end)

  it("20-byte text messages on 100 connections, 1 in flight each", function()
    local r = echo({ "-c", "100", "-d", "1", "-s", "20" }, 20, 100)
    assert.equal(1, r.depth)
  end)

  it("1 MiB binary messages, 1 connection: MB/s reported", function()
    local r = echo({ "-c", "1", "-d", "1", "-s", "1048576", "-b" }, 1048576, 1)
    assert.is_true(r.binary)
    assert.is_true(r.mb_per_s > 0)
  end)

  it("idle connections: all open, server RSS read before and after", function()
    local r, status, stderr = loadgen({ "idle", server.url, "-c", "200", "-t", SECS,
      "-p", tostring(server.pid) })
    assert.is_table(r, stderr)
    assert.is_nil(r.error)
    assert.is_true(r.ok)
    assert.equal(0, status)
    assert.equal(200, r.conns)
    assert.equal(200, r.open)
    assert.is_true(r.rss_base_kib > 0 and r.rss_kib > 0)
    assert.is_number(r.kib_per_conn)
  end)

  it("handshakes: connect, upgrade, close, without errors", function()
    local r, status, stderr = loadgen({ "handshake", server.url, "-c", "10", "-t", SECS,
      "-w", "0.1", "-p", tostring(server.pid) })
    assert.is_table(r, stderr)
    assert.is_nil(r.error)
    assert.is_true(r.ok)
    assert.equal(0, status)
    assert.is_true(r.handshakes > 0)
    assert.equal(0, r.errors)
  end)

  if tls then
    it("TLS handshakes without errors", function()
      local r, status, stderr = loadgen({ "handshake", server.tls_url, "-c", "4", "-t", SECS,
        "-w", "0.1", "-p", tostring(server.pid) })
      assert.is_table(r, stderr)
      assert.is_nil(r.error)
      assert.is_true(r.ok)
      assert.equal(0, status)
      assert.is_true(r.handshakes > 0)
      assert.equal(0, r.errors)
    end)
  end
end

describe("benchmark smoke run #host", function()
  setup(function()
    assert(os.execute("make --no-print-directory -s bench-tools >/dev/null"),
      "make bench-tools failed")
  end)
  teardown(function() certs.cleanup() end)

  describe("moonws, event handlers", function()
    workloads({ "lua5.4", "bench/servers/moonws_event.lua", "{port}", "{tls_port}", "{cert}",
      "{key}" }, "ws", true)
  end)

  describe("moonws, coroutines", function()
    workloads({ "lua5.4", "bench/servers/moonws_coro.lua", "{port}", "{tls_port}", "{cert}",
      "{key}" }, "ws", true)
  end)

  describe("C TCP echo (the ceiling row)", function()
    workloads({ BIN .. "tcp_echo", "{port}" }, "tcp", false)
  end)

  describe("the load generator's checks", function()
    local dir
    before_each(function() dir = os.tmpname() os.remove(dir) os.execute("mkdir " .. dir) end)
    after_each(function() os.execute("rm -rf " .. sh_quote(dir)) end)

    -- A moonws server whose onmessage answers with transform(data).
    local function liar(body)
      local path = dir .. "/liar.lua"
      local f = assert(io.open(path, "w"))
      f:write([[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath
local moonws = require "moonws"
local server = assert(moonws.listen { host = "127.0.0.1", port = tonumber(arg[1]) })
server.onconnection = function(ws)
  ws.onmessage = function(e) ]] .. body .. [[ end
end
moonws.run()
]])
      f:close()
      return start({ "lua5.4", path, "{port}" }, "ws")
    end

    local function expect_failure(server, pattern, extra)
      local args = { "echo", server.url, "-t", SECS, "-w", "0.1", "-T", "5" }
      for _, a in ipairs(extra or { "-c", "1", "-d", "4", "-s", "64" }) do args[#args + 1] = a end
      local r, status = loadgen(args)
      stop(server)
      assert.is_table(r)
      assert.is_false(r.ok)
      assert.not_equal(0, status)
      assert.matches(pattern, r.error)
    end

    it("an echo with other bytes fails the run", function()
      expect_failure(liar("ws:send(e.data:reverse())"), "echo differs")
    end)

    it("an echo of the wrong kind (binary for text) fails the run", function()
      expect_failure(liar('ws:send(e.data, "binary")'), "wrong opcode")
    end)

    it("a shorter echo fails the run", function()
      expect_failure(liar("ws:send(e.data:sub(1, -2))"), "shorter")
    end)

    it("a server that answers twice fails the run", function()
      expect_failure(liar("ws:send(e.data) ws:send(e.data)"), "unexpected message",
        { "-c", "1", "-d", "1", "-s", "64" })
    end)

    it("a peer that is not a WebSocket server fails the upgrade", function()
      local server = start({ BIN .. "tcp_echo", "{port}" }, "tcp")
      server.url = server.url:gsub("^tcp", "ws")
      expect_failure(server, "upgrade refused")
    end)
  end)

  describe("hot-path tools", function()
    it("micro-benchmarks report every case", function()
      local lines = {}
      for line in capture(BIN .. "micro 0.01"):gmatch("[^\n]+") do lines[#lines + 1] = parse(line) end
      assert.equal(9, #lines)
      local names = {}
      for _, m in ipairs(lines) do
        assert.is_true(m.gb_per_s > 0)
        names[m.micro] = true
      end
      for _, n in ipairs { "memcpy", "xor64", "ws_mask_inplace", "ws_mask_copy", "ws_utf8_ascii",
          "ws_utf8_mixed" } do
        assert.is_true(names[n], n)
      end
    end)

    it("the Lua profile of a coroutine-style server charges the per-connection coroutine", function()
      local file = os.tmpname()
      local server = start({ "env", "BENCH_LUAPROF=" .. file, "lua5.4",
        "bench/servers/moonws_coro.lua", "{port}" }, "ws")
      local r, status, stderr = loadgen({ "echo", server.url, "-c", "1", "-d", "10", "-s", "64",
        "-t", SECS, "-w", "0.1", "-p", tostring(server.pid) })
      os.execute("kill -USR1 " .. server.pid)
      local text = ""
      for _ = 1, 100 do
        text = process.read_file(file)
        if text:match("\n$") then break end
        os.execute("sleep 0.05")
      end
      stop(server)
      os.remove(file)
      check_echo(r, status, stderr, 64, 1)
      assert.matches("^period\t1000\n", text)
      -- Samples land in the echo loop of bench/servers/moonws_coro.lua,
      -- which runs only inside the connection's coroutine.
      assert.matches("\n%d+\tbench/servers/moonws_coro%.lua:%d+\tlocal function echo%(ws%)\n", text)
    end)

    -- Lua's allocations per message, as the malloc-counting shim sees them,
    -- with moonws's block cache on or off (BENCH_BLOCK_CACHE).
    local function lua_mallocs_per_msg(cache)
      local file = os.tmpname()
      local server = start({ "env", "LD_PRELOAD=" .. BIN .. "malloc_count.so",
        "MALLOC_COUNT_FILE=" .. file, "BENCH_BLOCK_CACHE=" .. cache, "lua5.4",
        "bench/servers/moonws_event.lua", "{port}" }, "ws")
      local r, status, stderr = loadgen({ "echo", server.url, "-c", "1", "-d", "10", "-s", "64",
        "-t", SECS, "-w", "0.1", "-m", file, "-p", tostring(server.pid) })
      stop(server)
      os.remove(file)
      check_echo(r, status, stderr, 64, 1)
      local lua = tonumber((r.allocs_per_msg or ""):match("lua5%.4=([%d.]+)"))
      assert.is_number(lua, "allocs_per_msg: " .. tostring(r.allocs_per_msg))
      return lua
    end

    it("the malloc-counting shim counts a moonws server's allocations per message", function()
      -- Without the block cache, the Lua VM mallocs at least the string of
      -- each received message.
      assert.is_true(lua_mallocs_per_msg("off") >= 1)
    end)

    it("with the block cache on, a message's Lua objects mostly come from the cache, not malloc", function()
      local lua = lua_mallocs_per_msg("on")
      assert.is_true(lua < 0.5, lua .. " mallocs per message from lua5.4")
    end)

    it("bench/hostile.py measures a good client beside the attacks and checks its bound", function()
      local p = process.start({ "env", "HOSTILE_SERVERS=moonws", "/usr/bin/python3",
        "bench/hostile.py", "1", "none,bombs,ping_flood" }, 120)
      assert.is_true(p:wait_exit(100), p:stderr())
      local out = p:stdout()
      assert.equal(0, p:exit_status(), out .. p:stderr())
      for _, title in ipairs { "no attack", "deflate bombs", "125-byte pings" } do
        local row
        for line in out:gmatch("[^\n]+") do
          if line:find(title, 1, true) then row = line end
        end
        assert.truthy(row, title .. " row in:\n" .. out)
        -- echoes lost p50 p99 max: the good client got echoes, none lost
        local echoes, lost = row:match("| moonws, event handlers | (%d+) | (%d+) |")
        assert.is_true(tonumber(echoes) > 5 and tonumber(lost) == 0, row)
      end
    end)
  end)

  describe("fan-out (bench/fanout.lua, bench/fanout.c)", function()
    local fanout = dofile("bench/fanout.lua")
    local dir
    before_each(function() dir = os.tmpname() os.remove(dir) os.execute("mkdir " .. dir) end)
    after_each(function() os.execute("rm -rf " .. sh_quote(dir)) end)

    local SERVER = { key = "moonws", argv = { "lua5.4", "bench/servers/moonws_fanout.lua" } }
    local PYTHON = { key = "python", argv = { "/usr/bin/python3", "bench/servers/python_fanout.py" } }

    for _, server in ipairs { SERVER, PYTHON } do
      for _, case in ipairs { { 64, false }, { 16384, false }, { 64, true }, { 16384, true } } do
        it(("%s, 50 subscribers, %d B, compression %s: every byte checked"):format(server.key,
          case[1], case[2] and "on" or "off"), function()
          local results = fanout.run_row(dir, server, 50, case[1], case[2], { "max", "50" },
            { "0", "0" }, 0.3)
          for rate, r in pairs(results) do
            assert.is_true(r.ok, rate .. ": " .. tostring(r.error))
            assert.equal(50, r.subs)
            assert.is_true(r.delivered_per_s > 0)
            assert.is_number(r.server_ns_per_delivery)
          end
        end)
      end
    end

    it("the client's checks fail: compression asked and refused", function()
      local results = fanout.run_row(dir, SERVER, 5, 64, false, { "max" }, { "0", "0" }, 0.3)
      assert.is_true(results.max.ok)
      local port = tonumber(capture(BIN .. "loadgen port"))
      local p = process.start({ "lua5.4", "bench/servers/moonws_fanout.lua", tostring(port) }, 30)
      finally(function() p:cleanup() end)
      p:wait_for("^listening$", 10)
      local r = parse(capture(("timeout 30 %sfanout -u ws://127.0.0.1:%d -n 5 -s 64 -z -t 0.3"):format(
        BIN, port)))
      assert.is_false(r.ok)
      assert.equal("compression not as asked", r.error)
    end)
  end)
end)

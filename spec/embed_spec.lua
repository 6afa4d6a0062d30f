-- Embedding moonws (docs/DESIGN.md 1.7, issue 6): a C game host that embeds
-- Lua 5.4 and steps moonws once a frame while a peer floods it, a foreign
-- event loop (libuv through luv) driving moonws through moonws.fd() and
-- moonws.next_timeout(), and a real game engine (LÖVE 11, LuaJIT) under
-- Xvfb.  Every program is an example from examples/; the specs run them as
-- they are documented and check what they print.
require "spec.support.helpers" -- package paths for the checkout
local process = require "spec.support.process"

local function read_pipe(cmd)
  local pipe = assert(io.popen(cmd))
  local out = pipe:read("a")
  pipe:close()
  return out
end

local ROOT = read_pipe("pwd"):gsub("\n$", "")

-- Build a make target (the host; the LuaJIT module when missing).
local function make(target)
  local out = read_pipe("make --no-print-directory " .. target .. " 2>&1; echo \"exit $?\"")
  assert(out:match("exit 0\n$"), "make " .. target .. " failed:\n" .. out)
end

-- Stop p and whatever it started (xvfb-run's Xvfb, LÖVE), by PID.
local function cleanup(p)
  if not p then return end
  local tree = process.descendants(p.pid)
  p:cleanup()
  for _, pid in ipairs(tree) do os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
end

-- The lines of s, as a list.
local function lines(s)
  local list = {}
  for line in s:gmatch("[^\n]+") do list[#list + 1] = line end
  return list
end

-- Start the embedding peer (flood and echo server); returns it and its URL.
local function start_server()
  local server = process.start({ "lua5.4", "examples/embed/flood_server.lua" }, 90)
  return server, "ws://127.0.0.1:" .. server:port() .. "/"
end

-- Wait for p to end by itself; its stdout, stderr and exit status.
local function finish(p, seconds, what)
  assert.is_true(p:wait_exit(seconds), what .. " did not finish:\n" .. p:stdout() .. p:stderr())
  return p:stdout(), p:stderr(), p:exit_status()
end

-- The server prints its line just after the closing handshake.
local function server_saw(server, pattern)
  return server:wait_for(pattern, 10)
end

describe("embedding #host", function()
  -- The flood the game asks for: 20000 small messages (32 bytes) and
  -- four binary ones of 1 MiB among them.
  local SMALL, LARGE, SIZE = 20000, 4, 1024 * 1024
  local TOTAL, BYTES = SMALL + LARGE, SMALL * 32 + LARGE * SIZE

  local function run_host(mode)
    make("build/embed/host")
    local server, url, host
    finally(function() cleanup(host); cleanup(server) end)
    server, url = start_server()
    host = process.start({ "build/embed/host", "-m", mode, "-n", "3600",
      "examples/embed/game.lua", url, SMALL, LARGE, SIZE }, 80)
    local out, err, status = finish(host, 70, "the host")
    assert.equal(0, status, out .. err)
    local result = {}
    for key, value in out:gmatch("([%w_]+) ([%d.]+)\n") do result[key] = tonumber(value) end
    io.stdout:write(("\n    host -m %s: %d frames, worst frame %.3f ms (%.3f ms own)%s, "
      .. "%s messages, at most %d a step\n"):format(mode, result.frames, result.worst_frame_ms,
      result.worst_frame_own_ms, result.worst_step_ms and (", worst step between frames "
        .. "%.3f ms (%.3f ms own)"):format(result.worst_step_ms, result.worst_step_own_ms) or "",
      out:match("messages (%d+)"), result.most_messages_in_a_step))
    -- Every message, in order (game.lua checks each one's sequence number
    -- and length), then a clean close whose code and reason the server saw.
    assert.truthy(out:find(("messages %d of %d, %d bytes\n"):format(TOTAL, TOTAL, BYTES), 1, true),
      out)
    assert.truthy(out:find("in_order true\n", 1, true), out)
    assert.truthy(out:find('closed 1000 "done" clean true\n', 1, true), out)
    assert.equal("1000 done", server_saw(server, "^server: closed (.*)$"))
    -- Bounded work: no frame took 50 ms, and no step (a frame's, or one
    -- between frames) dispatched more than max_step_events (256) messages,
    -- so the flood took many steps.
    -- "Own" time is wall time minus the time the host waited for a CPU
    -- (the machine is shared: other processes can take the CPU in the
    -- middle of a frame); it still counts work and any blocking.
    assert.is_true(result.worst_frame_own_ms < 50, "worst frame " .. result.worst_frame_own_ms
      .. " ms own, " .. result.worst_frame_ms .. " ms wall")
    -- Wall time too, with room for a shared machine's waits for a CPU (a
    -- busy neighbour once cost one frame 144 ms of wall time here).
    assert.is_true(result.worst_frame_ms < 250, "worst frame " .. result.worst_frame_ms
      .. " ms wall")
    assert.is_true(result.most_messages_in_a_step >= 1 and result.most_messages_in_a_step <= 256,
      "messages in one step: " .. tostring(result.most_messages_in_a_step))
    return result
  end

  it("a C host stepping once a frame at 60 Hz: a flood arrives whole, in order, no frame over 50 ms",
    function()
      local result = run_host("sleep")
      assert.is_true(result.frames >= TOTAL / 256, "frames: " .. result.frames)
    end)

  it("a C host polling moonws.fd() with next_timeout() between frames: the same, steps bounded too",
    function()
      local result = run_host("poll")
      assert.is_true(result.wakeups >= 1, "the host never woke up for moonws.fd()")
      assert.is_true(result.worst_step_own_ms < 50, "worst step " .. result.worst_step_own_ms
        .. " ms own, " .. result.worst_step_ms .. " ms wall")
    end)

  it("libuv (luv) drives moonws through uv.new_poll(moonws.fd()) and a timer: an echo exchange",
    function()
      local p
      finally(function() cleanup(p) end)
      p = process.start({ "lua5.4", "examples/luv_loop.lua" }, 30)
      local out, err, status = finish(p, 20, "examples/luv_loop.lua")
      assert.equal(0, status, out .. err)
      local got = lines(out)
      local steps = tonumber(table.remove(got):match(
        "^uv%.run returned; moonws stepped (%d+) times for I/O$"))
      assert.same({
        "client: open",
        "client: echo: tick 1",
        "client: echo: tick 2",
        "client: echo: tick 3",
        'server: closed 4000 "enough"',
        'client: closed 4000 "enough" clean true',
      }, got)
      -- Nothing but libuv ran the loop: its poll handle saw moonws's fd.
      assert.is_true(steps ~= nil and steps >= 1, out)
    end)

  it("LÖVE 11 under Xvfb: love.update steps moonws, echoes come back, close 4001 reaches the server",
    function()
      local luajit_module = ROOT .. "/build/luajit/moonws/core.so"
      if not io.open(luajit_module) then make("luajit") end
      local server, url, game
      finally(function() cleanup(game); cleanup(server) end)
      server, url = start_server()
      game = process.start({ "xvfb-run", "-a", "love", "examples/love", url, ROOT }, 60)
      local out, err, status = finish(game, 50, "the LÖVE game")
      assert.equal(0, status, out .. err)
      local got = lines(out)
      assert.truthy(table.remove(got, 1):match("^moonws loaded in LuaJIT 2%.1"), out)
      local frames = tonumber(table.remove(got, #got - 1):match("^frames (%d+) worst_step_ms [%d.]+$"))
      assert.same({
        "open " .. url,
        "echo 1 text 22 bytes ok",
        "echo 2 text 20 bytes ok",
        "echo 3 binary 4006 bytes ok",
        'closed 4001 "game over" clean true',
        "quit 0",
      }, got)
      assert.is_true(frames ~= nil and frames >= 2, out)
      assert.equal("4001 game over", server_saw(server, "^server: closed (.*)$"))
    end)
end)

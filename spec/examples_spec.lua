-- spec/examples_spec.lua -- every example in examples/ runs, as a user
-- would run it, and prints what it promises.
--
-- The examples are separate lua5.4 processes; servers listen on port 0 and
-- print their port; the specs read the examples' progress lines.

local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"

-- The PID of the program a process.lua process runs (under timeout and sh),
-- so that a signal reaches the program itself.
local function program_pid(p, script)
  local function read(path)
    local f = io.open(path)
    if not f then return "" end
    local s = f:read("a")
    f:close()
    return s
  end
  local function search(pid)
    local cmdline = read(("/proc/%s/cmdline"):format(pid))
    if cmdline:match("^lua") and cmdline:find(script, 1, true) then return tonumber(pid) end
    for child in read(("/proc/%s/task/%s/children"):format(pid, pid)):gmatch("%d+") do
      local found = search(child)
      if found then return found end
    end
  end
  return search(p.pid)
end

local function signal(p, script, name)
  local pid = assert(program_pid(p, script), "no process runs " .. script)
  assert(os.execute(("kill -%s %d"):format(name, pid)))
end

local function lines_of(text, pattern)
  local found = {}
  for line in text:gmatch("[^\n]+") do
    if line:match(pattern) then found[#found + 1] = line end
  end
  return found
end

-- Wait until p has printed n lines matching pattern (bounded).
local function wait_lines(p, pattern, n, timeout)
  local deadline = os.time() + timeout
  while #lines_of(p:stdout(), pattern) < n do
    assert(os.time() <= deadline and p:alive(), ("%s: fewer than %d lines matching %q\n%s\n%s")
      :format(p.argv[2], n, pattern, p:stdout(), p:stderr()))
    os.execute("sleep 0.05")
  end
end

-- Start examples/echo_server.lua (on port, default 0); returns the
-- process and its port.
local function echo_server(port)
  local p = process.start({ "lua5.4", "examples/echo_server.lua", tostring(port or 0) }, 90)
  local got = tonumber(p:wait_for("^server: listening on ws://127%.0%.0%.1:(%d+)$", 10))
  return p, got
end

-- Run a program to its end; returns stdout, exit status (fails on a hang).
local function run(argv, limit)
  local p = process.start(argv, limit or 60)
  local ok = p:wait_exit(limit or 60)
  local out, err, status = p:stdout(), p:stderr(), p:exit_status()
  p:cleanup()
  assert(ok, ("%s did not finish\nstdout:\n%s\nstderr:\n%s"):format(argv[2], out, err))
  return out, status, err
end

describe("examples", function()
  it("echo_server.lua and client.lua: echoes, then the server closes with 4000 'bye'", function()
    local server, port = echo_server()
    finally(function() server:cleanup() end)
    local out, status, err = run { "lua5.4", "examples/client.lua",
      ("ws://127.0.0.1:%d/chat"):format(port) }
    assert.equal(0, status, err)
    assert.equal(table.concat({
      ("client: connected to ws://127.0.0.1:%d/chat"):format(port),
      'client: sent "Hello Server!", got back "Hello Server!"',
      'client: sent "how are you?", got back "how are you?"',
      'client: sent "¡olé! ✓", got back "¡olé! ✓"',
      "client: sent 4 binary bytes, got back 4 binary bytes",
      "client: receive ended: closed (4000 bye) (closed)",
      'client: closed with 4000 "bye"',
      "" }, "\n"), out)
    -- onclose has the code of the close frame received: the client's answer
    -- (moonws answers with the code and no reason).
    server:wait_for('^server: closed with 4000 "bye" %(clean: (true)%)$', 10)
    assert.truthy(server:stdout():find("server: got 4 binary bytes: 00 01 02 ff", 1, true))
  end)

  it("run_demo (make example) exits 0", function()
    local out, status, err = run({ "sh", "examples/run_demo" }, 60)
    assert.equal(0, status, out .. err)
    assert.truthy(out:find('client: closed with 4000 "bye"', 1, true), out)
  end)

  describe("chat/server.lua", function()
    local chat, port
    before_each(function()
      chat = process.start({ "lua5.4", "examples/chat/server.lua", "0" }, 90)
      port = tonumber(chat:wait_for("^chat: listening on http://127%.0%.0%.1:(%d+)/", 10))
    end)
    after_each(function() chat:cleanup() end)

    -- A plain HTTP GET with Python's standard library: status, content type, body.
    local function get(path)
      local script = [[
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=10)
except urllib.error.HTTPError as e:
    r = e
sys.stdout.write("%d %s\n" % (r.status, r.headers.get("Content-Type")))
sys.stdout.write(r.read().decode())
]]
      local out, status, err = run { "/usr/bin/python3", "-c", script,
        ("http://127.0.0.1:%d%s"):format(port, path) }
      assert.equal(0, status, err)
      return out:match("^([^\n]*)\n(.*)$")
    end

    it("answers a plain GET / with its page and other paths with 404", function()
      local head, body = get("/")
      assert.equal("200 text/html; charset=utf-8", head)
      local f = assert(io.open("examples/chat/index.html", "rb"))
      assert.equal(f:read("a"), body)
      f:close()
      head, body = get("/secret")
      assert.equal("404 text/plain", head)
      assert.equal("not found\n", body)
    end)

    it("relays every message to every client; SIGTERM closes them with 1001 and exits 0", function()
      local url = ("ws://127.0.0.1:%d/chat"):format(port)
      local got, closes = { {}, {} }, {}
      local clients = {}
      for i = 1, 2 do
        local ws = moonws.new(url)
        ws.onmessage = function(e) table.insert(got[i], e.data) end
        ws.onclose = function(e) closes[i] = { e.code, e.reason, e.wasClean } end
        clients[i] = ws
        helpers.run_until(function() return #got[i] >= 2 end, 10, "the greeting")
      end
      finally(function() for _, ws in ipairs(clients) do ws:terminate() end end)
      assert.equal("permessage-deflate; server_no_context_takeover", clients[1].extensions)
      clients[1]:send("hello, room")
      helpers.run_until(function() return #got[2] == 3 and #got[1] == 4 end, 10, "the broadcast")
      assert.same({ "* you are guest1", "* guest1 joined", "* guest2 joined", "guest1: hello, room" },
        got[1])
      assert.same({ "* you are guest2", "* guest2 joined", "guest1: hello, room" }, got[2])
      chat:wait_for('^chat: guest1 says "hello, room"$', 10, helpers.idle)

      signal(chat, "examples/chat/server.lua", "TERM")
      helpers.run_until(function() return closes[1] and closes[2] end, 10, "the server's close")
      assert.same({ 1001, "server going away", true }, closes[1])
      assert.same({ 1001, "server going away", true }, closes[2])
      assert.is_true(chat:wait_exit(10, helpers.idle))
      assert.equal(0, chat:exit_status())
      assert.truthy(chat:stdout():find("chat: got SIGTERM, closing\n", 1, true))
      assert.truthy(chat:stdout():find("\nchat: stopped\n$"), chat:stdout())
    end)

    it("rooms are topics: a line stays in its room; /metrics counts it", function()
      local function join(path)
        local ws = assert(moonws.connect(("ws://127.0.0.1:%d%s"):format(port, path), { timeout = 5 }))
        local name = assert(ws:receive(5)):match("^%* you are (%S+)$")
        assert.equal("* " .. name .. " joined", ws:receive(5))
        return ws, name
      end
      local lobby, name = join("/chat")
      local other = join("/chat/other")
      finally(function() lobby:terminate(); other:terminate() end)
      assert(lobby:send("lobby only"))
      assert.equal(name .. ": lobby only", lobby:receive(5))
      assert.is_nil(other:receive(0.3))
      local head, body = get("/metrics")
      assert.equal("200 text/plain; version=0.0.4; charset=utf-8", head)
      local labels = ('{port="%d"}'):format(port)
      assert.truthy(body:find("\nmoonws_connections_open" .. labels .. " 2\n", 1, true), body)
      assert.truthy(body:find("\nmoonws_topics" .. labels .. " 2\n", 1, true), body)
      assert.truthy(body:find("\nmoonws_messages_in_total" .. labels .. " 1\n", 1, true), body)
    end)

    it("refuses WebSocket upgrades outside /chat", function()
      local ws, message, name = moonws.connect(("ws://127.0.0.1:%d/other"):format(port),
        { timeout = 5 })
      assert.is_nil(ws)
      assert.equal("handshake", name)
      assert.truthy(message:find("404", 1, true), message)
    end)
  end)

  it("bot.lua: reconnects with growing delays after its server dies, stops cleanly on SIGTERM", function()
    local server, port = echo_server()
    local bot = process.start({ "lua5.4", "examples/bot.lua", ("ws://127.0.0.1:%d/bot"):format(port),
      "--min-delay=0.1", "--max-delay=0.8", "--ping-interval=0.3", "--ping-timeout=3" }, 90)
    finally(function()
      bot:cleanup()
      server:cleanup()
    end)
    bot:wait_for("^bot: connected to .* after (0) failed attempts$", 10)
    bot:wait_for('^bot: received "hello from bot"$', 10)
    bot:wait_for("^bot: heartbeat: (pong)$", 10)   -- its keepalive pings are answered

    -- The server dies without a closing handshake: the bot sees 1006 and retries.
    signal(server, "examples/echo_server.lua", "KILL")
    assert.is_true(server:wait_exit(10))
    server:cleanup()
    bot:wait_for('^bot: closed: (1006) "" %(clean: false%)$', 10)
    bot:wait_for("^bot: connect failed %(refused%): .*; retry (4) in", 20)

    -- Back on the same port: the bot finds it again.
    server = echo_server(port)
    local attempts = tonumber(bot:wait_for("^bot: connected to .* after ([1-9]%d*) failed attempts$", 20))
    assert.truthy(attempts >= 4, bot:stdout())

    -- Retry n waits between half and all of min(0.8, 0.1 * 2^(n-1)): the delays never shrink.
    local previous = 0
    local retries = lines_of(bot:stdout(), "^bot: connect failed")
    assert.equal(attempts, #retries)
    for n, line in ipairs(retries) do
      local number, delay = line:match("; retry (%d+) in ([%d.]+)s$")
      assert.equal(n, tonumber(number))
      delay = tonumber(delay)
      local cap = math.min(0.8, 0.1 * 2 ^ (n - 1))
      assert.truthy(delay >= cap / 2 - 0.0005 and delay <= cap + 0.0005, line)
      assert.truthy(delay >= previous - 0.0005, line)
      previous = delay
    end
    assert.truthy(previous > tonumber(retries[1]:match("in ([%d.]+)s$")), bot:stdout())

    -- SIGTERM: a clean close, then exit status 0.
    signal(bot, "examples/bot.lua", "TERM")
    assert.is_true(bot:wait_exit(10))
    assert.equal(0, bot:exit_status(), bot:stderr())
    local out = bot:stdout()
    assert.truthy(out:find("\nbot: got SIGTERM, shutting down\n", 1, true), out)
    -- The bot's onclose has the code of the server's answering close frame.
    assert.truthy(out:find('\nbot: closed: 1000 "bot shutting down" %(clean: true%)\nbot: stopped\n$'), out)
    server:wait_for('^server: closed with 1000 "bot shutting down" %(clean: (true)%)$', 10)
    assert.equal("", bot:stderr())
  end)

  it("bot.lua: its heartbeat finds a silent server (SIGSTOP) and it reconnects once the server is back", function()
    local server, port = echo_server()
    local bot = process.start({ "lua5.4", "examples/bot.lua", ("ws://127.0.0.1:%d/bot"):format(port),
      "--ping-interval=0.2", "--ping-timeout=1" }, 90)
    local stopped = false
    finally(function()
      if stopped then signal(server, "examples/echo_server.lua", "CONT") end
      bot:cleanup()
      server:cleanup()
    end)
    bot:wait_for("^bot: heartbeat: (pong)$", 10)
    signal(server, "examples/echo_server.lua", "STOP")
    stopped = true
    bot:wait_for("^bot: connection lost %((timeout)%): no data from the peer within ping_timeout", 10)
    bot:wait_for('^bot: closed: (1006) "" %(clean: false%)$', 10)
    -- The bot's next connection waits in the stopped server's backlog.
    signal(server, "examples/echo_server.lua", "CONT")
    stopped = false
    wait_lines(bot, "^bot: received", 2, 20)
    assert.equal(2, #lines_of(bot:stdout(), "^bot: connected to .* after 0 failed attempts$"))
    signal(bot, "examples/bot.lua", "TERM")
    assert.is_true(bot:wait_exit(10))
    assert.equal(0, bot:exit_status(), bot:stderr())
  end)

  it("game_loop.lua: steps moonws once a frame at 60 Hz, every echo matches, exits after N frames", function()
    local server, port = echo_server()
    finally(function() server:cleanup() end)
    local out, status, err = run { "lua5.4", "examples/game_loop.lua",
      ("ws://127.0.0.1:%d/game"):format(port), "150" }
    assert.equal(0, status, out .. err)
    assert.truthy(out:find("^game: connected at frame %d+\n"), out)
    assert.equal(2, #lines_of(out, "^game: frame %d+: x=[%d.]+ sent=%d+ echoed=%d+"))
    assert.truthy(out:find("\ngame: frame 60: ", 1, true), out)
    assert.truthy(out:find("\ngame: frame 120: ", 1, true), out)
    assert.truthy(out:find("\ngame: 150 frames done, closing after the last echoes\n", 1, true), out)
    assert.truthy(out:find('\ngame: closed at frame %d+: 1000 "game over" %(clean: true%)\n'), out)
    local frames, fps, sent, echoed, unmatched = out:match(
      "\ngame: ran (%d+) frames in [%d.]+s %(([%d.]+) fps%); sent (%d+), echoed (%d+), unmatched (%d+)\n$")
    assert.truthy(frames, out)
    -- A position every 6th frame before frame 150: 24 sent, all echoed
    -- (the first frames may pass before the socket is open).
    assert.truthy(tonumber(frames) > 150 and tonumber(frames) <= 330, out)
    assert.truthy(tonumber(sent) >= 20 and tonumber(sent) <= 24, out)
    assert.equal(sent, echoed)
    assert.equal("0", unmatched)
    -- Frames are paced, never faster than 60 per second.
    assert.truthy(tonumber(fps) <= 61, out)
    server:wait_for('^server: closed with 1000 "game over" %(clean: (true)%)$', 10)
    assert.equal(tonumber(sent), #lines_of(server:stdout(), '^server: got text "pos %d+ [%d.]+"$'))
  end)
end)

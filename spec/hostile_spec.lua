-- Hostile peers: whatever a peer sends, a moonws server's memory stays
-- within its configured bounds and its work per loop round stays bounded,
-- so the other connections are served (docs/API.md "Hostile peers").
--
-- The server is the README's echo sample in a CHILD lua5.4 process, so its
-- peak memory (VmHWM) is its own.  Beside the echo it keeps, per
-- connection (each client of a test connects to a path of its own), the
-- most bytes it inflated and took off the wire in one loop round and the
-- most output it held after a round (ws:stats(), ws.bufferedAmount); a
-- "stats" message on any connection answers with them.  The attackers are spec/peers/raw_peer.py (its "stream" step) and
-- spec/peers/slowloris.py, which share no code with moonws.  A good client
-- in this process keeps echoing through every attack.
--
-- The bounds asserted are counts, not timings: bytes buffered, bytes per
-- round, peak RSS.  (make bench measures the good client's latency under
-- the same attacks, beside Node's ws.)  After each attack the server is
-- told to quit and must exit cleanly.
--
-- make test-valgrind runs this spec with the server under valgrind
-- (MOONWS_SPEC_VALGRIND=1): every volume and size limit is SCALE times
-- smaller, the same bounds are asserted, and valgrind's verdict is the
-- server's exit status.  Its peak RSS is valgrind's own there, so the RSS
-- ceiling is asserted in the plain and ASan runs only.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local certs = require "spec.support.certs"
local process = require "spec.support.process"
local rawpeer = require "spec.support.rawpeer"

local KiB, MiB = 1024, 1024 * 1024
local STEP_BYTES = 256 * KiB -- max_step_bytes, the default
local VALGRIND = os.getenv("MOONWS_SPEC_VALGRIND") == "1"
local SCALE = VALGRIND and 64 or 1

-- The server's peak RSS is under 64 MiB.
local function assert_rss(stats)
  if VALGRIND then return end
  assert.is_true(stats.hwm < 64 * 1024, ("peak RSS %d kB"):format(stats.hwm))
end

local SERVER = [[
  package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
  package.cpath = "./?.so;" .. package.cpath
  io.stdout:setvbuf("line")
  local moonws = require "moonws"
  local options, mode = %s, %q
  local function hwm()
    for line in io.lines("/proc/self/status") do
      local kb = line:match("^VmHWM:%%s*(%%d+) kB")
      if kb then return tonumber(kb) end
    end
  end
  local socks, last, worst = {}, {}, {}
  local errors, rounds = 0, 0
  local function note(id, key, value)
    local w = worst[id]
    if w[key] == nil or value > w[key] then w[key] = value end
  end
  local function report()
    local out = { "hwm=" .. hwm(), "rounds=" .. rounds, "errors=" .. errors }
    for path, w in pairs(worst) do
      for k, v in pairs(w) do out[#out + 1] = ("%%s.%%s=%%d"):format(k, path, v) end
      local ws = socks[path]
      if ws then out[#out + 1] = ("messages.%%s=%%d"):format(path, ws:stats().messages_in) end
    end
    return table.concat(out, " ")
  end
  local srv = assert(moonws.listen(options))
  srv.onconnection = function(ws, request)
    local id = request.path -- each client of a test has a path of its own
    socks[id], last[id], worst[id] = ws, ws:stats(), {}
    print("OPEN", id)
    ws.onmessage = function(e)
      if e.data == "stats" then return ws:send(report()) end
      if e.data == "quit" then os.exit(0, true) end
      if mode ~= "echo" then error("this handler fails on every message") end
      ws:send(e.data, e.binary and "binary" or "text")
    end
    if mode == "count_errors" then
      ws.onerror = function() errors = errors + 1 end
    elseif mode == "echo" then
      ws.onerror = function(e) print("ERROR", id, e.error, e.code) end
    end -- "throw": no onerror, so reports go to stderr, rate-limited
    ws.onclose = function(e)
      print("CLOSE", id, e.code)
      socks[id] = nil
    end
  end
  print("PORT " .. srv.port)
  local now = {}
  while true do
    moonws.step()
    rounds = rounds + 1
    for id, ws in pairs(socks) do
      local s, l = ws:stats(now), last[id]
      note(id, "inflated", s.inflated_in - l.inflated_in)
      note(id, "wire", s.wire_bytes_in - l.wire_bytes_in)
      note(id, "buffered", ws.bufferedAmount)
      l.inflated_in, l.wire_bytes_in = s.inflated_in, s.wire_bytes_in
    end
  end
]]

local track, cleanup_started = process.tracker()

-- Under ASan (make test-asan) freed memory waits in a quarantine that would
-- count as the server's: keep it small, so RSS means what it means here.
local function child_env(argv)
  local preload = os.getenv("LD_PRELOAD") or ""
  if not preload:find("libasan", 1, true) then return argv end
  local env = { "env", "ASAN_OPTIONS=detect_leaks=0:quarantine_size_mb=4:"
    .. "thread_local_quarantine_size_kb=64" }
  for _, a in ipairs(argv) do env[#env + 1] = a end
  return env
end

-- Start the echo server with options (a Lua table constructor) and mode.
local function start_server(options, mode)
  local script = SERVER:format(options or "{ port = 0 }", mode or "echo")
  local argv = { "lua5.4", "-e", script }
  if VALGRIND then
    argv = { "valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
      "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
      "lua5.4", "-e", script }
  end
  local p = track(process.start(child_env(argv), 600))
  return p, p:port(nil, VALGRIND and 60 or 10)
end

local function parse_stats(text)
  local t = {}
  for k, v in text:gmatch("(%S+)=(%d+)") do t[k] = tonumber(v) end
  return t
end

-- The server's stats, asked over a connection of our own; then it is told
-- to quit, and must exit with status 0 (valgrind's 99: errors or leaks).
local function final_stats(server, url, options)
  local ws = assert(moonws.connect(url .. "/control", options or { timeout = 30 }))
  assert(ws:send("stats"))
  local text = assert(ws:receive(60))
  assert(ws:send("quit"))
  assert.is_true(server:wait_exit(60), "the server did not quit")
  assert.equal(0, server:exit_status(), server:stderr())
  return parse_stats(text)
end

-- A good client: one echo after another, for as long as busy() is true.
-- Every echo must come back intact; returns how many did.
local function good_client(url, busy, options)
  local ws = assert(moonws.connect(url .. "/good", options or { timeout = 10 }))
  local n = 0
  repeat
    local msg = ("good client message %d"):format(n)
    assert(ws:send(msg))
    local got, kind = ws:receive(30)
    assert.equal(msg, got, kind)
    n = n + 1
  until not busy()
  assert(ws:close())
  return n
end

local function alive(p) return function() return p:alive() end end

local function attacker(port, steps, limit)
  return track(rawpeer.client(port, steps, limit or 120))
end

local function frames_of(events, opcode) return rawpeer.select(events, "frame", opcode) end
local function sent_of(events) return rawpeer.select(events, "sent")[1] end

-- The attacker's opening handshake, on its own path (its stats key).
local function handshake(path, deflate)
  return { handshake = { path = path, headers = deflate
    and { { "Sec-WebSocket-Extensions", "permessage-deflate" } } or nil } }
end

describe("hostile peers", function()
  after_each(cleanup_started)

  it("512 MiB of pings from a client that never reads: RSS stays under 64 MiB, others served",
    function()
    local server, port = start_server()
    local url = "ws://127.0.0.1:" .. port
    local bytes = 512 * MiB // SCALE
    local flood = attacker(port, {
      handshake "/flood",
      { stream = { frames = { { opcode = 9, payload_size = 125 } },
        times = math.ceil(bytes / (125 + 6)), timeout = 60 } }, -- masked 125-byte pings
    }, 600)
    assert.is_true(good_client(url, alive(flood)) > 0)
    local sent = sent_of(rawpeer.finish(flood, 5))
    assert.is_false(sent.stalled, "the server kept reading")
    assert.is_true(sent.bytes >= bytes)
    local stats = final_stats(server, url)
    -- Pongs are coalesced: at most a few wait for a peer that never reads.
    assert.is_true(stats["buffered./flood"] < 64 * KiB, "pongs held: " .. stats["buffered./flood"])
    assert_rss(stats)
  end)

  it("a pong flood is read and dropped; memory stays bounded", function()
    local server, port = start_server()
    local url = "ws://127.0.0.1:" .. port
    local flood = attacker(port, {
      handshake "/flood",
      { stream = { frames = { { opcode = 10, payload_size = 125 } },
        times = math.floor(128 * MiB // SCALE / 131) } },
    }, 600)
    assert.is_true(good_client(url, alive(flood)) > 0)
    assert.is_false(sent_of(rawpeer.finish(flood, 5)).stalled)
    local stats = final_stats(server, url)
    assert.equal(0, stats["buffered./flood"])
    assert_rss(stats)
  end)

  it("two deflate bombs: each round inflates at most max_step_bytes; 1009; others served",
    function()
    local max_payload = 64 * MiB // SCALE
    local server, port = start_server(("{ port = 0, compression = true, max_payload = %d }")
      :format(max_payload))
    local url = "ws://127.0.0.1:" .. port
    local function bomber(path)
      return attacker(port, {
        handshake(path, true),
        { send_deflated_zeros = { zeros = 1024 * MiB // SCALE, opcode = 1 } },
        { read_frames = { ["until"] = "close", timeout = 300 } },
      }, 600)
    end
    local a, b = bomber "/bomb1", bomber "/bomb2"
    local deflate = { compression = true, timeout = 30 }
    local echoes = good_client(url, function() return a:alive() or b:alive() end, deflate)
    for _, p in ipairs { a, b } do
      local closes = frames_of(rawpeer.finish(p, 5), 8)
      assert.equal(1, #closes)
      assert.equal(1009, closes[1].close_code)
    end
    assert.is_true(echoes > 0)
    for _, path in ipairs { "/bomb1", "/bomb2" } do
      server:wait_for("^(ERROR\t" .. path .. "\ttoo_big\t1009)", 10)
    end
    local stats = final_stats(server, url, deflate)
    for _, path in ipairs { "/bomb1", "/bomb2" } do
      local inflated = stats["inflated." .. path]
      assert.is_true(inflated > 0 and inflated <= STEP_BYTES,
        ("%s inflated %d bytes in one round"):format(path, inflated))
    end
  end)

  it("a message in a million 1-byte fragments is assembled in bounded rounds", function()
    local server, port = start_server()
    local url = "ws://127.0.0.1:" .. port
    local n = 1000000 // SCALE
    local peer = attacker(port, {
      handshake "/fragments",
      { stream = {
        first = { { opcode = 2, fin = false, payload_text = "a" } },
        frames = { { opcode = 0, fin = false, payload_text = "a" } }, times = n - 2,
        last = { { opcode = 0, fin = true, payload_text = "a" } } } },
      { read_frames = { ["until"] = "opcode", opcode = 2, timeout = 300 } },
      { send_frame = { opcode = 8, close_code = 1000 } },
      { read_frames = { ["until"] = "close", timeout = 60 } },
    }, 600)
    assert.is_true(good_client(url, alive(peer)) > 0)
    local echo = frames_of(rawpeer.finish(peer, 5), 2)[1]
    assert.equal(n, echo.length)
    local stats = final_stats(server, url)
    local wire = stats["wire./fragments"]
    assert.is_true(wire > 0 and wire <= STEP_BYTES, "bytes taken in one round: " .. wire)
    assert_rss(stats)
  end)

  it("fragments interleaved with pings: the message arrives, pongs coalesce", function()
    local server, port = start_server()
    local url = "ws://127.0.0.1:" .. port
    local pieces = 100000 // SCALE
    local peer = attacker(port, {
      handshake "/fragments",
      { stream = {
        first = { { opcode = 1, fin = false, payload_text = "ab" } },
        frames = { { opcode = 9, payload_text = "ping" },
          { opcode = 0, fin = false, payload_text = "ab" } }, times = pieces,
        last = { { opcode = 0, fin = true, payload_text = "ab" } } } },
      { read_frames = { ["until"] = "opcode", opcode = 1, timeout = 300 } },
      { send_frame = { opcode = 8, close_code = 1000 } },
      { read_frames = { ["until"] = "close", timeout = 60 } },
    }, 600)
    assert.is_true(good_client(url, alive(peer)) > 0)
    local events = rawpeer.finish(peer, 5)
    assert.equal(2 * (pieces + 2), frames_of(events, 1)[1].length)
    local pongs = frames_of(events, 10)
    assert.is_true(#pongs >= 1 and #pongs <= pieces)
    assert.equal(rawpeer.hex("ping"), pongs[#pongs].payload_hex)
    local stats = final_stats(server, url)
    assert.is_true(stats["buffered./fragments"] < 64 * KiB)
    assert_rss(stats)
  end)

  it("a client that does not read its echoes: about send_limit buffered, then 1008", function()
    local limit = 4 * MiB
    local server, port = start_server(("{ port = 0, send_limit = %d, send_timeout = 2, "
      .. "close_timeout = 30 }"):format(limit))
    local url = "ws://127.0.0.1:" .. port
    local peer = attacker(port, {
      handshake "/deaf",
      { stream = { frames = { { opcode = 2, payload_size = 64 * KiB } }, times = 2048,
        timeout = 1 } },
      { sleep = 2 },
      { read_frames = { ["until"] = "close", timeout = 60 } },
    }, 600)
    assert.is_true(good_client(url, alive(peer)) > 0)
    local events = rawpeer.finish(peer, 5)
    local sent = sent_of(events)
    assert.is_true(sent.stalled, "the server stopped reading")
    assert.is_true(sent.bytes < 64 * MiB, "taken before reading stopped: " .. sent.bytes)
    local closes = frames_of(events, 8)
    assert.equal(1, #closes)
    assert.equal(1008, closes[1].close_code)
    server:wait_for("^(ERROR\t/deaf\ttimeout\t1008)", 10)
    local stats = final_stats(server, url)
    assert.is_true(stats["buffered./deaf"] <= limit + 64 * KiB + 14,
      "buffered for the peer: " .. stats["buffered./deaf"])
  end)

  -- count connections trickling a handshake (mode "http" or "tls") at a
  -- server whose handshake timeout is 2 s: all are dropped, a good client
  -- is served meanwhile.
  local function slowloris(mode, count, options, url_scheme, client_options)
    local server, port = start_server(options)
    local url = url_scheme .. "://localhost:" .. port
    local loris = track(process.start({ "/usr/bin/python3", "spec/peers/slowloris.py",
      tostring(port), tostring(count), mode, "0.05", "60" }, 120))
    assert.is_true(good_client(url, alive(loris), client_options) > 0)
    assert.is_true(loris:wait_exit(5))
    local result = require("dkjson").decode(loris:stdout())
    assert.equal(count, result.closed_by_server)
    assert.is_number(result.last_close)
    assert_rss(final_stats(server, url, client_options))
  end

  it("slowloris on the HTTP handshake: every connection dropped at the timeout", function()
    slowloris("http", 100, "{ port = 0, timeout = 2 }", "ws")
  end)

  it("slowloris on the TLS handshake: every connection dropped at the timeout", function()
    local c = certs.get()
    slowloris("tls", 50, ("{ port = 0, timeout = 2, tls = { cert = %q, key = %q } }")
      :format(c.server_cert, c.server_key), "wss", { timeout = 30, tls = { cafile = c.ca } })
  end)

  it("header floods: a megabyte of headers or too many of them get 431", function()
    local server, port = start_server()
    local url = "ws://127.0.0.1:" .. port
    local big = attacker(port, { { handshake = { path = "/big", pad = MiB, timeout = 60 } } })
    local many = {}
    for i = 1, 200 do many[i] = { "X-H" .. i, "v" } end
    local lots = attacker(port, { { handshake = { path = "/many", headers = many,
      timeout = 60 } } })
    for _, p in ipairs { big, lots } do
      local response = rawpeer.select(rawpeer.finish(p, 90), "response")[1]
      assert.equal(431, response.status)
    end
    assert.equal(1, good_client(url, function() return false end))
    assert_rss(final_stats(server, url))
  end)

  it("frames claiming 2^63 and 2^40 bytes: 1002 and 1009, nothing allocated", function()
    local server, port = start_server()
    local url = "ws://127.0.0.1:" .. port
    -- Binary frames with the 64-bit length form, masked, no payload.
    local claims = { ["82ff800000000000000037fa213d"] = 1002,
      ["82ff000001000000000037fa213d"] = 1009 }
    for hex, code in pairs(claims) do
      local p = attacker(port, { handshake "/claim", { send_raw_hex = hex },
        { read_frames = { ["until"] = "close", timeout = 60 } } })
      local closes = frames_of(rawpeer.finish(p, 90), 8)
      assert.equal(1, #closes)
      assert.equal(code, closes[1].close_code)
    end
    assert_rss(final_stats(server, url))
  end)

  it("a handler that throws on every message: reports rate-limited, onerror sees all",
    function()
    local n = 100000 // SCALE
    local function run(mode)
      local server, port = start_server(nil, mode)
      local peer = attacker(port, {
        handshake "/throw",
        { stream = { frames = { { opcode = 1, payload_text = "x" } }, times = n } },
        { send_frame = { opcode = 1, payload_text = "stats" } },
        { read_frames = { ["until"] = "opcode", opcode = 1, timeout = 300 } },
        { send_frame = { opcode = 1, payload_text = "quit" } },
      }, 600)
      local events = rawpeer.finish(peer, 400)
      assert.is_true(server:wait_exit(60), "the server did not quit")
      assert.equal(0, server:exit_status(), server:stderr())
      return server, parse_stats(rawpeer.unhex(frames_of(events, 1)[1].payload_hex))
    end
    local server, stats = run("throw")
    assert.equal(n + 1, stats["messages./throw"])
    local stderr = server:stderr()
    assert.is_true(#stderr < 64 * KiB, ("%d bytes of reports"):format(#stderr))
    assert.truthy(stderr:find("this handler fails on every message", 1, true))
    assert.truthy(stderr:find("stack traceback", 1, true))
    local counted = 0
    for count in stderr:gmatch("moonws: (%d+) more errors? not shown") do
      counted = counted + tonumber(count)
    end
    local printed = select(2, stderr:gsub("error in onmessage handler", ""))
    -- Every error is printed or counted, but for the last second's count,
    -- which the quit may cut short.
    assert.is_true(printed > 0 and printed + counted <= n)
    _, stats = run("count_errors")
    assert.equal(n, stats.errors)
  end)
end)

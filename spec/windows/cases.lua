-- spec/windows/cases.lua -- moonws on Windows, run under Wine by
-- spec/windows/driver.lua with the Lua 5.4 tree (lua.exe) and the LuaJIT
-- tree (luajit.exe) of make windows.  Plain Lua in the language both
-- share (no busted: its C modules do not cross-build); one line per case,
-- then "N passed, N failed".
--
--   lua.exe cases.lua key=value...
--
-- The driver passes the ports of the real peers it runs on the Linux side
-- of 127.0.0.1 (Python websockets, Node ws, a native Linux moonws), each
-- plain and TLS; the test CA and server certificate as Z:\ paths; and
-- "ctl", a WebSocket through which a case asks the driver to act on the
-- Linux side: run a peer client against a moonws server here, tell how the
-- native server saw a connection close, send this process a SIGINT.
-- Nothing here needs an environment variable: lua.exe finds moonws beside
-- itself (lua\moonws\*.lua, moonws\core.dll).

local moonws = require "moonws"
local core = require "moonws.core"

local cfg = {}
for i = 1, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  if k then cfg[k] = v end
end

local passed, failed = 0, 0
local function case(name, fn)
  local ok, err = pcall(fn)
  if ok then
    passed = passed + 1
    print("ok      " .. name)
  else
    failed = failed + 1
    print("FAILED  " .. name .. "\n        " .. tostring(err):gsub("\n", "\n        "))
  end
  io.stdout:flush()
end

local function check(cond, what, ...)
  if not cond then error(what .. (select("#", ...) > 0 and (": " .. table.concat({ ... }, " ")) or ""), 2) end
  return cond
end

local function eq(expected, actual, what)
  if expected ~= actual then
    error(("%s: expected %s, got %s"):format(what, tostring(expected), tostring(actual)), 2)
  end
end

-- Step the loop until cond() is true; fails after timeout seconds.
local function run_until(cond, timeout, what)
  local deadline = core.now() + (timeout or 10)
  while not cond() do
    if core.now() > deadline then error("timed out waiting for " .. (what or "a condition"), 2) end
    moonws.step(0.02)
  end
end

local function url(peer, path)
  local tls = peer:match("_tls$")
  return ("%s://%s:%s%s"):format(tls and "wss" or "ws", cfg.host or "127.0.0.1",
    check(cfg[peer], "no port for " .. peer), path or "/")
end

local TLS = { cafile = cfg.ca }

local function payload(kind, n)
  if kind == "text" then return ("a\195\169\226\130\172\240\159\152\128"):rep(math.floor(n / 10)) .. ("x"):rep(n % 10) end
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  local unit = table.concat(t)
  return unit:rep(math.floor(n / 256) + 1):sub(1, n)
end

-- The control channel to the driver: one request, one reply, both
-- tab-separated text.
local ctl = assert(moonws.connect("ws://127.0.0.1:" .. cfg.ctl .. "/", { timeout = 10 }))
local function ask(...)
  assert(ctl:send(table.concat({ ... }, "\t")))
  local reply, err = ctl:receive(90)
  check(reply, "the driver did not answer", tostring(err))
  local fields = {}
  for f in (reply .. "\t"):gmatch("(.-)\t") do fields[#fields + 1] = f end
  return fields
end

---------------------------------------------------------------- platform

case("moonws loads from the tree beside the executable, no environment set", function()
  check(package.searchpath("moonws.core", package.cpath):match("core%.dll$"), "core.dll on the default cpath")
  eq("poll", require("moonws.loop").backend(), "poller backend (WSAPoll)")
  eq("windows", core.platform, "core.platform")
end)

case("moonws.fd() is nil on Windows (no one handle for a set of sockets)", function()
  eq(nil, moonws.fd(), "moonws.fd()")
end)

case("reuseport and moonws.pool are POSIX-only, with a clear error", function()
  local server, message = moonws.listen { host = "127.0.0.1", port = 0, reuseport = true }
  eq(nil, server, "listen with reuseport")
  check(tostring(message):match("reuseport"), "the message names reuseport", tostring(message))
  local ok, err = pcall(require("moonws.pool").run, { workers = 2, script = "x.lua" })
  check(not ok and tostring(err):match("POSIX%-only"), "pool raises POSIX-only", tostring(err))
end)

case("the monotonic clock moves forward", function()
  local t0 = core.now()
  moonws.sleep(0.05)
  local dt = core.now() - t0
  check(dt >= 0.045 and dt < 2, "sleep(0.05) took", tostring(dt))
end)

---------------------------------------------------------------- clients

-- Coroutine style from the main thread: echo every size through a peer.
local function echo_sizes(peer, opts)
  local ws = assert(moonws.connect(url(peer), opts))
  for _, n in ipairs { 0, 1, 125, 126, 65535, 65536, 1024 * 1024 } do
    for _, kind in ipairs { "text", "binary" } do
      local sent = payload(kind, n)
      assert(ws:send(sent, kind))
      local data, got = ws:receive(20)
      check(data, "no echo of " .. kind .. " " .. n, tostring(got))
      eq(kind, got, "echo type")
      eq(sent, data, "echo of " .. kind .. " " .. n)
    end
  end
  return ws
end

for _, peer in ipairs { "python", "node", "native" } do
  case("client ws:// echo against " .. peer .. " (0 B to 1 MiB, text and binary)", function()
    local ws = echo_sizes(peer, { timeout = 10 })
    ws:close(1000)
  end)
  case("client wss:// echo against " .. peer .. ", verified with the test CA (cafile)", function()
    local ws = echo_sizes(peer .. "_tls", { timeout = 10, tls = TLS })
    ws:close(1000)
  end)
end

case("wss:// without cafile fails verification: error name tls (verify is the default)", function()
  local ws, message, name = moonws.connect(url("python_tls"), { timeout = 10 })
  eq(nil, ws, "connect")
  eq("tls", name, "error name (" .. tostring(message) .. ")")
end)

case("wss:// checks the host name: a servername the certificate lacks fails with tls", function()
  local ws, message, name = moonws.connect(url("native_tls"),
    { timeout = 10, tls = { cafile = cfg.ca, servername = "not-this-host.example" } })
  eq(nil, ws, "connect")
  eq("tls", name, "error name (" .. tostring(message) .. ")")
end)

case("event style against Node: onopen, onmessage, close 4001 from the client", function()
  local ws = moonws.new(url("node", "/events"), { timeout = 10 })
  local got, closed = {}, nil
  ws.onopen = function() ws:send("one"); ws:send("two", "binary") end
  ws.onmessage = function(e)
    got[#got + 1] = e.data .. (e.binary and "/b" or "/t")
    if #got == 2 then ws:close(4001, "client bye") end
  end
  ws.onclose = function(e) closed = e end
  run_until(function() return closed end, 15, "onclose")
  eq("one/t,two/b", table.concat(got, ","), "messages")
  eq(4001, closed.code, "close code")
  eq("client bye", closed.reason, "close reason")
  eq(true, closed.wasClean, "wasClean")
end)

-- Connect to peer's path, do act(ws), and return its onclose event.
local function closed_after(peer, path, act)
  local ws = assert(moonws.connect(url(peer, path), { timeout = 10 }))
  local closed
  ws.onclose = function(e) closed = e end
  act(ws)
  run_until(function() return closed end, 10, "onclose")
  return closed
end

case("close codes both ways with the native server: it sees 4002, then sends 4003", function()
  local ws = assert(moonws.connect(url("native", "/close-a"), { timeout = 10 }))
  assert(ws:close(4002, "from windows"))
  local r = ask("lastclose", "/close-a")
  eq("4002", r[1], "code the server saw")
  eq("from windows", r[2], "reason the server saw")
  eq("true", r[3], "the server's wasClean")
  local closed = closed_after("native", "/close-b", function(ws2)
    assert(ws2:send("cmd:close:4003:from linux"))
    local data, _, name = ws2:receive(10)
    eq(nil, data, "receive after the server's close")
    eq("closed", name, "receive error name")
  end)
  eq(4003, closed.code, "code")
  eq("from linux", closed.reason, "reason")
  eq(true, closed.wasClean, "wasClean")
end)

case("close from Python: cmd:close:4004 arrives with its reason", function()
  local closed = closed_after("python", "/close", function(ws) assert(ws:send("cmd:close:4004:py bye")) end)
  eq(4004, closed.code, "code")
  eq("py bye", closed.reason, "reason")
end)

case("terminate: 1006 here, and the native server sees 1006 too", function()
  local closed = closed_after("native", "/terminate", function(ws) ws:terminate() end)
  eq(1006, closed.code, "code")
  eq(false, closed.wasClean, "wasClean")
  local r = ask("lastclose", "/terminate")
  eq("1006", r[1], "code the server saw")
  eq("false", r[3], "the server's wasClean")
end)

case("the server terminates: 1006 and wasClean false here", function()
  local closed = closed_after("native", "/terminated", function(ws) assert(ws:send("cmd:terminate")) end)
  eq(1006, closed.code, "code")
  eq(false, closed.wasClean, "wasClean")
end)

case("permessage-deflate with Python: negotiated, and 1 MiB round trips", function()
  local ws = assert(moonws.connect(url("python"), { timeout = 10, compression = true }))
  check(ws.extensions:match("permessage%-deflate"), "extensions", ws.extensions)
  local sent = payload("text", 1024 * 1024)
  assert(ws:send(sent))
  local data = assert(ws:receive(20))
  eq(sent, data, "echo")
  ws:close()
end)

case("permessage-deflate with Node (?pmd=on) and the native server (wss)", function()
  local ws = assert(moonws.connect(url("node", "/?pmd=on"), { timeout = 10, compression = true }))
  check(ws.extensions:match("permessage%-deflate"), "node extensions", ws.extensions)
  local sent = payload("binary", 300000)
  assert(ws:send(sent, "binary"))
  eq(sent, assert(ws:receive(20)), "node echo")
  ws:close()
  local ws2 = assert(moonws.connect(url("native_tls"), { timeout = 10, compression = true, tls = TLS }))
  check(ws2.extensions:match("permessage%-deflate"), "native extensions", ws2.extensions)
  assert(ws2:send(payload("text", 200000)))
  eq(payload("text", 200000), assert(ws2:receive(20)), "native echo")
  ws2:close()
end)

case("keepalive: pings every 0.1 s are answered; a deaf peer fails with timeout", function()
  local ws = assert(moonws.connect(url("python"), { timeout = 10, ping_interval = 0.1, ping_timeout = 2 }))
  local pongs = 0
  ws.onpong = function() pongs = pongs + 1 end
  moonws.sleep(0.6)
  eq(moonws.OPEN, ws.readyState, "still open")
  check(pongs >= 2, "pongs seen", tostring(pongs))
  ws:close()
  local deaf = assert(moonws.connect(url("native", "/deaf"), { timeout = 10, ping_interval = 0.1, ping_timeout = 0.3 }))
  local err, closed
  deaf.onerror = function(e) err = e end
  deaf.onclose = function(e) closed = e end
  assert(deaf:send("cmd:deaf"))
  run_until(function() return closed end, 10, "the keepalive timeout")
  eq("timeout", err and err.error, "error name")
  eq(1006, closed.code, "close code")
end)

case("step(0) in a frame loop: 200 messages, bounded work per frame", function()
  local ws = moonws.new(url("node"), { timeout = 10 })
  local got, closed, frames = 0, nil, 0
  ws.onopen = function() for i = 1, 200 do ws:send("m" .. i) end end
  ws.onmessage = function() got = got + 1; if got == 200 then ws:close() end end
  ws.onclose = function(e) closed = e end
  local deadline = core.now() + 15
  while not closed and core.now() < deadline do
    local frame_end = core.now() + 0.005
    moonws.step(0) -- never waits
    frames = frames + 1
    while core.now() < frame_end do end -- the rest of the frame: the game's work
  end
  check(closed, "closed within the deadline")
  eq(200, got, "messages")
  check(frames > 1, "frames", tostring(frames))
end)

case("coroutine style: moonws.spawn + connect + receive + moonws.run", function()
  local result
  -- The control channel stays open, so run() would not end by itself:
  -- the coroutine stops the loop when it is done.
  moonws.spawn(function()
    local ws = assert(moonws.connect(url("native"), { timeout = 10 }))
    assert(ws:send("hello"))
    local a = assert(ws:receive(10))
    assert(ws:send("world", "binary"))
    local b, kind = ws:receive(10)
    ws:close()
    result = a .. " " .. b .. " " .. kind
    moonws.stop()
  end)
  moonws.run()
  eq("hello world binary", result, "result")
end)

case("name resolution on the resolver threads: localhost", function()
  local ws = assert(moonws.connect(("ws://localhost:%s/"):format(cfg.python), { timeout = 10 }))
  assert(ws:send("via localhost"))
  eq("via localhost", assert(ws:receive(10)), "echo")
  ws:close()
end)

case("error names: refused", function()
  local ws, message, name = moonws.connect("ws://127.0.0.1:" .. cfg.refused .. "/", { timeout = 10 })
  eq(nil, ws, "connect")
  eq("refused", name, "error name (" .. tostring(message) .. ")")
end)

case("error names: timeout (a peer that accepts TCP and never answers)", function()
  local t0 = core.now()
  local ws, message, name = moonws.connect("ws://127.0.0.1:" .. cfg.silent .. "/", { timeout = 0.5 })
  eq(nil, ws, "connect")
  eq("timeout", name, "error name (" .. tostring(message) .. ")")
  check(core.now() - t0 < 5, "bounded")
end)

case("error names: an unknown name fails with resolve", function()
  local ws, message, name = moonws.connect("ws://no-such-host.invalid/", { timeout = 10 })
  eq(nil, ws, "connect")
  eq("resolve", name, "error name (" .. tostring(message) .. ")")
end)

---------------------------------------------------------------- servers

-- A moonws server here that echoes and obeys cmd:close; records closes.
local function echo_server(opts)
  local o = { host = "127.0.0.1", port = 0 }
  for k, v in pairs(opts or {}) do o[k] = v end
  local server = assert(moonws.listen(o))
  server.closes = {}
  server.onconnection = function(ws, request)
    ws.onmessage = function(e)
      local code, reason = e.data:match("^cmd:close:(%d+):?(.*)$")
      if code and not e.binary then ws:close(tonumber(code), reason) return end
      ws:send(e.data, e.binary and "binary" or "text")
    end
    ws.onclose = function(e) server.closes[request.path] = e end
  end
  return server
end

-- A Linux peer client runs the steps against our server (driven by the
-- loop while the control channel waits).
local function peer_client(peer, server_url, ...)
  local r = ask("client", peer, server_url, ...)
  check(r[1] == "ok", peer .. " client failed", table.concat(r, " | "))
  return r
end

for _, peer in ipairs { "python", "node", "native" } do
  case("server ws:// with a " .. peer .. " client: echoes, ping, close 4000 from the client", function()
    local server = echo_server()
    local path = "/" .. peer
    local r = peer_client(peer, ("ws://127.0.0.1:%d%s"):format(server.port, path),
      "echo:text:1000", "echo:binary:70000", "echo:text:0", "ping:hi", "close:4000:bye")
    server:close()
    check(server.closes[path], "the server saw the close")
    eq(4000, server.closes[path].code, "code the server saw")
    eq("bye", server.closes[path].reason, "reason")
    check(r[3]:match("closed:4000"), "the client's record", r[3])
  end)
end

for _, peer in ipairs { "python", "node", "native" } do
  case("server wss:// (cert and key from Z:) with a " .. peer .. " client verifying the test CA", function()
    local server = echo_server { tls = { cert = cfg.cert, key = cfg.key } }
    local r = peer_client(peer, ("wss://localhost:%d/tls"):format(server.port),
      "echo:text:5000", "echo:binary:300000", "close:1000:")
    server:close()
    check(r[3]:match("closed:1000"), "the client's record", r[3])
  end)
end

case("server close code toward the client: cmd:close:4005 seen by Python", function()
  local server = echo_server()
  local r = peer_client("python", ("ws://127.0.0.1:%d/sc"):format(server.port), "send:cmd:close:4005:srv", "waitclose")
  server:close()
  check(r[3]:match("closed:4005"), "the client saw 4005", r[3])
end)

case("server permessage-deflate: Python offers it, the server agrees", function()
  local server = echo_server { compression = true }
  local r = peer_client("python", ("ws://127.0.0.1:%d/pmd"):format(server.port), "echo:text:100000", "close:1000:")
  server:close()
  check(r[2]:match("permessage%-deflate"), "extension answered", r[2])
end)

case("moonws.serve, one coroutine per connection, with a Node client", function()
  local seen = {}
  local server = assert(moonws.serve({ host = "127.0.0.1", port = 0 }, function(ws)
    while true do
      local data, kind = ws:receive()
      if not data then break end
      seen[#seen + 1] = #data
      ws:send(data, kind)
    end
  end))
  peer_client("node", ("ws://127.0.0.1:%d/co"):format(server.port), "echo:text:10", "echo:binary:100000", "close:1000:")
  server:close()
  eq("10,100000", table.concat(seen, ","), "sizes served")
end)

---------------------------------------------------------------- signals

case("onsignal: unknown POSIX names raise, INT/TERM/BREAK are accepted", function()
  check(not pcall(moonws.onsignal, "HUP", function() end), "HUP raises")
  check(not pcall(moonws.onsignal, "USR1", function() end), "USR1 raises")
  local remove_term = moonws.onsignal("TERM", function() end)
  local remove_break = moonws.onsignal("BREAK", function() end)
  remove_term()
  remove_break()
end)

case("moonws.graceful: Ctrl+C shuts the server down (1001 to its client) and run() returns", function()
  local server = echo_server()
  moonws.graceful(server)
  local client = moonws.new(("ws://127.0.0.1:%d/graceful"):format(server.port), { timeout = 10 })
  local closed, reply
  client.onclose = function(e) closed = e end
  client.onopen = function()
    moonws.spawn(function() reply = ask("signal", "INT")[1] end)
  end
  -- The control channel keeps run() going if the signal never comes.
  local given_up = false
  moonws.spawn(function() moonws.sleep(20); given_up = true; moonws.stop() end)
  moonws.run()
  eq(false, given_up, "run() ended by the signal")
  eq("sent", reply, "driver")
  run_until(function() return closed end, 10, "the client's onclose")
  eq(1001, closed.code, "close code")
end)

case("onsignal(\"INT\"): Ctrl+C (SIGINT from Linux, a console event here) runs the handler", function()
  local got
  local remove = moonws.onsignal("INT", function(name) got = name end)
  local r = ask("signal", "INT")
  eq("sent", r[1], "driver")
  run_until(function() return got end, 10, "the INT handler")
  eq("INT", got, "handler argument")
  remove()
end)

ctl:close()
print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)

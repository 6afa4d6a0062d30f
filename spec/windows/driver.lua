-- spec/windows/driver.lua -- the Linux side of make test-windows.
--
--   lua5.4 spec/windows/driver.lua [lua|luajit|rock]...   (default: all)
--
-- Runs natively with the Linux build of moonws.  It starts the real peers
-- on 127.0.0.1 (Python websockets and Node ws from spec/peers/, plain and
-- TLS with the test certificates of spec/support/certs.lua, and a native
-- moonws server in this process), then runs spec/windows/cases.lua under
-- Wine with each flavour of make windows (build/windows/lua.exe,
-- build/windows-luajit/luajit.exe) and with the tree that LuaRocks built
-- from the rockspec (build/windows-rock, spec/windows/rock_build), and serves the cases' control channel
-- (cases.lua says what it may ask).  For the Lua 5.4 flavour it also runs
-- the C embedding host (host.exe, examples/embed/) under Wine against the
-- flood server.  Every process is bounded in time and killed by PID.
-- Ends with "N passed, N failed" (the cases' counts and its own).

package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

local moonws = require "moonws"
local core = require "moonws.core"
local process = require "spec.support.process"
local certs = require "spec.support.certs"

local flavours = #arg > 0 and arg or { "lua", "luajit", "rock" }
local TREES = {
  lua = { exe = "build/windows/lua.exe" },
  luajit = { exe = "build/windows-luajit/luajit.exe" },
  rock = { exe = "build/windows-rock/lua.exe" },
}

local passed, failed = 0, 0
local function result(ok, name, detail)
  if ok then
    passed = passed + 1
    print("ok      " .. name)
  else
    failed = failed + 1
    print("FAILED  " .. name .. (detail and ("\n" .. detail) or ""))
  end
  io.stdout:flush()
end

local ROOT = assert(os.getenv("PWD"), "PWD is not set")

-- A Linux path as Wine shows it (drive Z: is the Linux root).
local function winpath(path)
  if path:sub(1, 1) ~= "/" then path = ROOT .. "/" .. path end
  return "Z:" .. path:gsub("/", "\\")
end

local function run_until(cond, timeout)
  local deadline = core.now() + timeout
  while not cond() and core.now() < deadline do moonws.step(0.02) end
  return cond()
end

---------------------------------------------------------------- peers

local c = certs.get()
local started = {}
local function start(argv, limit)
  local p = process.start(argv, limit or 600)
  started[#started + 1] = p
  return p
end

local PEERS = {
  python = { "/usr/bin/python3", "spec/peers/python_peer.py" },
  node = { "node", "spec/peers/node_peer.js" },
}
local ports = {}
local function start_peers()
  for name, argv in pairs(PEERS) do
    local plain = start { argv[1], argv[2], "server" }
    local tls = start { argv[1], argv[2], "server", "--tls=" .. c.server_cert .. "," .. c.server_key }
    ports[name] = plain:port()
    ports[name .. "_tls"] = tls:port()
  end
end

-- The native moonws server: echo, plus cmd:close:CODE:REASON,
-- cmd:terminate and cmd:deaf (stop reading: no more pongs); remembers how
-- each path's last connection closed.
local closes = {}
local function native_server(opts)
  local o = { host = "127.0.0.1", port = 0, compression = true }
  for k, v in pairs(opts or {}) do o[k] = v end
  local server = assert(moonws.listen(o))
  server.onconnection = function(ws, request)
    ws.onmessage = function(e)
      local code, reason = e.data:match("^cmd:close:(%d+):?(.*)$")
      if code and not e.binary then
        ws:close(tonumber(code), reason)
      elseif e.data == "cmd:terminate" then
        ws:terminate()
      elseif e.data == "cmd:deaf" then
        ws:pause()
      else
        ws:send(e.data, e.binary and "binary" or "text")
      end
    end
    ws.onclose = function(e) closes[request.path] = e end
  end
  return server
end
ports.native = native_server().port
ports.native_tls = native_server({ tls = { cert = c.server_cert, key = c.server_key } }).port

-- A listener that never accepts: TCP connects, the handshake never comes.
local silent = assert(core.listen("127.0.0.1", 0))
ports.silent = silent:port()
-- A port with nothing on it.
local gone = assert(core.listen("127.0.0.1", 0))
ports.refused = gone:port()
gone:close()

---------------------------------------------------------------- the control channel

local current -- the Wine process of the flavour running now

-- The native moonws client for "client native URL STEPS...": the steps of
-- the peers' client mode that the cases use.  Returns the observations.
local function native_client(url, steps)
  local obs = {}
  local ws, err = moonws.connect(url, { timeout = 10, tls = { cafile = c.ca } })
  if not ws then return { { ev = "fail", reason = err } } end
  obs[#obs + 1] = { ev = "open", ext = ws.extensions }
  for _, step in ipairs(steps) do
    local name, a, b = step:match("^(%a+):?([^:]*):?(.*)$")
    if name == "echo" then
      local n = tonumber(b)
      local sent = a == "text" and ("x"):rep(n) or ("\0\1\2\255"):rep(n // 4) .. ("\7"):rep(n % 4)
      ws:send(sent, a)
      local data, kind = ws:receive(20)
      if data ~= sent or kind ~= a then return { { ev = "fail", step = step, reason = tostring(kind) } } end
      obs[#obs + 1] = { ev = "echo" }
    elseif name == "ping" then
      local got
      ws.onpong = function(e) got = e.data end
      ws:ping(a)
      if not run_until(function() return got end, 10) then return { { ev = "fail", step = step } } end
      obs[#obs + 1] = { ev = "pong", data = got }
    elseif name == "close" then
      local closed
      ws.onclose = function(e) closed = e end
      ws:close(tonumber(a), b)
      if not run_until(function() return closed end, 10) then return { { ev = "fail", step = step } } end
      obs[#obs + 1] = { ev = "closed", code = closed.code, reason = closed.reason }
    else
      return { { ev = "fail", step = step, reason = "unknown step" } }
    end
  end
  obs[#obs + 1] = { ev = "done" }
  return obs
end

-- Run a peer client (Linux side) and sum up what it observed:
-- "ok", the extension the server answered, "open,echo,...,closed:CODE".
local function client_request(fields, reply)
  local peer, url = fields[2], fields[3]
  local steps = { table.unpack(fields, 4) }
  local obs
  if peer == "native" then
    obs = native_client(url, steps)
  else
    local argv = { PEERS[peer][1], PEERS[peer][2], "client", url }
    if url:match("^wss:") then argv[#argv + 1] = "--ca=" .. c.ca end
    for _, s in ipairs(steps) do argv[#argv + 1] = s end
    local p = start(argv, 60)
    run_until(function() return not p:alive() end, 45)
    obs = p:observations()
    if not obs[#obs] or obs[#obs].ev ~= "done" then
      reply("fail\t" .. p:stdout() .. p:stderr())
      return
    end
  end
  local summary, ext = {}, ""
  for _, o in ipairs(obs) do
    if o.ev == "open" then ext = o.ext or "" end
    summary[#summary + 1] = o.ev == "closed" and ("closed:" .. tostring(o.code)) or o.ev
  end
  local ok = obs[#obs] and obs[#obs].ev == "done"
  reply((ok and "ok" or "fail") .. "\t" .. ext .. "\t" .. table.concat(summary, ","))
end

-- The Linux PID of the Windows process: the deepest descendant of the
-- process we started whose command line starts with the .exe (the shells
-- above it name it as an argument).
local function wine_pid(root)
  local found
  for _, pid in ipairs(process.descendants(root)) do
    local cmd = process.read_file("/proc/" .. pid .. "/cmdline")
    if cmd:match("^[^%z]*%.exe%z") and cmd:match("cases%.lua") then found = pid end
  end
  return found
end

local control = assert(moonws.listen { host = "127.0.0.1", port = 0 })
control.onconnection = function(ws)
  moonws.spawn(function()
    while true do
      local req = ws:receive()
      if not req then break end
      local fields = {}
      for f in (req .. "\t"):gmatch("(.-)\t") do fields[#fields + 1] = f end
      local function reply(s) ws:send(s) end
      if fields[1] == "client" then
        client_request(fields, reply)
      elseif fields[1] == "lastclose" then
        run_until(function() return closes[fields[2]] end, 5)
        local e = closes[fields[2]]
        reply(e and ("%d\t%s\t%s"):format(e.code, e.reason, tostring(e.wasClean)) or "none")
      elseif fields[1] == "signal" then
        local pid = current and wine_pid(current.pid)
        if pid then
          os.execute("kill -" .. fields[2] .. " " .. pid)
          reply("sent")
        else
          reply("no Wine process found")
        end
      else
        reply("unknown request " .. req)
      end
    end
  end)
end

---------------------------------------------------------------- the flavours

-- Start argv[1] (a .exe) under Wine, in folder dir (default: the tree's
-- root).
local function wine(argv, limit, dir)
  local full = { "sh", "-c", 'cd "$0" && exec env WINEDEBUG=-all wine "$@"', dir or "." }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  return start(full, limit)
end

local function run_cases(flavour)
  local exe = TREES[flavour].exe
  print(("== %s under Wine (%s)"):format(flavour, exe))
  io.stdout:flush()
  local argv = { exe, winpath("spec/windows/cases.lua"),
    "ctl=" .. control.port, "ca=" .. winpath(c.ca), "cert=" .. winpath(c.server_cert),
    "key=" .. winpath(c.server_key) }
  for k, v in pairs(ports) do argv[#argv + 1] = k .. "=" .. v end
  current = wine(argv, 200)
  local finished = run_until(function() return not current:alive() end, 180)
  local out = current:stdout()
  io.stdout:write(out)
  local p, f = out:match("\n(%d+) passed, (%d+) failed%s*$")
  if not finished then
    result(false, flavour .. ": the cases finished in time", current:stderr())
  elseif not p then
    result(false, flavour .. ": the cases printed their summary", current:stderr())
  else
    passed, failed = passed + tonumber(p), failed + tonumber(f)
    local status = current:exit_status()
    result(status == (tonumber(f) == 0 and 0 or 1), flavour .. ": lua.exe's exit status matches its summary",
      "status " .. tostring(status))
  end
  current:cleanup()
  current = nil
end

-- examples/embed/host.c, cross-built: a 60 Hz frame loop stepping moonws
-- under a flood of 20000 small and four 1 MiB messages (as
-- spec/embed_spec.lua does natively, minus the CPU-time bound: Wine has no
-- schedstat, and its wall time on a shared machine proves nothing).
local function run_host()
  print("== the C embedding host (host.exe) under Wine")
  local server = start({ "lua5.4", "examples/embed/flood_server.lua" }, 120)
  local url = "ws://127.0.0.1:" .. server:port(function(s) moonws.sleep(s) end) .. "/"
  -- From its own folder, as a game runs: game.lua's relative paths
  -- (lua/?.lua) then name the tree, not the checkout's Linux build.
  local host = wine({ "host.exe", "-n", "3600", "embed\\game.lua", url }, 100, "build/windows")
  local done = run_until(function() return not host:alive() end, 90)
  local out = host:stdout()
  io.stdout:write(out)
  local frames = tonumber(out:match("frames (%d+)"))
  local most = tonumber(out:match("most_messages_in_a_step (%d+)"))
  result(done and host:exit_status() == 0, "host.exe finished with status 0", host:stderr())
  result(out:match("messages 20004 of 20004") and out:match("in_order true"),
    "host.exe: every message of the flood arrived, in order")
  result(out:match('closed 1000 "done" clean true'), "host.exe: closed 1000 \"done\", clean")
  result(most and most <= 256 and frames and frames > 1,
    "host.exe: no step handled more than 256 messages (" .. tostring(most) .. " at most, " .. tostring(frames) .. " frames)")
  host:cleanup()
  server:cleanup()
end

local ok, err = pcall(function()
  start_peers()
  for _, flavour in ipairs(flavours) do
    run_cases(flavour)
    if flavour == "lua" then run_host() end
  end
end)
if not ok then result(false, "the driver ran to the end", tostring(err)) end

for _, p in ipairs(started) do p:cleanup() end
silent:close()
certs.cleanup()
print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)

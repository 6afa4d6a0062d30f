-- bench/run.lua -- the benchmark driver behind `make bench` (bench/run
-- prepares the machine and calls it).  For each server of SERVERS and each
-- workload of WORKLOADS it starts the server on 127.0.0.1, drives it with
-- build/bench/loadgen (one JSON line per run), kills it by PID, and at the
-- end writes bench/RESULTS.md: the figures, their ratios to the C TCP echo
-- and to Node ws, the micro-benchmarks and the moonws hot-path facts.
--
-- Settings (environment): BENCH_SECS (measured seconds per run, default
-- 2), BENCH_CPU (CPU list for taskset, default "0": server and load
-- generator share one CPU; "none" runs unpinned), BENCH_ONLY (server keys,
-- comma-separated), BENCH_WORKLOADS (workload keys), BENCH_OUT (default
-- bench/RESULTS.md), BENCH_HOTPATH=0 skips the hot-path probes,
-- BENCH_HOSTILE_SECS (seconds per attack of bench/hostile.py, default 10;
-- 0 skips it), BENCH_HOSTILE (attack keys, comma-separated); the fan-out
-- row's own BENCH_FANOUT* settings are at the head of bench/fanout.lua.

local SECS = tonumber(os.getenv("BENCH_SECS") or "") or 2
local WARM = 0.5
local CPU = os.getenv("BENCH_CPU") or "0"
if CPU == "none" or CPU == "" then CPU = nil end
local OUT = os.getenv("BENCH_OUT") or "bench/RESULTS.md"
local NOFILE = tonumber(os.getenv("BENCH_NOFILE") or "") or 1024
local IDLE_CONNS = math.min(10000, NOFILE - 200)
local BIN = "build/bench/"
local T0 = os.time()
local LOAD0 = "?"
do
  local f = io.open("/proc/loadavg")
  if f then LOAD0 = f:read("l") or "?"; f:close() end
end

local U = dofile("bench/util.lua")
local sh_quote, slurp, spit, capture, sleep, log = U.sh_quote, U.slurp, U.spit, U.capture,
  U.sleep, U.log

local tmp = capture("mktemp -d /tmp/moonws-bench.XXXXXX")
assert(tmp:match("^/tmp/moonws%-bench%."), "mktemp failed")
-- nginx's worker runs as nobody and must reach its prefix inside.
os.execute("chmod 755 " .. sh_quote(tmp))

local pin = CPU and ("taskset -c " .. CPU .. " ") or ""

-- ---------------------------------------------------------------- servers

-- Throwaway TLS certificate for 127.0.0.1 (EC P-256, made at bench time).
local function make_cert()
  local cert, key = tmp .. "/cert.pem", tmp .. "/key.pem"
  assert(os.execute(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
    .. "-keyout %s -out %s -days 2 -subj /CN=127.0.0.1 "
    .. "-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1"):format(key, cert)),
    "openssl could not make the benchmark certificate")
  return cert, key
end

-- nginx with lua-resty-websocket: a generated configuration in its own
-- prefix, one worker, no daemon; the master is killed by PID.
local RESTY_WEBSOCKET = [[
local server = require "nginx.websocket.server"
local ws = server:new { timeout = 3600000, max_payload_len = 64 * 1024 * 1024 }
if not ws then return ngx.exit(444) end
while true do
  local data, typ, err = ws:recv_frame()
  if not data then
    if not (err and err:find("timeout", 1, true)) then break end
  elseif typ == "text" then ws:send_text(data)
  elseif typ == "binary" then ws:send_binary(data)
  elseif typ == "ping" then ws:send_pong(data)
  elseif typ == "close" then ws:send_close() break
  end
end
]]

-- moonws.resty in the same nginx: the same C core as the Lua 5.4 rows,
-- built for LuaJIT (make luajit), in coroutine style on cosockets.
local MOONWS_RESTY = [[
local ws = require("moonws.resty").upgrade { max_payload = 64 * 1024 * 1024, timeout = 3600 }
if not ws then return end
while true do
  local data, kind = ws:receive()
  if not data then break end
  if not ws:send(data, kind) then break end
end
]]

local function nginx_setup(ctx, handler)
  local dir = ctx.dir
  os.execute("mkdir -p " .. sh_quote(dir .. "/logs") .. " " .. sh_quote(dir .. "/tmp"))
  local root = capture("pwd")
  local tls = ctx.tls_port and ([[
    listen 127.0.0.1:%d ssl backlog=4096;
    ssl_certificate %s;
    ssl_certificate_key %s;
    ssl_session_cache off;
    ssl_session_tickets off;]]):format(ctx.tls_port, ctx.cert, ctx.key) or ""
  spit(dir .. "/nginx.conf", ([[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
daemon off;
worker_processes 1;
worker_rlimit_nofile %d;
pid %s/nginx.pid;
error_log %s/logs/error.log warn;
events { worker_connections %d; multi_accept on; }
http {
  access_log off;
  client_body_temp_path %s/tmp/body;
  proxy_temp_path %s/tmp/proxy;
  fastcgi_temp_path %s/tmp/fastcgi;
  uwsgi_temp_path %s/tmp/uwsgi;
  scgi_temp_path %s/tmp/scgi;
  lua_package_path "%s/lua/?.lua;/usr/share/lua/5.1/?.lua;;";
  lua_package_cpath "%s/build/luajit/?.so;;";
  lua_socket_log_errors off;
  server {
    listen 127.0.0.1:%d backlog=4096;%s
    location / { content_by_lua_block {
%s
    } }
  }
}
]]):format(NOFILE, dir, dir, NOFILE, dir, dir, dir, dir, dir, root, root, ctx.port, tls,
    handler))
  return { "nginx", "-p", dir, "-e", dir .. "/logs/error.log", "-c", dir .. "/nginx.conf" }
end

local function nginx_resty(ctx) return nginx_setup(ctx, RESTY_WEBSOCKET) end
local function nginx_moonws(ctx) return nginx_setup(ctx, MOONWS_RESTY) end

-- A moonws.pool of n workers (bench/servers/moonws_event.lua, reuseport on
-- one port): unpinned, so the workers can use every core.
local function pool_of(n)
  return function(ctx)
    return { "lua5.4", "-e", ([[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath
require("moonws.pool").run { script = "bench/servers/moonws_event.lua", args = { %d },
  workers = %d, stop_timeout = 2 }]]):format(ctx.port, n) }
  end
end

-- One entry is one row of the table.  argv may use {port}, {tls_port},
-- {cert}, {key}, {dir}; or setup(ctx) returns the argv.  tls = false: the
-- server has no TLS port.  version: a shell command printing the version.
-- workloads: only these (default all); unpinned: server and load
-- generator run wherever the scheduler puts them, whatever BENCH_CPU says.
local SERVERS = {
  { key = "tcp", name = "C TCP echo (ceiling, no WebSocket)", scheme = "tcp", tls = false,
    argv = { BIN .. "tcp_echo", "{port}" } },
  { key = "moonws_event", name = "moonws, event handlers",
    argv = { "lua5.4", "bench/servers/moonws_event.lua", "{port}", "{tls_port}", "{cert}", "{key}" },
    version = "git describe --always --dirty 2>/dev/null" },
  { key = "moonws_coro", name = "moonws, coroutines",
    argv = { "lua5.4", "bench/servers/moonws_coro.lua", "{port}", "{tls_port}", "{cert}", "{key}" },
    version = "git describe --always --dirty 2>/dev/null" },
  { key = "node_ws", name = "Node ws + bufferutil + utf-8-validate",
    argv = { "node", "bench/servers/node_ws.js", "{port}", "{tls_port}", "{cert}", "{key}" },
    version = "echo node $(node --version), ws $(node -p \"require('./bench/node/node_modules/ws/package.json').version\")" },
  { key = "python", name = "Python websockets (asyncio)",
    argv = { "/usr/bin/python3", "bench/servers/python_websockets.py", "{port}", "{tls_port}",
             "{cert}", "{key}" },
    version = "/usr/bin/python3 -c 'import sys, websockets; print(\"Python\", sys.version.split()[0], \"websockets\", websockets.__version__)'" },
  { key = "lua_http", name = "lua-http on Lua 5.4",
    argv = { "lua5.4", "bench/servers/lua_http.lua", "{port}", "{tls_port}", "{cert}", "{key}" },
    version = "dpkg-query -W -f 'lua-http ${Version}' lua-http" },
  { key = "nginx_resty", name = "nginx + lua-resty-websocket (LuaJIT)", setup = nginx_resty,
    version = "echo $(nginx -v 2>&1 | sed 's/.*: //'), $(dpkg-query -W -f 'lua-nginx-websocket ${Version}' lua-nginx-websocket)" },
  { key = "nginx_moonws", name = "nginx + moonws.resty (LuaJIT)", setup = nginx_moonws,
    version = "echo $(nginx -v 2>&1 | sed 's/.*: //'), moonws $(git describe --always --dirty 2>/dev/null)" },
  { key = "moonws_pool1", name = "moonws pool, 1 worker (unpinned)", setup = pool_of(1),
    tls = false, unpinned = true, workloads = { echo20 = true },
    version = "git describe --always --dirty 2>/dev/null" },
  { key = "moonws_pool2", name = "moonws pool, 2 workers (unpinned)", setup = pool_of(2),
    tls = false, unpinned = true, workloads = { echo20 = true },
    version = "git describe --always --dirty 2>/dev/null" },
}

-- ---------------------------------------------------------------- workloads

-- loadgen arguments per workload (the URL and timing are added).  metric:
-- the figure the summary table shows.
local WORKLOADS = {
  { key = "echo64", title = "64 B echo, 1 conn x 100 in flight",
    args = { "echo", "-c", "1", "-d", "100", "-s", "64" } },
  { key = "echo20", title = "20 B echo, 100 conns x 1 in flight",
    args = { "echo", "-c", "100", "-d", "1", "-s", "20" } },
  { key = "mib", title = "1 MiB binary echo, 1 conn",
    args = { "echo", "-c", "1", "-d", "1", "-s", "1048576", "-b" } },
  { key = "idle", title = IDLE_CONNS .. " idle connections", secs = 1,
    args = { "idle", "-c", tostring(IDLE_CONNS) } },
  { key = "hs", title = "handshakes (connect, upgrade, close), 10 at a time",
    args = { "handshake", "-c", "10" } },
  { key = "hs_tls", title = "TLS handshakes, 10 at a time", tls = true,
    args = { "handshake", "-c", "10" } },
}

local wanted = U.wanted

-- ---------------------------------------------------------------- processes

local alive, kill = U.alive, U.kill

-- pid and every descendant (nginx workers, forked workers).
local function tree(pid)
  local children = {}
  local p = io.popen("cat /proc/[0-9]*/stat 2>/dev/null")
  for line in p:lines() do
    local me, parent = line:match("^(%d+) %b() %a (%d+)")
    if me then
      children[parent] = children[parent] or {}
      table.insert(children[parent], me)
    end
  end
  p:close()
  local out, queue = {}, { tostring(pid) }
  while #queue > 0 do
    local q = table.remove(queue, 1)
    out[#out + 1] = q
    for _, c in ipairs(children[q] or {}) do queue[#queue + 1] = c end
  end
  return out
end

local run_no = 0
local started = {} -- every server PID, for the cleanup after a failure

-- Start a server; returns { pids, url, tls_url, base } or nil, why.  The
-- shell writes its own PID and then execs the server, so the PID is the
-- server's (and `timeout` bounds its life).
local function start(server, opts)
  run_no = run_no + 1
  local base = ("%s/%02d-%s"):format(tmp, run_no, server.key)
  local ctx = { port = tonumber(capture(BIN .. "loadgen port")), dir = base }
  os.execute("mkdir -p " .. sh_quote(base))
  if server.tls ~= false then
    ctx.tls_port = tonumber(capture(BIN .. "loadgen port"))
    ctx.cert, ctx.key = opts.cert, opts.key
  end
  local argv = server.setup and server.setup(ctx) or server.argv
  local words = {}
  for i, a in ipairs(argv) do
    words[i] = sh_quote((a:gsub("{([%w_]+)}", function(k) return tostring(ctx[k] or "") end)))
  end
  local env = opts.env or ""
  local cmd = ("%s %stimeout -k 2 600 sh -c 'echo $$ >\"$0\"; exec \"$@\"' %s %s >%s 2>%s </dev/null &")
    :format(env, server.unpinned and "" or pin, sh_quote(base .. "/pid"), table.concat(words, " "),
            sh_quote(base .. "/stdout"), sh_quote(base .. "/stderr"))
  os.execute(cmd)
  local pid
  for _ = 1, 100 do
    pid = tonumber(slurp(base .. "/pid") or "")
    if pid then break end
    sleep(0.05)
  end
  if not pid then return nil, "did not start" end
  local scheme = server.scheme or "ws"
  local url = ("%s://127.0.0.1:%d/"):format(scheme, ctx.port)
  local ok = os.execute(("%s%sloadgen wait %s -T 20 2>>%s"):format(server.unpinned and "" or pin, BIN, url,
    sh_quote(base .. "/loadgen.err")))
  local s = { pids = tree(pid), url = url, base = base, pin = server.unpinned and "" or pin }
  for _, p in ipairs(s.pids) do started[#started + 1] = p end
  if ctx.tls_port then s.tls_url = ("wss://127.0.0.1:%d/"):format(ctx.tls_port) end
  if not ok then
    kill(s.pids)
    return nil, "not answering: " .. (slurp(base .. "/stderr") or ""):sub(1, 300)
  end
  return s
end

-- A loadgen or micro result line as a Lua table.
local parse = dofile("bench/flatjson.lua")

local function loadgen(args, s, extra)
  local words = { (s.pin or pin) .. "timeout -k 2 120 " .. BIN .. "loadgen" }
  for _, a in ipairs(args) do words[#words + 1] = sh_quote(a) end
  for _, a in ipairs(extra or {}) do words[#words + 1] = sh_quote(a) end
  words[#words + 1] = "2>>" .. sh_quote(s.base .. "/loadgen.err")
  local line = capture(table.concat(words, " "))
  return parse(line) or { ok = false, error = "no result: " .. line:sub(1, 200) }
end

local function run_one(server, work, opts)
  if work.tls and (server.tls == false) then return nil end
  if server.workloads and not server.workloads[work.key] then return nil end
  local s, why = start(server, opts)
  if not s then return { ok = false, error = why } end
  local url = work.tls and s.tls_url or s.url
  local args = { table.unpack(work.args) }
  table.insert(args, 2, url)
  local r = loadgen(args, s, { "-t", tostring(work.secs or SECS), "-w", tostring(WARM),
    "-p", table.concat(s.pids, ",") })
  kill(s.pids)
  if not r.ok then
    r.error = (r.error or "failed") .. " " .. (slurp(s.base .. "/stderr") or ""):sub(1, 200)
  end
  return r
end

-- ---------------------------------------------------------------- hot path

-- The moonws probes: perf profile, syscalls and allocations per message.
local function perf_profile(server, opts)
  if capture("perf --version 2>/dev/null") == "" then return nil, "perf not installed" end
  local s, why = start(server, opts)
  if not s then return nil, why end
  local data = s.base .. "/perf.data"
  local secs = math.max(1, SECS)
  os.execute(("perf record -q -F 1999 -p %s -o %s -- sleep %g >/dev/null 2>%s &")
    :format(s.pids[1], sh_quote(data), secs, sh_quote(s.base .. "/perf.err")))
  local r = loadgen({ "echo", s.url, "-c", "1", "-d", "100", "-s", "64" }, s,
    { "-t", tostring(secs + 0.5), "-w", "0.2", "-p", table.concat(s.pids, ",") })
  sleep(0.5)
  kill(s.pids)
  local rows = {}
  local p = io.popen(("perf report -i %s --stdio --no-children --sort dso,symbol -q "
    .. "--percent-limit 0.5 2>/dev/null"):format(sh_quote(data)))
  for line in p:lines() do
    local pct, dso, sym = line:match("^%s*([%d.]+)%%%s+(%S+)%s+%[.%]%s+(.-)%s*$")
    if pct and #rows < 15 then
      rows[#rows + 1] = { pct = pct, dso = dso, sym = (sym:gsub("[%s%-]+$", "")) }
    end
  end
  p:close()
  local objects = {}
  p = io.popen(("perf report -i %s --stdio --no-children --sort dso -q 2>/dev/null"):format(sh_quote(data)))
  for line in p:lines() do
    local pct, dso = line:match("^%s*([%d.]+)%%%s+(%S+)")
    if pct then objects[#objects + 1] = ("%s %s%%"):format(dso, pct) end
  end
  p:close()
  if #rows == 0 then return nil, "perf recorded nothing: " .. (slurp(s.base .. "/perf.err") or "") end
  return { rows = rows, msgs = r.msgs_per_s, objects = table.concat(objects, ", ") }
end

-- strace -c attached to the server for one run: syscalls per echoed message.
local function syscalls(server, opts, args)
  if capture("command -v strace") == "" then return nil, "strace not installed" end
  local s, why = start(server, opts)
  if not s then return nil, why end
  local out = s.base .. "/strace.txt"
  os.execute(("strace -f -c -o %s -p %s 2>/dev/null & echo $! >%s"):format(
    sh_quote(out), s.pids[1], sh_quote(s.base .. "/strace.pid")))
  sleep(0.5)
  local a = { table.unpack(args) }
  table.insert(a, 2, s.url)
  local r = loadgen(a, s, { "-t", "1", "-w", "0" })
  local spid = tonumber(slurp(s.base .. "/strace.pid") or "")
  if spid then os.execute("kill -INT " .. spid) end
  for _ = 1, 40 do
    if spid and not alive(spid) then break end
    sleep(0.05)
  end
  sleep(0.2)
  kill(s.pids)
  local counts = {}
  for line in (slurp(out) or ""):gmatch("[^\n]+") do
    local calls, name = line:match("^%s*[%d.]+%s+[%d.]+%s+%d+%s+(%d+)%s+%d*%s*([%w_]+)%s*$")
    if calls and name ~= "total" then counts[name] = tonumber(calls) end
  end
  if not r.all_msgs or r.all_msgs == 0 then return nil, "no messages: " .. tostring(r.error) end
  return { counts = counts, msgs = r.all_msgs }
end

-- Lua VM instructions per message, by Lua function (bench/servers/luaprof.lua).
local function lua_profile(server, opts)
  local file = tmp .. "/luaprof-" .. server.key
  local s, why = start(server, { cert = opts.cert, key = opts.key,
    env = "BENCH_LUAPROF=" .. sh_quote(file) })
  if not s then return nil, why end
  local r = loadgen({ "echo", s.url, "-c", "1", "-d", "100", "-s", "64" }, s, { "-t", "1", "-w", "0" })
  os.execute("kill -USR1 " .. s.pids[1])
  for _ = 1, 40 do
    if (slurp(file) or ""):match("\n$") then break end
    sleep(0.05)
  end
  sleep(0.2)
  kill(s.pids)
  local text = slurp(file)
  if not text or not r.all_msgs or r.all_msgs == 0 then
    return nil, "no profile: " .. tostring(r.error)
  end
  local period = tonumber(text:match("^period\t(%d+)")) or 1000
  local rows, total = {}, 0
  for n, where, src in text:gmatch("\n(%d+)\t([^\t]*)\t([^\n]*)") do
    total = total + tonumber(n)
    rows[#rows + 1] = { per_msg = tonumber(n) * period / r.all_msgs, where = where, src = src }
  end
  return { total = total * period / r.all_msgs, rows = rows, msgs = r.all_msgs }
end

local function allocations(server, opts, args)
  local file = tmp .. "/malloc-" .. server.key .. "-" .. args[#args]
  local o = { cert = opts.cert, key = opts.key,
    env = ("LD_PRELOAD=%s MALLOC_COUNT_FILE=%s"):format(sh_quote(BIN .. "malloc_count.so"),
      sh_quote(file)) }
  local s, why = start(server, o)
  if not s then return nil, why end
  local a = { table.unpack(args) }
  table.insert(a, 2, s.url)
  local r = loadgen(a, s, { "-t", "1", "-w", "0.3", "-m", file })
  kill(s.pids)
  if not r.allocs_per_msg then return nil, tostring(r.error) end
  return r.allocs_per_msg
end

-- ---------------------------------------------------------------- formatting

local function si(x)
  if not x then return "—" end
  if x >= 1e6 then return ("%.2f M"):format(x / 1e6) end
  if x >= 1e4 then return ("%.0f k"):format(x / 1e3) end
  if x >= 1e3 then return ("%.1f k"):format(x / 1e3) end
  if x >= 100 then return ("%.0f"):format(x) end
  return ("%.1f"):format(x)
end

local function ns(x)
  if not x then return "—" end
  if x >= 1e4 then return ("%.1f µs"):format(x / 1e3) end
  if x >= 1e3 then return ("%.2f µs"):format(x / 1e3) end
  return ("%.0f ns"):format(x)
end

local function ratio(a, b)
  if not a or not b or b == 0 then return "—" end
  local r = a / b
  if r >= 10 then return ("%.0f×"):format(r) end
  if r >= 0.1 then return ("%.2f×"):format(r) end
  return ("%.3f×"):format(r)
end

-- The figures of a row: value, and whether bigger is better.
local COLUMNS = {
  { work = "echo64", field = "median_msgs_per_s", head = "64 B ×100 msgs/s", fmt = si, up = true },
  { work = "echo64", field = "p50_us", head = "p50/p99 µs", pair = "p99_us" },
  { work = "echo64", field = "server_cpu_ns_per_msg", head = "server CPU/msg", fmt = ns },
  { work = "echo20", field = "median_msgs_per_s", head = "100 conns ×20 B msgs/s", fmt = si, up = true },
  { work = "echo20", field = "p50_us", head = "p50/p99 µs", pair = "p99_us" },
  { work = "echo20", field = "server_cpu_ns_per_msg", head = "server CPU/msg", fmt = ns },
  { work = "mib", field = "mb_per_s", head = "1 MiB echo MB/s", fmt = si, up = true },
  { work = "idle", field = "kib_per_conn", head = "KiB per idle conn",
    fmt = function(x) return x and ("%.2f"):format(x) or "—" end },
  { work = "hs", field = "per_s", head = "handshakes/s", fmt = si, up = true },
  { work = "hs_tls", field = "per_s", head = "TLS handshakes/s", fmt = si, up = true },
}

local function cell(results, key, col)
  local r = results[key] and results[key][col.work]
  if r == nil then return "—" end
  if not r.ok then return "fail" end
  if col.pair then
    if not r[col.field] then return "—" end
    return ("%s / %s"):format(si(r[col.field]), si(r[col.pair]))
  end
  return col.fmt(r[col.field])
end

local function value(results, key, col)
  local r = results[key] and results[key][col.work]
  return r and r.ok and r[col.field] or nil
end

-- ---------------------------------------------------------------- main

local function main()
  local cert, key = make_cert()
  local opts = { cert = cert, key = key }
  local results, versions, failures = {}, {}, {}
  local servers = {}
  for _, s in ipairs(SERVERS) do
    if wanted(os.getenv("BENCH_ONLY"), s.key) then servers[#servers + 1] = s end
  end
  for _, server in ipairs(servers) do
    results[server.key] = {}
    if server.version then versions[server.key] = capture(server.version .. " 2>/dev/null") end
    for _, work in ipairs(WORKLOADS) do
      if wanted(os.getenv("BENCH_WORKLOADS"), work.key) then
        local r = run_one(server, work, opts)
        results[server.key][work.key] = r
        if r then
          log("%-14s %-7s %s", server.key, work.key, r.ok and "ok" or ("FAILED: " .. tostring(r.error)))
          if not r.ok then
            failures[#failures + 1] = ("%s / %s: %s"):format(server.name, work.title, tostring(r.error))
          end
        end
      end
    end
  end

  -- micro-benchmarks
  local micro = {}
  for line in capture(pin .. BIN .. "micro 0.25"):gmatch("[^\n]+") do
    micro[#micro + 1] = parse(line)
  end
  log("micro          done")

  -- hot path of moonws
  local hot = {}
  if os.getenv("BENCH_HOTPATH") ~= "0" then
    for _, server in ipairs(SERVERS) do
      if (server.key == "moonws_event" or server.key == "moonws_coro")
          and wanted(os.getenv("BENCH_ONLY"), server.key) then
        local h = { server = server }
        h.perf, h.perf_err = perf_profile(server, opts)
        h.lua, h.lua_err = lua_profile(server, opts)
        h.sys64, h.sys64_err = syscalls(server, opts, { "echo", "-c", "1", "-d", "100", "-s", "64" })
        h.sysmib, h.sysmib_err = syscalls(server, opts, { "echo", "-c", "1", "-d", "1", "-s", "1048576", "-b" })
        h.alloc64, h.alloc64_err = allocations(server, opts, { "echo", "-c", "1", "-d", "100", "-s", "64" })
        h.alloc20, h.alloc20_err = allocations(server, opts, { "echo", "-c", "100", "-d", "1", "-s", "20" })
        h.allocmib, h.allocmib_err = allocations(server, opts,
          { "echo", "-c", "1", "-d", "1", "-s", "1048576", "-b" })
        hot[#hot + 1] = h
        log("hot path       %s done", server.key)
      end
    end
  end

  -- a good client's latency under attack (bench/hostile.py), moonws and
  -- Node ws side by side; it fails the bench when moonws misses its bound
  local hostile_secs = tonumber(os.getenv("BENCH_HOSTILE_SECS") or "") or 10
  local hostile_md
  if hostile_secs > 0 then
    local p = io.popen(("/usr/bin/python3 bench/hostile.py %g %s; echo \"exit=$?\""):format(
      hostile_secs, sh_quote(os.getenv("BENCH_HOSTILE") or "")))
    hostile_md = p:read("a") or ""
    p:close()
    local code = tonumber(hostile_md:match("exit=(%d+)%s*$"))
    hostile_md = hostile_md:gsub("exit=%d+%s*$", "")
    if code ~= 0 then failures[#failures + 1] = "bench/hostile.py: a bound was missed (see its section)" end
    log("hostile        done")
  end

  -- one publisher, many subscribers: moonws, Node ws, Python websockets
  local fanout_md, fanout_failures = dofile("bench/fanout.lua").run(tmp, SECS)
  for _, f in ipairs(fanout_failures or {}) do failures[#failures + 1] = f end

  -- ------------------------------------------------------------ RESULTS.md
  local o = {}
  local function w(fmt, ...) o[#o + 1] = select("#", ...) > 0 and fmt:format(...) or fmt end
  local cpu_model = (slurp("/proc/cpuinfo") or ""):match("model name%s*:%s*([^\n]+)") or "?"
  w("# moonws benchmark results")
  w("")
  w("Generated by `make bench` (bench/run, bench/run.lua); do not edit by hand.")
  w("How to read it and what each row is: [README.md](README.md).")
  w("")
  w("- Date: %s", os.date("!%Y-%m-%d %H:%M UTC"))
  w("- Machine: %s CPUs (`nproc`), %s; %s", capture("nproc"), cpu_model, capture("uname -sr"))
  w("- Load average (1, 5, 15 min) before the run: %s; after: %s", LOAD0:match("^(%S+ %S+ %S+)") or "?",
    (slurp("/proc/loadavg") or "?"):match("^(%S+ %S+ %S+)") or "?")
  w("- Command: `make bench` with BENCH_SECS=%g, BENCH_CPU=%s%s", SECS, CPU or "none",
    (os.getenv("BENCH_ONLY") and (", BENCH_ONLY=" .. os.getenv("BENCH_ONLY")) or "")
    .. (os.getenv("BENCH_WORKLOADS") and (", BENCH_WORKLOADS=" .. os.getenv("BENCH_WORKLOADS")) or ""))
  w("- Pinning: %s", CPU and ("server and load generator both on CPU " .. CPU .. " (`taskset -c " .. CPU .. "`)")
    or "none (the scheduler places server and load generator)")
  w("- Each run: %g s measured after %g s of warm-up; throughput is the median of 5 slices of the window; a fresh server per run", SECS, WARM)
  w("- Took %d s", os.time() - T0)
  w("")
  w("## Results")
  w("")
  local head, sep = { "server" }, { "---" }
  for _, c in ipairs(COLUMNS) do head[#head + 1] = c.head; sep[#sep + 1] = "---:" end
  w("| " .. table.concat(head, " | ") .. " |")
  w("|" .. table.concat(sep, "|") .. "|")
  for _, s in ipairs(servers) do
    local row = { s.name }
    for _, c in ipairs(COLUMNS) do row[#row + 1] = cell(results, s.key, c) end
    w("| " .. table.concat(row, " | ") .. " |")
  end
  w("")
  w("Server CPU per message is the server's utime+stime (`/proc/PID/stat`) over the measured window")
  w("divided by the messages echoed; it is the cost of the server's own code and the kernel work")
  w("done on its behalf, and it does not depend on wake-up latency.")
  w("")
  local function ratio_table(ref, title)
    w("## Ratios to %s", title)
    w("")
    w("Throughput columns: the row's figure divided by the reference's (higher is better). Cost columns")
    w("(CPU per message, memory per connection): the row's divided by the reference's (lower is better).")
    w("")
    local h, sp = { "server" }, { "---" }
    local cols = {}
    for _, c in ipairs(COLUMNS) do
      if not c.pair then cols[#cols + 1] = c; h[#h + 1] = c.head; sp[#sp + 1] = "---:" end
    end
    w("| " .. table.concat(h, " | ") .. " |")
    w("|" .. table.concat(sp, "|") .. "|")
    for _, s in ipairs(servers) do
      local row = { s.name }
      for _, c in ipairs(cols) do row[#row + 1] = ratio(value(results, s.key, c), value(results, ref, c)) end
      w("| " .. table.concat(row, " | ") .. " |")
    end
    w("")
  end
  if results.tcp then ratio_table("tcp", "the C TCP echo (the ceiling)") end
  if results.node_ws then ratio_table("node_ws", "Node ws") end

  w("## Latency and detail")
  w("")
  w("| server | workload | msgs/s (whole window) | p50 µs | p99 µs | server CPU % | client CPU/msg |")
  w("|---|---|---:|---:|---:|---:|---:|")
  for _, s in ipairs(servers) do
    for _, work in ipairs(WORKLOADS) do
      local r = results[s.key][work.key]
      if r and r.ok and r.workload == "echo" then
        w("| %s | %s | %s | %s | %s | %s | %s |", s.name, work.title, si(r.msgs_per_s), si(r.p50_us),
          si(r.p99_us), r.server_cpu_pct and ("%.0f"):format(r.server_cpu_pct) or "—",
          ns(r.client_cpu_ns_per_msg))
      elseif r and r.ok and r.workload == "handshake" then
        w("| %s | %s | %s handshakes/s | %s | %s | %s µs CPU per handshake | — |", s.name, work.title,
          si(r.per_s), si(r.p50_us), si(r.p99_us), si(r.server_cpu_us_per_handshake))
      elseif r and r.ok and r.workload == "idle" then
        w("| %s | %s | %d open, RSS %d → %d KiB | — | — | — | — |", s.name, work.title, r.open,
          r.rss_base_kib, r.rss_kib)
      end
    end
  end
  w("")
  if next(versions) then
    w("Versions: " .. (function()
      local t = {}
      for _, s in ipairs(servers) do
        if versions[s.key] and versions[s.key] ~= "" then t[#t + 1] = s.name .. ": " .. versions[s.key] end
      end
      return table.concat(t, "; ")
    end)())
    w("")
  end
  if #failures > 0 then
    w("## Failed runs")
    w("")
    for _, f in ipairs(failures) do w("- %s", (f:gsub("\n", " "))) end
    w("")
  end

  w("## Micro-benchmarks (bench/micro.c, linked with csrc/core)")
  w("")
  w("Best of 5 rounds, one CPU, built with the project's flags (-O2).")
  w("")
  w("| case | bytes | GB/s | ns per call |")
  w("|---|---:|---:|---:|")
  for _, m in ipairs(micro) do
    w("| %s (`%s`) | %d | %.2f | %s |", m.what, m.micro, m.bytes, m.gb_per_s, si(m.ns_per_op))
  end
  w("")

  if #hot > 0 then
    w("## moonws hot path")
    w("")
    for _, h in ipairs(hot) do
      w("### %s", h.server.name)
      w("")
      if h.perf then
        w("Where the time goes (perf record -F 1999 on the server during the 64 B ×100 echo, %s msgs/s under perf; top 15 symbols):", si(h.perf.msgs))
        w("")
        w("| % | object | symbol |")
        w("|---:|---|---|")
        for _, r in ipairs(h.perf.rows) do w("| %s | %s | %s |", r.pct, r.dso, r.sym) end
        w("")
        w("By object: %s. (Debian's lua5.4 is stripped: its VM shows as addresses.)", h.perf.objects)
        w("")
      else
        w("perf profile: not taken (%s)", tostring(h.perf_err))
        w("")
      end
      if h.lua then
        w("Lua VM instructions per message (count hook every 1000 instructions, 64 B ×100, %d messages): about %.0f in all; the functions that run them:", h.lua.msgs, h.lua.total)
        w("")
        w("| VM instructions/msg | function | defined as |")
        w("|---:|---|---|")
        for i = 1, math.min(12, #h.lua.rows) do
          local r = h.lua.rows[i]
          w("| %.1f | %s | `%s` |", r.per_msg, r.where, (r.src:gsub("|", "\\|"):sub(1, 80)))
        end
        w("")
      else
        w("Lua profile: not taken (%s)", tostring(h.lua_err))
        w("")
      end
      local function sys(t, err, title)
        if not t then return w("Syscalls, %s: not measured (%s)", title, tostring(err)) end
        local names = {}
        for n in pairs(t.counts) do names[#names + 1] = n end
        table.sort(names, function(a, b) return t.counts[a] > t.counts[b] end)
        local parts = {}
        for i = 1, math.min(8, #names) do
          parts[#parts + 1] = ("%s %.3f"):format(names[i], t.counts[names[i]] / t.msgs)
        end
        w("Syscalls per message, %s (strace -c, %d messages): %s", title, t.msgs, table.concat(parts, ", "))
      end
      sys(h.sys64, h.sys64_err, "64 B ×100")
      w("")
      sys(h.sysmib, h.sysmib_err, "1 MiB")
      w("")
      local function al(t, err, title)
        w("Allocation calls per message, %s (bench/malloc_count.so, by calling object): %s", title,
          t and (t == "" and "none" or t) or ("not measured (" .. tostring(err) .. ")"))
      end
      al(h.alloc64, h.alloc64_err, "64 B ×100")
      w("")
      al(h.alloc20, h.alloc20_err, "100 conns ×20 B")
      w("")
      al(h.allocmib, h.allocmib_err, "1 MiB")
      w("")
    end
    local mask_vec = tonumber(capture("objdump -d --no-show-raw-insn build/core/ws_mask.o 2>/dev/null | grep -cE 'pxor|vpxor'")) or 0
    w("Masking code (build/core/ws_mask.o): %d SIMD XOR instructions (pxor/vpxor, 16+ bytes a step) %s.",
      mask_vec, mask_vec > 0 and "found" or "— none: 8 bytes a step at most")
    w("")
  end
  if fanout_md then for _, line in ipairs(fanout_md) do w("%s", line) end end
  if hostile_md then w("%s", hostile_md) end
  -- The instruction counts of `make bench-instr` (bench/instr.lua) live
  -- in a section of their own, between markers: carried over as they are.
  spit(OUT, U.keep_section(table.concat(o, "\n") .. "\n", slurp(OUT)))
  log("wrote %s in %d s", OUT, os.time() - T0)
  if os.getenv("BENCH_KEEP") ~= "1" then os.execute("rm -rf " .. sh_quote(tmp)) end
  return #failures == 0
end

local ok, err = pcall(main)
if not ok then
  kill(started)
  if os.getenv("BENCH_KEEP") ~= "1" then os.execute("rm -rf " .. sh_quote(tmp)) end
  io.stderr:write("bench: ", tostring(err), "\n")
  os.exit(1)
end
os.exit(err and 0 or 1)

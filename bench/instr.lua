-- bench/instr.lua -- user-space instructions per echoed message, counted by
-- callgrind in the server process (issue 17), and the regression guard
-- built on them.  bench/instr prepares the machine and calls it.
--
--   lua5.4 bench/instr.lua full      make bench-instr: the long counts of
--                                    every row, Node ws's too, syscalls per
--                                    message, idle RSS per connection, the
--                                    1 MiB echo's reads; a table with the
--                                    issue's targets, also written into its
--                                    section of bench/RESULTS.md
--   lua5.4 bench/instr.lua check     make test's guard (spec/run_all stage
--                                    instr): the short counts of the moonws
--                                    rows and their Lua heap per idle
--                                    connection against
--                                    bench/instr-baseline.txt; ends with
--                                    "N passed, N failed"
--   lua5.4 bench/instr.lua baseline  make bench-instr-baseline: rewrites
--                                    bench/instr-baseline.txt from the short
--                                    counts and the heap figures
--
-- How a count is taken (bench/README.md, "Instruction counts"): the server
-- runs under valgrind --tool=callgrind --instr-atstart=no, so nothing is
-- counted (and it runs ~5x faster) while it starts and warms up.  The load
-- generator echoes W messages, waits until the last echo is back, runs
-- `callgrind_control -i on` (instrumentation on), echoes exactly N
-- messages, waits for the last echo and runs `callgrind_control -d` (a
-- dump of what was counted since).  Both edges fall while the server idles
-- in epoll_wait, so the window holds the N messages and nothing else but a
-- few thousand instructions of idling.  A Lua server runs with ASLR off
-- (setarch -R), a fixed environment (env -i: the stack's addresses depend
-- on its size) and build/bench/fixed_time.so, so Lua's string-hash seed is
-- the same in every run, and its count repeats to the instruction wherever
-- the scheduler's batching does.
--
-- Settings (environment): INSTR_ONLY (row keys, comma-separated),
-- INSTR_BASELINE (default bench/instr-baseline.txt), INSTR_OUT (default
-- bench/RESULTS.md; "-" writes nothing), BENCH_CPU (CPU list for taskset
-- of the runs without valgrind, default "0" as in make bench; "none"
-- unpinned), BENCH_NOFILE (set by bench/setup.sh).

local U = dofile("bench/util.lua")
local parse = dofile("bench/flatjson.lua")
local sh_quote, slurp, capture, log = U.sh_quote, U.slurp, U.capture, U.log

local MODE = arg[1] or "full"
if MODE ~= "full" and MODE ~= "check" and MODE ~= "baseline" then
  io.stderr:write("usage: lua5.4 bench/instr.lua full|check|baseline\n")
  os.exit(2)
end
local BIN = "build/bench/"
local BASELINE = os.getenv("INSTR_BASELINE") or "bench/instr-baseline.txt"
local OUT = os.getenv("INSTR_OUT") or "bench/RESULTS.md"
local CPU = os.getenv("BENCH_CPU") or "0"
if CPU == "none" or CPU == "" then CPU = nil end
local PIN = CPU and ("taskset -c " .. CPU .. " ") or ""
local NOFILE = tonumber(os.getenv("BENCH_NOFILE") or "") or 1024
local IDLE_CONNS = math.min(10000, NOFILE - 200)
local LIMIT = 0.15 -- the guard: a count more than 15% above its baseline fails
local T0 = os.time()
local LOAD0 = (U.slurp("/proc/loadavg") or "?"):match("^(%S+ %S+ %S+)") or "?"

local SERVERS = {
  event = { "lua5.4", "bench/servers/moonws_event.lua", "{port}", lua = true },
  coro = { "lua5.4", "bench/servers/moonws_coro.lua", "{port}", lua = true },
  node = { "node", "bench/servers/node_ws.js", "{port}" },
}

-- The two workload shapes: loadgen arguments, and the windows as { W, N }
-- (W messages of warm-up, then N counted).  long: make bench-instr; short:
-- the guard and the baseline.
local PIPELINED = { args = { "-c", "1", "-d", "100", "-s", "64" },
  long = { 5000, 50000 }, short = { 2000, 5000 } }
local CONNS100 = { args = { "-c", "100", "-d", "1", "-s", "20" },
  long = { 2000, 20000 }, short = { 1000, 5000 } }

local function row(shape, t)
  t.args, t.long, t.short = shape.args, t.long or shape.long, not t.node and shape.short or nil
  return t
end

-- One row per counted workload.  today and target: issue 17's figures
-- (instructions per message), syscalls_today too.
local ROWS = {
  row(PIPELINED, { key = "event64", server = "event",
    title = "event style, 64 B, 1 conn × 100 in flight",
    today = 10150, target = 2500, syscalls_today = 0.030 }),
  row(PIPELINED, { key = "coro64", server = "coro", title = "coroutine style, 64 B × 100",
    today = 11598, target = 3500, syscalls_today = 0.030 }),
  row(CONNS100, { key = "event20", server = "event", title = "event style, 100 conns × 20 B",
    today = 17968, target = 7000, syscalls_today = 2.03 }),
  row(CONNS100, { key = "coro20", server = "coro", title = "coroutine style, 100 conns × 20 B",
    today = 36182, target = 10000, syscalls_today = 2.03 }),
  -- Node's JIT settles only after tens of thousands of messages; not guarded.
  row(PIPELINED, { key = "node64", server = "node", title = "Node `ws`, 64 B × 100", node = true,
    long = { 30000, 20000 }, today = 14127, syscalls_today = 1.05 }),
}

-- Issue 17's other targets.
local IDLE_TARGET = { event = { today = 2.62, target = 1.5 }, coro = { today = 4.22, target = 2.5 } }
local MIB_TARGET = { today = 10, target = 4 }

local tmp = capture("mktemp -d /tmp/moonws-instr.XXXXXX")
assert(tmp:match("^/tmp/moonws%-instr%."), "mktemp failed")
local started = {} -- servers running (PID -> true), for the cleanup after a failure
local run_no = 0

local function exists(cmd) return capture("command -v " .. cmd .. " 2>/dev/null") ~= "" end

-- Start a server, natively or under callgrind; returns { pid, url, dir }
-- or nil, why.  The shell writes its own PID and execs (setarch, env and
-- valgrind exec too), so the PID is the server's; `timeout` bounds it.
local function start(key, callgrind, env)
  run_no = run_no + 1
  local dir = ("%s/%02d-%s%s"):format(tmp, run_no, key, callgrind and "-cg" or "")
  os.execute("mkdir -p " .. sh_quote(dir))
  local port = tonumber(capture(BIN .. "loadgen port"))
  local words = {}
  if env then
    words[1] = "env"
    for _, kv in ipairs(env) do words[#words + 1] = kv end
  end
  if callgrind then
    if SERVERS[key].lua then
      words = { "setarch", "-R", "env", "-i", "PATH=/usr/bin:/bin",
        "LD_PRELOAD=" .. BIN .. "fixed_time.so" }
    end
    for _, w in ipairs { "valgrind", "--tool=callgrind", "--instr-atstart=no",
        "--callgrind-out-file=" .. dir .. "/cg.%p", "--log-file=" .. dir .. "/valgrind.log" } do
      words[#words + 1] = w
    end
  end
  for _, a in ipairs(SERVERS[key]) do words[#words + 1] = (a:gsub("{port}", tostring(port))) end
  for i, w in ipairs(words) do words[i] = sh_quote(w) end
  local pin = callgrind and "" or PIN
  os.execute(("%stimeout -k 2 600 sh -c 'echo $$ >\"$0\"; exec \"$@\"' %s %s >%s 2>%s </dev/null &")
    :format(pin, sh_quote(dir .. "/pid"), table.concat(words, " "), sh_quote(dir .. "/stdout"),
      sh_quote(dir .. "/stderr")))
  local pid
  for _ = 1, 100 do
    pid = tonumber(slurp(dir .. "/pid") or "")
    if pid then break end
    U.sleep(0.05)
  end
  if not pid then return nil, "did not start" end
  started[pid] = true
  local s = { pid = pid, url = ("ws://127.0.0.1:%d/"):format(port), dir = dir, pin = pin }
  if not os.execute(("%s%sloadgen wait %s -T 60 2>>%s"):format(pin, BIN, s.url,
      sh_quote(dir .. "/loadgen.err"))) then
    U.kill({ pid })
    started[pid] = nil
    return nil, "not answering: " .. (slurp(dir .. "/stderr") or ""):sub(1, 300)
  end
  return s
end

local function stop(s)
  U.kill({ s.pid })
  started[s.pid] = nil
end

-- Run the load generator against s; its JSON line as a table.
local function loadgen(s, args)
  local words = { s.pin .. "timeout -k 2 600 " .. BIN .. "loadgen" }
  for _, a in ipairs(args) do words[#words + 1] = sh_quote(a) end
  words[#words + 1] = "2>>" .. sh_quote(s.dir .. "/loadgen.err")
  local line = capture(table.concat(words, " "))
  return parse(line) or { ok = false, error = "no result: " .. line:sub(1, 200) }
end

-- loadgen arguments for a counted echo: W warm-up, N counted messages.
local function echo_args(s, row, wn, extra)
  local a = { "echo", s.url, "-n", tostring(wn[2]), "-W", tostring(wn[1]), "-T", "300",
    "-p", tostring(s.pid) }
  for _, x in ipairs(row.args or {}) do a[#a + 1] = x end
  for _, x in ipairs(extra or {}) do a[#a + 1] = x end
  return a
end

local function failed(r, s)
  return ("%s; server: %s"):format(tostring(r.error or "no messages"),
    (slurp(s.dir .. "/stderr") or ""):gsub("%s+", " "):sub(1, 200))
end

-- Instructions per message for row with wn = { W, N }: { per_msg, ir,
-- msgs, secs } or nil, why.
local function count(row, wn)
  local s, why = start(row.server, true)
  if not s then return nil, why end
  local function ctl(what)
    return ("timeout 60 callgrind_control %s %d | grep -q '^ *OK'"):format(what, s.pid)
  end
  local t0 = os.time()
  local r = loadgen(s, echo_args(s, row, wn, { "-x", ctl("-i on"), "-X", ctl("-d") }))
  stop(s)
  if not r.ok then return nil, failed(r, s) end
  local dump = slurp(("%s/cg.%d.1"):format(s.dir, s.pid)) or ""
  local ir = tonumber(dump:match("\ntotals:%s*(%d+)") or dump:match("\nsummary:%s*(%d+)"))
  if not ir then return nil, "no callgrind dump in " .. s.dir end
  return { per_msg = ir / r.msgs, ir = ir, msgs = r.msgs, secs = os.time() - t0 }
end

-- ---------------------------------------------------------------- syscalls

-- perf stat counts syscall tracepoints of the server (no valgrind) over
-- the same kind of window, enabled and disabled through its control fifo.
local READS = { "recvfrom", "recvmsg", "recvmmsg", "read", "readv" }
local WAITS = { "epoll_wait", "epoll_pwait", "epoll_pwait2" }

local function tracepoint(name)
  for _, root in ipairs { "/sys/kernel/tracing", "/sys/kernel/debug/tracing" } do
    if slurp(root .. "/events/syscalls/sys_enter_" .. name .. "/id") then return true end
  end
  return false
end

local perf_ok, perf_why
do
  if not exists("perf") then
    perf_why = "perf is not installed"
  elseif not tracepoint("recvfrom") then
    perf_why = "no syscall tracepoints (tracefs)"
  else
    perf_ok = true
  end
end

-- Syscalls of one native run: { msgs, total, reads, waits } or nil, why.
local function syscalls(key, args, wn)
  if not perf_ok then return nil, perf_why end
  local s, why = start(key, false)
  if not s then return nil, why end
  local ctl, ack, csv = s.dir .. "/perf.ctl", s.dir .. "/perf.ack", s.dir .. "/perf.csv"
  os.execute(("mkfifo %s %s"):format(sh_quote(ctl), sh_quote(ack)))
  local events = { "raw_syscalls:sys_enter" }
  for _, list in ipairs { READS, WAITS } do
    for _, n in ipairs(list) do
      if tracepoint(n) then events[#events + 1] = "syscalls:sys_enter_" .. n end
    end
  end
  os.execute(("timeout -k 2 600 perf stat -x, -o %s -e %s -p %d -D -1 --control fifo:%s,%s "
    .. ">/dev/null 2>%s & echo $! >%s"):format(sh_quote(csv), table.concat(events, ","), s.pid,
    sh_quote(ctl), sh_quote(ack), sh_quote(s.dir .. "/perf.err"), sh_quote(s.dir .. "/perf.pid")))
  local function edge(cmd)
    return ("timeout 20 sh -c 'echo %s >%s && head -c 3 %s >/dev/null'"):format(cmd, ctl, ack)
  end
  local r = loadgen(s, echo_args(s, { args = args }, wn,
    { "-x", edge("enable"), "-X", edge("disable") }))
  local ppid = tonumber(slurp(s.dir .. "/perf.pid") or "")
  if ppid then
    os.execute("kill -INT " .. ppid .. " 2>/dev/null")
    for _ = 1, 40 do
      if not U.alive(ppid) then break end
      U.sleep(0.05)
    end
  end
  stop(s)
  if not r.ok then return nil, failed(r, s) end
  local c = {}
  for line in (slurp(csv) or ""):gmatch("[^\n]+") do
    local n, ev = line:match("^(%d+),[^,]*,([^,]+),")
    if n then c[ev] = tonumber(n) end
  end
  local total = c["raw_syscalls:sys_enter"]
  if not total then return nil, "perf counted nothing: " .. (slurp(s.dir .. "/perf.err") or "") end
  local function sum(list)
    local t = 0
    for _, n in ipairs(list) do t = t + (c["syscalls:sys_enter_" .. n] or 0) end
    return t
  end
  return { msgs = r.msgs, total = total, reads = sum(READS), waits = sum(WAITS) }
end

-- Idle RSS per connection (loadgen idle, as in make bench), KiB.
local function idle(key)
  local s, why = start(key, false)
  if not s then return nil, why end
  local r = loadgen(s, { "idle", s.url, "-c", tostring(IDLE_CONNS), "-t", "1", "-p", tostring(s.pid) })
  stop(s)
  if not r.ok then return nil, failed(r, s) end
  return r.kib_per_conn
end

-- Lua heap per idle connection in bytes, after a full collection: the
-- server reports its heap on SIGUSR2 (bench/servers/heap_report.lua)
-- before HEAP_CONNS connections open and once they have settled (loadgen
-- idle -x / -X).  Unlike RSS it does not move with the allocator's
-- fragmentation, so it can guard: a coroutine parked in ws:receive() that
-- outgrows Lua's initial stack costs 640 bytes more (issue 15).
local HEAP_CONNS = 1000
local HEAP_ROWS = {
  { key = "eventheap", server = "event", title = "event style, Lua heap per idle connection" },
  { key = "coroheap", server = "coro", title = "coroutine style, Lua heap per idle connection" },
}

local function heap(key)
  local path = ("%s/heap-%s-%d"):format(tmp, key, run_no + 1)
  local s, why = start(key, false, { "BENCH_HEAP=" .. path })
  if not s then return nil, why end
  local function report(out)
    return ("rm -f %s; kill -USR2 %d && i=0 && while [ ! -s %s ] && [ $i -lt 200 ];"
      .. " do sleep 0.05; i=$((i+1)); done && mv %s %s"):format(sh_quote(path), s.pid,
      sh_quote(path), sh_quote(path), sh_quote(out))
  end
  local before, after = path .. ".before", path .. ".after"
  local r = loadgen(s, { "idle", s.url, "-c", tostring(HEAP_CONNS), "-t", "0.3",
    "-p", tostring(s.pid), "-x", report(before), "-X", report(after) })
  stop(s)
  if not r.ok then return nil, failed(r, s) end
  local b, a = tonumber(slurp(before) or ""), tonumber(slurp(after) or "")
  if not (b and a) then return nil, "the server reported no heap" end
  return (a - b) * 1024 / HEAP_CONNS
end

local function heap_rows()
  local rows = {}
  for _, row in ipairs(HEAP_ROWS) do
    if U.wanted(os.getenv("INSTR_ONLY"), row.key) then rows[#rows + 1] = row end
  end
  return rows
end

-- ---------------------------------------------------------------- baseline

local function read_baseline()
  local t = {}
  for line in (slurp(BASELINE) or ""):gmatch("[^\n]+") do
    local k, v = line:match("^(%w+)%s+(%d+)%s*$")
    if k then t[k] = tonumber(v) end
  end
  return t
end

local function guarded()
  local rows = {}
  for _, row in ipairs(ROWS) do
    if not row.node and U.wanted(os.getenv("INSTR_ONLY"), row.key) then rows[#rows + 1] = row end
  end
  return rows
end

local function need_valgrind()
  if exists("valgrind") and exists("callgrind_control") then return true end
  print("valgrind (callgrind) is not installed: .ci/deps test installs it")
  return false
end

-- ---------------------------------------------------------------- formatting

local function int(x)
  if not x then return "—" end
  local s = ("%d"):format(math.floor(x + 0.5))
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

local function pct(a, b) return ("%+.1f%%"):format((a / b - 1) * 100) end

local function met(value, target)
  if not value or not target then return "—" end
  return value <= target and "met" or "not met"
end

-- ---------------------------------------------------------------- modes

-- One guarded figure against its line in the baseline: prints the verdict
-- and returns whether it passed (no figure, or no line, fails).
local function judge(base, key, value, why, unit, detail)
  local b = base[key]
  if not value then
    print(("FAILED  %-9s could not be measured: %s"):format(key, why))
    return false
  end
  if not b then
    print(("FAILED  %-9s %s %s: no baseline in %s (make bench-instr-baseline)")
      :format(key, int(value), unit, BASELINE))
    return false
  end
  local over = value > b * (1 + LIMIT)
  local note = ""
  if over then
    note = " -- above the limit: a change that means to cost more updates the baseline"
      .. " in the same commit (make bench-instr-baseline)"
  elseif value < b * (1 - LIMIT) then
    note = " -- well below the baseline: lock the gain in with make bench-instr-baseline"
  end
  print(("%-7s %-9s %s %s, baseline %s (%s%s)%s"):format(over and "FAILED" or "ok", key,
    int(value), unit, int(b), pct(value, b), detail or "", note))
  return not over
end

local function check()
  print(("Instruction counts per echoed message (callgrind, short runs) against %s;"
    .. " a count more than %d%% above its baseline fails"):format(BASELINE, LIMIT * 100))
  if not need_valgrind() then
    print("0 passed, 1 failed")
    return false
  end
  local base = read_baseline()
  local passed, nfailed = 0, 0
  local function tally(ok)
    if ok then passed = passed + 1 else nfailed = nfailed + 1 end
  end
  for _, row in ipairs(guarded()) do
    local c, why = count(row, row.short)
    tally(judge(base, row.key, c and c.per_msg, why, "instructions/msg",
      c and ("; %d messages, %d s"):format(c.msgs, c.secs)))
  end
  for _, row in ipairs(heap_rows()) do
    local bytes, why = heap(row.server)
    tally(judge(base, row.key, bytes, why, "bytes of Lua heap per idle connection"))
  end
  print(("%d passed, %d failed"):format(passed, nfailed))
  return nfailed == 0
end

local function baseline()
  if not need_valgrind() then return false end
  local lines = {
    "# bench/instr-baseline.txt -- user-space instructions per echoed message in the moonws",
    "# server (callgrind), short runs of bench/instr.lua: make test fails when a count rises",
    "# more than 15% above the number here.  Written by `make bench-instr-baseline`; a change",
    "# meant to move a count updates this file in the same commit (bench/README.md).",
    "# The heap rows below them: bytes of Lua heap per idle connection, the same rule.",
    "# workload instructions/msg",
  }
  local old = read_baseline()
  for _, row in ipairs(guarded()) do
    local c, why = count(row, row.short)
    if not c then
      log("%s: could not be counted: %s", row.key, why)
      return false
    end
    lines[#lines + 1] = ("%s %d"):format(row.key, math.floor(c.per_msg + 0.5))
    print(("%-8s %s instructions/msg (was %s)"):format(row.key, int(c.per_msg), int(old[row.key])))
  end
  lines[#lines + 1] = "# workload bytes of Lua heap per idle connection (1,000 connections)"
  for _, row in ipairs(heap_rows()) do
    local bytes, why = heap(row.server)
    if not bytes then
      log("%s: could not be measured: %s", row.key, why)
      return false
    end
    lines[#lines + 1] = ("%s %d"):format(row.key, math.floor(bytes + 0.5))
    print(("%-9s %s bytes/conn (was %s)"):format(row.key, int(bytes), int(old[row.key])))
  end
  -- rows left out by INSTR_ONLY keep their old line
  for _, row in ipairs(ROWS) do
    if not row.node and not U.wanted(os.getenv("INSTR_ONLY"), row.key) and old[row.key] then
      lines[#lines + 1] = ("%s %d"):format(row.key, old[row.key])
    end
  end
  for _, row in ipairs(HEAP_ROWS) do
    if not U.wanted(os.getenv("INSTR_ONLY"), row.key) and old[row.key] then
      lines[#lines + 1] = ("%s %d"):format(row.key, old[row.key])
    end
  end
  U.spit(BASELINE, table.concat(lines, "\n") .. "\n")
  print("wrote " .. BASELINE)
  return true
end

local function full()
  if not need_valgrind() then return false end
  local base = read_baseline()
  local results, problems = {}, {}
  for _, row in ipairs(ROWS) do
    if U.wanted(os.getenv("INSTR_ONLY"), row.key) then
      local r = {}
      r.count, r.count_err = count(row, row.long)
      r.sys, r.sys_err = syscalls(row.server, row.args, { 2000, 20000 })
      results[row.key] = r
      if not r.count then problems[#problems + 1] = row.key .. ": " .. tostring(r.count_err) end
      log("%-8s %s instructions/msg%s", row.key, r.count and int(r.count.per_msg) or "—",
        r.count and (" (%d messages, %d s)"):format(r.count.msgs, r.count.secs) or
        (": " .. tostring(r.count_err)))
    end
  end
  local rss, mib = {}, {}
  for _, key in ipairs { "event", "coro" } do
    if U.wanted(os.getenv("INSTR_ONLY"), key .. "64") then
      local why
      rss[key], why = idle(key)
      if not rss[key] then problems[#problems + 1] = key .. " idle: " .. tostring(why) end
      mib[key], why = syscalls(key, { "-c", "1", "-d", "1", "-s", "1048576", "-b" }, { 4, 32 })
      if not mib[key] then mib[key .. "_err"] = why end
      log("%-8s idle %s KiB/conn, 1 MiB echo done", key, rss[key] and ("%.2f"):format(rss[key]) or "—")
    end
  end

  local o = {}
  local function w(fmt, ...) o[#o + 1] = select("#", ...) > 0 and fmt:format(...) or fmt end
  w(U.SECTION_BEGIN)
  w("## Instructions per message (make bench-instr)")
  w("")
  w("Generated by `make bench-instr` (bench/instr, bench/instr.lua); `make bench` keeps this section")
  w("as it is. %s; %s CPUs; load average (1, 5, 15 min) before: %s; took %d s.",
    os.date("!%Y-%m-%d %H:%M UTC"), capture("nproc"), LOAD0, os.time() - T0)
  w("")
  w("User-space instructions executed by the server process per echoed message, counted by callgrind")
  w("over a window of N messages that opens and closes while the server is idle, after W messages of")
  w("warm-up (bench/README.md, \"Instruction counts\"). They do not depend on the machine's load.")
  w("Targets and \"today\" are issue 17's.")
  w("")
  w("| measure | today (issue 17) | measured | target | met? |")
  w("|---|---:|---:|---:|---|")
  for _, row in ipairs(ROWS) do
    local r = results[row.key]
    if r then
      local v = r.count and r.count.per_msg
      w("| %s (instructions/msg) | %s | %s | %s | %s |", row.title, int(row.today),
        v and int(v) or "fail", row.target and ("≤ " .. int(row.target)) or "—", met(v, row.target))
    end
  end
  for _, key in ipairs { "event", "coro" } do
    if rss[key] ~= nil or mib[key] ~= nil then
      local t = IDLE_TARGET[key]
      w("| idle RSS per connection, %s style (KiB, %d connections) | %.2f | %s | ≤ %.1f | %s |",
        key == "event" and "event" or "coroutine", IDLE_CONNS, t.today,
        rss[key] and ("%.2f"):format(rss[key]) or "fail", t.target, met(rss[key], t.target))
    end
  end
  for _, key in ipairs { "event", "coro" } do
    local m = mib[key]
    if m or mib[key .. "_err"] then
      local v = m and (m.reads + m.waits) / m.msgs
      w("| 1 MiB echo, %s style: recv + epoll_wait calls per MiB | %d | %s | ≤ %d | %s |",
        key == "event" and "event" or "coroutine", MIB_TARGET.today,
        v and ("%.1f"):format(v) or "—", MIB_TARGET.target, met(v, MIB_TARGET.target))
    end
  end
  w("")
  w("| workload | instructions/msg | guard baseline (short runs) | counted messages (warm-up) | syscalls/msg (today) | reads, epoll waits /msg |")
  w("|---|---:|---:|---:|---:|---:|")
  for _, row in ipairs(ROWS) do
    local r = results[row.key]
    if r then
      local c, sy = r.count, r.sys
      w("| %s | %s | %s | %s (%s) | %s (%s) | %s |", row.title, c and int(c.per_msg) or "fail",
        base[row.key] and ("%s (%s)"):format(int(base[row.key]),
          c and pct(c.per_msg, base[row.key]) or "—") or "—",
        int(row.long[2]), int(row.long[1]),
        sy and ("%.3f"):format(sy.total / sy.msgs) or "—", ("%.3f"):format(row.syscalls_today),
        sy and ("%.3f, %.3f"):format(sy.reads / sy.msgs, sy.waits / sy.msgs) or "—")
    end
  end
  w("")
  local notes = {}
  if not perf_ok then notes[#notes + 1] = "syscalls not counted: " .. perf_why end
  for _, key in ipairs { "event", "coro" } do
    local m = mib[key]
    if m then
      notes[#notes + 1] = ("1 MiB echo, %s style: %d messages, %.2f reads and %.2f epoll waits per MiB, %.1f syscalls per message in all"):format(
        key, m.msgs, m.reads / m.msgs, m.waits / m.msgs, m.total / m.msgs)
    elseif mib[key .. "_err"] then
      notes[#notes + 1] = ("1 MiB echo, %s style: not measured (%s)"):format(key, mib[key .. "_err"])
    end
  end
  for _, p in ipairs(problems) do notes[#notes + 1] = "failed: " .. p:gsub("\n", " ") end
  for _, n in ipairs(notes) do w("- %s", n) end
  if #notes > 0 then w("") end
  w("Syscalls are counted by `perf stat` on syscall tracepoints over a window of 20,000 messages")
  w("(1 MiB: 32) of a server run without valgrind (%s). Idle RSS is",
    CPU and ("server and load generator on CPU " .. CPU) or "unpinned")
  w("`loadgen idle` as in `make bench`.")
  w(U.SECTION_END)
  local section = table.concat(o, "\n")
  print(section)
  if OUT ~= "-" then
    U.spit(OUT, U.put_section(slurp(OUT) or "# moonws benchmark results\n", section))
    log("wrote the section of %s in %d s", OUT, os.time() - T0)
  end
  return #problems == 0
end

local modes = { full = full, check = check, baseline = baseline }
local ok, res = pcall(modes[MODE])
local left = {}
for pid in pairs(started) do left[#left + 1] = pid end
U.kill(left)
if os.getenv("INSTR_KEEP") ~= "1" then os.execute("rm -rf " .. sh_quote(tmp)) end
if not ok then
  io.stderr:write("bench/instr.lua: ", tostring(res), "\n")
  if MODE == "check" then print("0 passed, 1 failed") end
  os.exit(1)
end
os.exit(res and 0 or 1)

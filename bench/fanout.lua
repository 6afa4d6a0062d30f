-- bench/fanout.lua -- the fan-out row of `make bench` (bench/run.lua calls
-- run()): one publisher and many subscribers on one server, moonws
-- (server:publish), Node ws (a loop over the clients) and Python websockets
-- (broadcast()), each driven by build/bench/fanout in the same sitting.
--
-- The server runs on one CPU and the client on the other: the client does
-- the receiving work of every subscriber, N times the server's reading, so
-- on one shared CPU the run would measure the client.  The figure that
-- compares servers is the server's CPU time per delivered message.
--
-- Settings (environment): BENCH_FANOUT=0 skips it; BENCH_FANOUT_SUBS
-- (default "1000,10000"), BENCH_FANOUT_SIZES ("64,16384"),
-- BENCH_FANOUT_COMPRESS ("off,on"), BENCH_FANOUT_RATES ("max,100":
-- publishes a second; max = as fast as the slowest subscriber takes them),
-- BENCH_FANOUT_ONLY (server keys), BENCH_FANOUT_CPUS ("0,1": server,
-- client), BENCH_FANOUT_SECS (default BENCH_SECS).

local U = dofile("bench/util.lua")
local parse = dofile("bench/flatjson.lua")
local sh_quote, slurp, capture, sleep, log = U.sh_quote, U.slurp, U.capture, U.sleep, U.log

local BIN = "build/bench/"

local SERVERS = {
  { key = "moonws", name = "moonws server:publish",
    argv = { "lua5.4", "bench/servers/moonws_fanout.lua" } },
  { key = "node", name = "Node ws, loop over clients",
    argv = { "node", "bench/servers/node_fanout.js" } },
  { key = "python", name = "Python websockets broadcast()",
    argv = { "/usr/bin/python3", "bench/servers/python_fanout.py" } },
}

local function list(env, default)
  local out = {}
  for item in (os.getenv(env) or default):gmatch("[^,%s]+") do out[#out + 1] = item end
  return out
end

-- Start a server (pinned), wait for its "listening" line; pid, base.
local function start(tmp, server, port, compress, cpu)
  local base = ("%s/fanout-%s-%d"):format(tmp, server.key, port)
  os.execute("mkdir -p " .. sh_quote(base))
  local words = {}
  for i, a in ipairs(server.argv) do words[i] = sh_quote(a) end
  os.execute(("taskset -c %s timeout -k 2 900 sh -c 'echo $$ >\"$0\"; exec \"$@\"' %s %s %d %s"
    .. " >%s 2>%s </dev/null &"):format(cpu, sh_quote(base .. "/pid"), table.concat(words, " "),
    port, compress and "compress" or "plain", sh_quote(base .. "/stdout"),
    sh_quote(base .. "/stderr")))
  for _ = 1, 200 do
    local pid = tonumber(slurp(base .. "/pid") or "")
    if pid and (slurp(base .. "/stdout") or ""):find("listening") then return pid, base end
    sleep(0.05)
  end
  return nil, base
end

local function run_row(tmp, server, subs, size, compress, rates, cpus, secs)
  local port = tonumber(capture(BIN .. "loadgen port"))
  local pid, base = start(tmp, server, port, compress, cpus[1])
  local results = {}
  if not pid then
    for _, rate in ipairs(rates) do
      results[rate] = { ok = false, error = "did not start: " .. (slurp(base .. "/stderr") or "") }
    end
    return results
  end
  for _, rate in ipairs(rates) do
    local cmd = ("taskset -c %s timeout -k 2 300 %sfanout -u ws://127.0.0.1:%d -n %d -s %d %s"
      .. " -w %d -t %g -p %d %s 2>&1"):format(cpus[2], BIN, port, subs, size,
      compress and "-z" or "", size >= 4096 and 4 or 64, secs, pid,
      rate == "max" and "" or "-r " .. rate)
    local line = capture(cmd)
    results[rate] = parse(line) or { ok = false, error = line:sub(1, 200) }
    if not results[rate].ok then
      results[rate].error = (results[rate].error or "?") .. " "
        .. (slurp(base .. "/stderr") or ""):sub(1, 200)
    end
  end
  U.kill({ tostring(pid) })
  return results
end

local function si(x)
  if x >= 1e6 then return ("%.2f M"):format(x / 1e6) end
  if x >= 1e3 then return ("%.1f k"):format(x / 1e3) end
  return ("%.0f"):format(x)
end

local function ns(x)
  if x >= 1000 then return ("%.2f µs"):format(x / 1000) end
  return ("%.0f ns"):format(x)
end

-- Runs every combination; returns the Markdown section (a list of lines)
-- and a list of failures.
local function run(tmp, secs)
  if os.getenv("BENCH_FANOUT") == "0" then return nil end
  secs = tonumber(os.getenv("BENCH_FANOUT_SECS") or "") or secs
  local cpus = list("BENCH_FANOUT_CPUS", "0,1")
  local rates = list("BENCH_FANOUT_RATES", "max,100")
  local servers = {}
  for _, s in ipairs(SERVERS) do
    if U.wanted(os.getenv("BENCH_FANOUT_ONLY"), s.key) then servers[#servers + 1] = s end
  end
  local rows, failures = {}, {}
  for _, subs in ipairs(list("BENCH_FANOUT_SUBS", "1000,10000")) do
    for _, size in ipairs(list("BENCH_FANOUT_SIZES", "64,16384")) do
      for _, z in ipairs(list("BENCH_FANOUT_COMPRESS", "off,on")) do
        local row = { subs = tonumber(subs), size = tonumber(size), compress = z == "on",
          by = {} }
        for _, server in ipairs(servers) do
          row.by[server.key] = run_row(tmp, server, row.subs, row.size, row.compress, rates, cpus,
            secs)
          for rate, r in pairs(row.by[server.key]) do
            log("fanout %-7s subs %-6d %6d B compress %-3s rate %-4s %s", server.key, row.subs,
              row.size, z, rate, r.ok and ("%s/s, %s"):format(si(r.delivered_per_s),
              ns(r.server_ns_per_delivery)) or ("FAILED " .. tostring(r.error)))
            if not r.ok then
              failures[#failures + 1] = ("fanout %s %d subs %d B: %s"):format(server.key,
                row.subs, row.size, tostring(r.error))
            end
          end
        end
        rows[#rows + 1] = row
      end
    end
  end
  local o = {}
  local function w(fmt, ...) o[#o + 1] = select("#", ...) > 0 and fmt:format(...) or fmt end
  w("## Fan-out: one publisher, many subscribers")
  w("")
  w("bench/fanout.c publishes through one connection; every subscriber checks every byte and")
  w("the order. Server pinned to CPU %s, client to CPU %s. *Delivered* is messages/s summed", cpus[1],
    cpus[2])
  w("over subscribers; *CPU/msg* is the server's CPU time per delivered message; *× per CPU*")
  w("is the other server's CPU/msg over moonws's. Compression: the client asks for no context")
  w("takeover on both sides (every server must then compress each message without context).")
  w("")
  w("| subs | size | deflate | rate | server | delivered/s | CPU/msg | moonws × per CPU |")
  w("|---|---|---|---|---|---|---|---|")
  for _, row in ipairs(rows) do
    for _, rate in ipairs(rates) do
      local mine = row.by.moonws and row.by.moonws[rate]
      for _, server in ipairs(servers) do
        local r = row.by[server.key][rate]
        local cell, cpu, x = "failed", "—", "—"
        if r.ok then
          cell, cpu = si(r.delivered_per_s), ns(r.server_ns_per_delivery)
          if server.key ~= "moonws" and mine and mine.ok and mine.server_ns_per_delivery > 0 then
            x = ("%.1f×"):format(r.server_ns_per_delivery / mine.server_ns_per_delivery)
          end
        end
        w("| %d | %d B | %s | %s | %s | %s | %s | %s |", row.subs, row.size,
          row.compress and "on" or "off", rate, server.name, cell, cpu, x)
      end
    end
  end
  w("")
  return o, failures
end

return { run = run, run_row = run_row }

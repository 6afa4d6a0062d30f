-- bench/servers/luaprof.lua -- a Lua-level profile for the moonws servers
-- of the benchmark: where the Lua VM's instructions go.  perf sees the Lua
-- VM (a stripped lua5.4) only as addresses; this says which Lua functions
-- run them.  A count hook fires every PERIOD VM instructions and charges
-- the function running; on SIGUSR1 the counts go to $BENCH_LUAPROF as
-- lines "samples<TAB>source:line<TAB>first line of the function's source".
--
-- debug.sethook covers one thread, and a new coroutine gets no Lua hook
-- function of its own, so coroutine.create and coroutine.wrap are wrapped
-- to hook every coroutine: load this before moonws, which keeps its own
-- references to them.  In a server script, only when BENCH_LUAPROF is set:
--   local luaprof = os.getenv("BENCH_LUAPROF") and dofile("bench/servers/luaprof.lua")
--   local moonws = require "moonws"
--   if luaprof then luaprof(moonws) end
local PERIOD = 1000
-- Each next sample comes after PERIOD +- JITTER instructions, drawn at
-- random: a loop whose length divides a fixed period would put every
-- sample on the same few instructions (aliasing) and charge one function
-- for a whole loop's work.
local JITTER = 250

local path = os.getenv("BENCH_LUAPROF")
local counts, getinfo, sethook, random = {}, debug.getinfo, debug.sethook, math.random
local function hook()
  local info = getinfo(2, "S")
  if info then
    local k = info.short_src .. ":" .. info.linedefined
    counts[k] = (counts[k] or 0) + 1
  end
  sethook(hook, "", PERIOD - JITTER + random(0, 2 * JITTER))
end

debug.sethook(hook, "", PERIOD)
local create, resume = coroutine.create, coroutine.resume
coroutine.create = function(f)
  local co = create(f)
  debug.sethook(co, hook, "", PERIOD)
  return co
end
coroutine.wrap = function(f)
  local co = coroutine.create(f)
  return function(...)
    local r = table.pack(resume(co, ...))
    if not r[1] then error(r[2], 2) end
    return table.unpack(r, 2, r.n)
  end
end

local lines = {}
local function source_line(src, n)
  if not lines[src] then
    lines[src] = {}
    local f = io.open(src, "r")
    if f then
      for l in f:lines() do lines[src][#lines[src] + 1] = l end
      f:close()
    end
  end
  return ((lines[src][n] or ""):gsub("^%s+", ""):gsub("%s+$", ""):gsub("\t", " "))
end

return function(moonws)
  moonws.onsignal("USR1", function()
    debug.sethook()
    local keys = {}
    for k in pairs(counts) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return counts[a] > counts[b] end)
    local f = assert(io.open(path, "w"))
    f:write(("period\t%d\n"):format(PERIOD))
    for _, k in ipairs(keys) do
      local src, n = k:match("^(.*):(%-?%d+)$")
      f:write(("%d\t%s\t%s\n"):format(counts[k], k, source_line(src, tonumber(n))))
    end
    f:close()
  end)
end

-- moonws.pool -- run one server script in N worker processes, one per CPU
-- by default, on moonws's loop.
--
-- The workers share nothing: each listens on the same port with
-- reuseport = true (SO_REUSEPORT) and the kernel spreads new connections
-- among them.  The pool (the parent process) only starts, watches and
-- signals workers:
--   - a worker that dies is started again (after a short, growing delay
--     when it keeps dying young);
--   - SIGTERM or SIGINT: every worker gets SIGTERM; the pool waits for them
--     (SIGKILL after stop_timeout) and run() returns;
--   - SIGHUP: a rolling restart.  One worker at a time: start its
--     replacement, wait until it is ready, SIGTERM the old one and wait for
--     it to exit, then the next.  Open connections drain on the old worker
--     (moonws.graceful) while new ones land on the others.
-- Exits are found by polling waitpid(WNOHANG) on a timer: no SIGCHLD
-- handler, so nothing here changes how the host process treats children.

local core = require "moonws.core"
local loop = require "moonws.loop"
local misuse = require "moonws.misuse"

local now = loop.now

local pool = {}

local POLL = 0.05        -- seconds between waitpid polls
local YOUNG = 1          -- a worker that dies younger than this is crashing
local MAX_DELAY = 5      -- cap of the restart delay of a crashing worker

pool.getpid = core.getpid
pool.cpu_count = core.cpu_count

-- In a worker: its number (1..N) in the pool, or nil outside a pool.
function pool.worker()
  return tonumber(os.getenv("MOONWS_WORKER") or "")
end

-- In a worker: tell the pool this worker listens (call it after
-- moonws.listen).  A rolling restart retires the old worker as soon as
-- its replacement is ready, else after ready_timeout.  Harmless outside a
-- pool.
function pool.ready()
  local parent = tonumber(os.getenv("MOONWS_POOL_PID") or "")
  if parent and parent == core.getppid() then core.kill(parent, "USR1") end
end

-- The interpreter running this script (arg[-n] for `lua5.4 [opts] script`).
local function interpreter()
  local a = rawget(_G, "arg")
  if type(a) == "table" then
    local i = -1
    while a[i - 1] ~= nil do i = i - 1 end
    if type(a[i]) == "string" then return a[i] end
  end
  return _VERSION == "Lua 5.1" and "luajit" or "lua5.4"
end

-- Check pool.new's (or pool.run's: caller) options, blaming the caller.
local function check(opts, caller)
  if core.platform == "windows" then
    misuse.raise("moonws.pool: worker processes are POSIX-only (Linux, macOS, the BSDs); "
      .. "not available on Windows")
  end
  if type(opts) ~= "table" then
    misuse.arg(1, caller, "table expected, got " .. type(opts))
  end
  local known = { script = "string", args = "table", workers = "number", lua = "string",
    env = "table", stop_timeout = "number", ready_timeout = "number", onworker = "function" }
  for k, v in pairs(opts) do
    if not known[k] then misuse.raise(("unknown option '%s' to '%s'"):format(tostring(k), caller)) end
    if type(v) ~= known[k] then
      misuse.raise(("option '%s' to '%s' must be a %s"):format(k, caller, known[k]))
    end
  end
  if not opts.script then misuse.raise(("option 'script' to '%s' is required"):format(caller)) end
  local n = opts.workers or core.cpu_count()
  if n < 1 or n ~= math.floor(n) then
    misuse.raise(("option 'workers' to '%s' must be a positive integer"):format(caller))
  end
  return math.floor(n)
end

-- The environment every worker gets: the pool's pid, and the module paths
-- the pool found.
local function base_env(opts)
  local env = {
    MOONWS_POOL_PID = tostring(core.getpid()),
    LUA_PATH = package.path, LUA_CPATH = package.cpath,
  }
  local major, minor = _VERSION:match("^Lua (%d+)%.(%d+)$")
  if major and _VERSION ~= "Lua 5.1" then -- LUA_PATH_5_4 wins over LUA_PATH
    local suffix = "_" .. major .. "_" .. minor
    env["LUA_PATH" .. suffix], env["LUA_CPATH" .. suffix] = package.path, package.cpath
  end
  for k, v in pairs(opts.env or {}) do env[k] = v end
  return env
end

local Pool = {}
Pool.__index = Pool
Pool.__name = "moonws.pool"

-- pool.new{ script = "server.lua", workers = N, args = {...}, ... }: a pool
-- that runs script in N worker processes once :run() is called.
local function new_pool(opts, caller)
  local count = check(opts, caller)
  local argv = { opts.lua or interpreter(), opts.script }
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = tostring(a) end
  return setmetatable({
    opts = opts, count = count, argv = argv, env = base_env(opts),
    stop_timeout = opts.stop_timeout or 30, ready_timeout = opts.ready_timeout or 2,
    slots = {},        -- i -> the current worker {pid, slot, started}
    procs = {},        -- pid -> worker, for every live process (old ones too)
    failures = {},     -- what went wrong at the end
    ready_seen = 0,    -- USR1s received (pool.ready() of a new worker)
    waiters = {},      -- coroutines waiting for any of the above to change
    stopping = false, rolling = false, roll_again = false,
  }, Pool)
end

function pool.new(opts) return new_pool(opts, "new") end

function Pool:changed() loop.wake_all(self.waiters) end

function Pool:notify(event)
  local onworker = self.opts.onworker
  if onworker then
    local ok, err = pcall(onworker, event)
    if not ok then loop.report("error in pool onworker: " .. tostring(err)) end
  end
end

-- Start worker i: the new worker, or nil (reported) when it cannot spawn.
function Pool:start(i)
  local env = { MOONWS_WORKER = tostring(i) }
  for k, v in pairs(self.env) do env[k] = v end
  local pid, err = core.spawn(self.argv, env)
  if not pid then
    loop.report(("pool: cannot start worker %d: %s"):format(i, tostring(err)))
    return nil
  end
  local w = { pid = pid, slot = i, started = now() }
  self.procs[pid] = w
  self:notify { type = "start", worker = i, pid = pid }
  return w
end

-- Slot i gets a worker after delay seconds (a crashing or unstartable one).
function Pool:start_later(i, delay)
  local placeholder = { slot = i, pending = true, delay = delay, pool = self }
  self.slots[i] = placeholder
  loop.timer(now() + delay, Pool.restart, placeholder)
end

function Pool.restart(placeholder)
  local self = placeholder.pool
  if self.stopping or self.slots[placeholder.slot] ~= placeholder then return end
  local w = self:start(placeholder.slot)
  if w then
    w.delay = placeholder.delay
    self.slots[placeholder.slot] = w
  else -- could not even spawn: try again later
    self:start_later(placeholder.slot, math.min(MAX_DELAY, math.max(0.1, placeholder.delay * 2)))
  end
end

function Pool:on_exit(w, how, value)
  self.procs[w.pid] = nil
  w.exited = true
  self:changed()
  local clean = how == "exit" and value == 0
  self:notify { type = "exit", worker = w.slot, pid = w.pid,
    status = how == "exit" and value or nil, signal = how == "signal" and value or nil }
  if w.retiring or self.stopping then
    if not clean then
      self.failures[#self.failures + 1] = ("worker %d (pid %d) ended with %s %s"):format(w.slot,
        w.pid, how, tostring(value))
    end
    return
  end
  if self.slots[w.slot] ~= w then return end
  -- Died on its own: start it again, later when it keeps dying young.
  loop.report(("pool: worker %d (pid %d) ended with %s %s; restarting"):format(w.slot, w.pid,
    how, tostring(value)))
  local delay = 0
  if now() - w.started < YOUNG then
    delay = math.min(MAX_DELAY, math.max(0.1, (w.delay or 0) * 2))
  end
  self:start_later(w.slot, delay)
end

-- Look for exited workers (and kill the ones a stop has waited too long for).
function Pool:poll()
  local list = {}
  for _, w in pairs(self.procs) do list[#list + 1] = w end
  for _, w in ipairs(list) do
    local how, value = core.waitpid(w.pid)
    if how then
      self:on_exit(w, how, value)
    elseif how == nil then -- not our child any more (reaped elsewhere)
      self:on_exit(w, "exit", -1)
    end
  end
  if self.stopping and self.stop_deadline and now() >= self.stop_deadline then
    self.stop_deadline = nil
    for pid in pairs(self.procs) do core.kill(pid, "KILL") end
  end
end

-- Stop: every worker gets SIGTERM, SIGKILL after stop_timeout; run()
-- returns once all have exited.
local function check_self(p, what)
  if getmetatable(p) ~= Pool then misuse.raise(("bad self to '%s' (a moonws pool expected)"):format(what)) end
end

function Pool:stop()
  check_self(self, "stop")
  if self.stopping then return end
  self.stopping = true
  self.stop_deadline = now() + self.stop_timeout
  for pid in pairs(self.procs) do core.kill(pid, "TERM") end
  self:changed()
end

-- Replace worker i (a rolling restart's step): start its replacement, wait
-- until it is ready, retire the old one.  false when the roll must stop.
function Pool:replace(i)
  local old = self.slots[i]
  if not old or old.pending then return true end
  local seen = self.ready_seen
  local new = self:start(i)
  if not new then return false end
  local deadline = now() + self.ready_timeout
  loop.wait_until(function()
    return self.ready_seen > seen or new.exited or self.stopping or now() >= deadline
  end, deadline, self.waiters)
  if new.exited or self.stopping then
    -- A replacement that cannot start must not take the old one down.
    if new.exited then
      loop.report(("pool: worker %d's replacement (pid %d) died at start; keeping pid %d")
        :format(i, new.pid, old.pid))
    end
    return false
  end
  self.slots[i] = new
  old.retiring = true
  if not old.exited then core.kill(old.pid, "TERM") end
  loop.wait_until(function() return old.exited end, now() + self.stop_timeout, self.waiters)
  if not old.exited then
    core.kill(old.pid, "KILL")
    loop.wait_until(function() return old.exited end, now() + 5, self.waiters)
  end
  return true
end

-- SIGHUP: a rolling restart, one worker at a time (in a coroutine).
function Pool:roll()
  self.rolling = true
  for i = 1, self.count do
    if self.stopping or not self:replace(i) then break end
  end
  self.rolling = false
  if self.roll_again and not self.stopping then
    self.roll_again = false
    loop.spawn(Pool.roll, self)
  end
end

function Pool:on_hup()
  if self.stopping then return end
  if self.rolling then self.roll_again = true else loop.spawn(Pool.roll, self) end
end

-- pool:run(): start the workers and drive the loop until the pool is
-- stopped (SIGTERM/SIGINT or pool:stop()).  Returns true when every
-- worker exited with status 0 at the end, else nil, message.  See
-- docs/SCALING.md.
function Pool:run()
  check_self(self, "run")
  -- Handlers first: a worker's early pool.ready() must not meet SIGUSR1's
  -- default action (which ends the process).
  local function stop() self:stop() end
  local removers = {
    loop.onsignal("TERM", stop), loop.onsignal("INT", stop),
    loop.onsignal("HUP", function() self:on_hup() end),
    loop.onsignal("USR1", function() self.ready_seen = self.ready_seen + 1; self:changed() end),
  }
  for i = 1, self.count do
    local w = self:start(i)
    if w then self.slots[i] = w else self:start_later(i, 0.1) end
  end
  local ticker = {}
  local function tick()
    self:poll()
    ticker.timer = loop.timer(now() + POLL, tick, ticker)
  end
  tick()
  loop.wait_until(function() return self.stopping and next(self.procs) == nil end, nil,
    self.waiters, "pool:run")
  loop.cancel(ticker.timer)
  for _, r in ipairs(removers) do r() end
  if #self.failures > 0 then return nil, table.concat(self.failures, "; ") end
  return true
end

-- pool.run(opts): pool.new(opts):run().
function pool.run(opts)
  return new_pool(opts, "run"):run()
end

return pool

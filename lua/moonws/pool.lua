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

local function check(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'run' (table expected, got " .. type(opts) .. ")", 3)
  end
  local known = { script = "string", args = "table", workers = "number", lua = "string",
    env = "table", stop_timeout = "number", ready_timeout = "number", onworker = "function" }
  for k, v in pairs(opts) do
    if not known[k] then error(("unknown option '%s' to 'run'"):format(tostring(k)), 3) end
    if type(v) ~= known[k] then
      error(("option '%s' to 'run' must be a %s"):format(k, known[k]), 3)
    end
  end
  if not opts.script then error("option 'script' to 'run' is required", 3) end
  local n = opts.workers or core.cpu_count()
  if n < 1 or n ~= math.floor(n) then
    error("option 'workers' to 'run' must be a positive integer", 3)
  end
  return n
end

-- pool.run{ script = "server.lua", workers = N, args = {...}, ... }: start
-- the workers and drive the loop until the pool is stopped (SIGTERM/SIGINT
-- or pool.stop()).  Returns true when every worker exited with status 0 at
-- the end, else nil, message.  See README "Every core, graceful restarts,
-- behind nginx".
function pool.run(opts)
  if core.platform == "windows" then
    error("moonws.pool: worker processes are POSIX-only (Linux, macOS, the BSDs); not available on Windows", 2)
  end
  local count = check(opts)
  local argv = { opts.lua or interpreter(), opts.script }
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = tostring(a) end
  local base_env = {
    MOONWS_POOL_PID = tostring(core.getpid()),
    -- Workers find the modules the pool found.
    LUA_PATH = package.path, LUA_CPATH = package.cpath,
  }
  local major, minor = _VERSION:match("^Lua (%d+)%.(%d+)$")
  if major and _VERSION ~= "Lua 5.1" then -- LUA_PATH_5_4 wins over LUA_PATH
    local suffix = "_" .. major .. "_" .. minor
    base_env["LUA_PATH" .. suffix], base_env["LUA_CPATH" .. suffix] = package.path, package.cpath
  end
  for k, v in pairs(opts.env or {}) do base_env[k] = v end
  local stop_timeout = opts.stop_timeout or 30
  local ready_timeout = opts.ready_timeout or 2

  local slots = {}      -- i -> the current worker {pid, slot, started}
  local procs = {}      -- pid -> worker, for every live process (old ones too)
  local stopping, stop_deadline = false, nil
  local failures = {}   -- what went wrong at the end
  local ready_seen = 0  -- USR1s received (pool.ready() of a new worker)
  local rolling, roll_again = false, false
  local waiters = {}    -- coroutines waiting for any of the above to change
  local function changed() loop.wake_all(waiters) end

  local function notify(event)
    if opts.onworker then
      local ok, err = pcall(opts.onworker, event)
      if not ok then loop.report("error in pool onworker: " .. tostring(err)) end
    end
  end

  local function start(i)
    local env = { MOONWS_WORKER = tostring(i) }
    for k, v in pairs(base_env) do env[k] = v end
    local pid, err = core.spawn(argv, env)
    if not pid then
      loop.report(("pool: cannot start worker %d: %s"):format(i, tostring(err)))
      return nil
    end
    local w = { pid = pid, slot = i, started = now() }
    procs[pid] = w
    notify { type = "start", worker = i, pid = pid }
    return w
  end

  local restart -- forward

  local function on_exit(w, how, value)
    procs[w.pid] = nil
    w.exited = true
    changed()
    local clean = how == "exit" and value == 0
    notify { type = "exit", worker = w.slot, pid = w.pid,
      status = how == "exit" and value or nil, signal = how == "signal" and value or nil }
    if w.retiring or stopping then
      if not clean then
        failures[#failures + 1] = ("worker %d (pid %d) ended with %s %s"):format(w.slot, w.pid,
          how, tostring(value))
      end
      return
    end
    if slots[w.slot] ~= w then return end
    -- Died on its own: start it again, later when it keeps dying young.
    loop.report(("pool: worker %d (pid %d) ended with %s %s; restarting"):format(w.slot, w.pid,
      how, tostring(value)))
    local delay = 0
    if now() - w.started < YOUNG then
      delay = math.min(MAX_DELAY, math.max(0.1, (w.delay or 0) * 2))
    end
    slots[w.slot] = { slot = w.slot, pending = true, delay = delay }
    loop.timer(now() + delay, restart, slots[w.slot])
  end

  function restart(placeholder)
    if stopping or slots[placeholder.slot] ~= placeholder then return end
    local w = start(placeholder.slot)
    if w then
      w.delay = placeholder.delay
      slots[placeholder.slot] = w
    else -- could not even spawn: try again later
      placeholder.delay = math.min(MAX_DELAY, math.max(0.1, placeholder.delay * 2))
      loop.timer(now() + placeholder.delay, restart, placeholder)
    end
  end

  local function poll()
    local list = {}
    for _, w in pairs(procs) do list[#list + 1] = w end
    for _, w in ipairs(list) do
      local how, value = core.waitpid(w.pid)
      if how then
        on_exit(w, how, value)
      elseif how == nil then -- not our child any more (reaped elsewhere)
        on_exit(w, "exit", -1)
      end
    end
    if stopping and stop_deadline and now() >= stop_deadline then
      stop_deadline = nil
      for pid in pairs(procs) do core.kill(pid, "KILL") end
    end
  end

  local function kill_all(signal)
    for pid in pairs(procs) do core.kill(pid, signal) end
  end

  local function stop()
    if stopping then return end
    stopping = true
    stop_deadline = now() + stop_timeout
    kill_all("TERM")
    changed()
  end

  -- SIGHUP: replace the workers one by one.
  local function roll()
    rolling = true
    for i = 1, count do
      local old = slots[i]
      if stopping then break end
      if old and not old.pending then
        local seen = ready_seen
        local new = start(i)
        if not new then break end
        local deadline = now() + ready_timeout
        loop.wait_until(function()
          return ready_seen > seen or new.exited or stopping or now() >= deadline
        end, deadline, waiters)
        if new.exited or stopping then
          -- A replacement that cannot start must not take the old one down.
          if new.exited then
            loop.report(("pool: worker %d's replacement (pid %d) died at start; keeping pid %d")
              :format(i, new.pid, old.pid))
          end
          break
        end
        slots[i] = new
        old.retiring = true
        if not old.exited then core.kill(old.pid, "TERM") end
        local kill_at = now() + stop_timeout
        loop.wait_until(function() return old.exited end, kill_at, waiters)
        if not old.exited then
          core.kill(old.pid, "KILL")
          loop.wait_until(function() return old.exited end, now() + 5, waiters)
        end
      end
    end
    rolling = false
    if roll_again and not stopping then
      roll_again = false
      loop.spawn(roll)
    end
  end

  local function on_hup()
    if stopping then return end
    if rolling then roll_again = true else loop.spawn(roll) end
  end

  -- Handlers first: a worker's early pool.ready() must not meet SIGUSR1's
  -- default action (which ends the process).
  local removers = {
    loop.onsignal("TERM", stop), loop.onsignal("INT", stop), loop.onsignal("HUP", on_hup),
    loop.onsignal("USR1", function() ready_seen = ready_seen + 1; changed() end),
  }
  pool.stop = stop
  for i = 1, count do
    local w = start(i)
    if not w then
      slots[i] = { slot = i, pending = true, delay = 0.1 }
      loop.timer(now() + 0.1, restart, slots[i])
    else
      slots[i] = w
    end
  end

  local poller = {}
  local function tick()
    poll()
    poller.timer = loop.timer(now() + POLL, tick, poller)
  end
  tick()
  loop.wait_until(function() return stopping and next(procs) == nil end, nil, waiters, "pool.run")
  loop.cancel(poller.timer)
  for _, r in ipairs(removers) do r() end
  pool.stop = nil
  if #failures > 0 then return nil, table.concat(failures, "; ") end
  return true
end

return pool

-- moonws.loop -- the scheduler: coroutines, timers, I/O readiness, and the
-- one place that waits.
--
-- Everything moonws does happens in loop.step(): wait on the poller (epoll,
-- poll fallback) at most until the next timer, dispatch ready descriptors
-- to their watchers, fire due timers, resume woken coroutines, and flush
-- every socket that queued output during the round ("corking": one write
-- per socket per round however many sends were made).
--
-- Waiting (loop.park, and loop.wait_until on it) is the single primitive
-- behind every call that can block: inside a coroutine run by moonws it
-- yields to the loop; on the main thread outside the loop it drives the
-- loop itself; inside an event handler it refuses, because a handler that
-- waited would stall every other socket.
--
-- The loop holds sockets weakly (watchers, timers' objects, lookups), so a
-- socket nobody references can be collected; the driver pins what must
-- live (handlers set, coroutines waiting).

local E = require "moonws.errors"
local compat = require "moonws.compat"
local core = require "moonws.core"
local misuse = require "moonws.misuse"

local now, resume_ready = core.now, core.resume_ready
local co_running, co_resume, co_status, co_yield, co_create =
  coroutine.running, coroutine.resume, coroutine.status, coroutine.yield, coroutine.create

local loop = {}

local poller = assert(core.poller(os.getenv("MOONWS_POLL") == "poll"))
local timers = core.timers()
local ready_fds, ready_events = {}, {}

-- Readiness from the poller: 1 readable, 2 writable, 3 both.
local READ, WRITE = 1, 2
loop.READ, loop.WRITE = READ, WRITE
function loop.readable(events) return events % 2 == 1 end
function loop.writable(events) return events >= 2 end

-- fd -> watcher; a watcher is a table with on_ready(watcher, events).
local watchers = setmetatable({}, { __mode = "v" })
-- timer handle -> callback, and -> the object it is for (weak).
local timer_fn = {}
local timer_obj = setmetatable({}, { __mode = "v" })
local NO_OBJECT = {}
-- Coroutines: ours[co] = true (or the function to call when it ends)
-- while moonws runs it.  Strong: a coroutine waiting on a socket is what
-- keeps both alive.
local ours = {}
-- Coroutines to resume, and the list emptied last (lists reused: no table
-- per batch).  One woken twice before its batch is resumed twice: the
-- second is a spurious wake-up, and every waiter looks again (loop.park).
local ready, spare = {}, {}
local batch_depth = 0
local deferred = {}                    -- callbacks for the next round
local dirty, dirty_set = {}, {}        -- objects with output to flush
local refs = 0                         -- what keeps run() going
local depth = 0                        -- > 0 while inside step()
local stopping = false
local WAIT = {}                        -- what our coroutines yield to wait

loop.onerror = nil -- set by init.lua: moonws.onerror

---------------------------------------------------------------- reports

-- A handler that fails on every message must not turn into megabytes of
-- stderr and a traceback's CPU per message.  In each second the first
-- REPORT_BURST errors get a traceback and are printed in full; later ones
-- only count, and one line at the end of the second says how many there
-- were.  Handlers (onerror, moonws.onerror) still see every error.
local REPORT_BURST = 5
local window_start, traced, printed, suppressed = -math.huge, 0, 0, 0

local function report_window()
  local t = now()
  if t - window_start >= 1 then window_start, traced, printed = t, 0, 0 end
end

local function take_trace()
  report_window()
  traced = traced + 1
  return traced <= REPORT_BURST
end

-- The message handler for user callbacks: a traceback while this second
-- still has some, else just the error.
function loop.traceback(err)
  if take_trace() then return debug.traceback(err, 2) end
  return tostring(err)
end

local function print_suppressed()
  if suppressed > 0 then
    io.stderr:write(("moonws: %d more error%s not shown (at most %d a second are printed)\n")
      :format(suppressed, suppressed == 1 and "" or "s", REPORT_BURST))
    suppressed = 0
  end
end

-- Report an error that no handler can take.
function loop.report(message)
  local handler = loop.onerror
  if handler then
    local ok, err = pcall(handler, { type = "error", message = message, error = E.HANDLER })
    if ok then return end
    message = message .. "\n(moonws.onerror failed too: " .. tostring(err) .. ")"
  end
  report_window()
  printed = printed + 1
  if printed <= REPORT_BURST then
    io.stderr:write("moonws: ", message, "\n")
    return
  end
  if suppressed == 0 then loop.timer(window_start + 1, print_suppressed) end
  suppressed = suppressed + 1
end

---------------------------------------------------------------- references

-- run() keeps going while refs > 0: open sockets, listening servers,
-- coroutines not finished.
function loop.ref() refs = refs + 1 end
function loop.unref() refs = refs - 1 end
function loop.alive() return refs > 0 or #ready > 0 or #deferred > 0 end

---------------------------------------------------------------- I/O

-- Watch fd for readability and/or writability on behalf of watcher.
-- true, or nil, message, name when the poller refused (epoll_ctl can run
-- out of memory or of max_user_watches under load): the caller fails that
-- one object, never the loop.
function loop.watch(fd, watcher, want_read, want_write)
  local ok, message, name = poller:set(fd, want_read, want_write)
  if not ok then
    watchers[fd] = nil
    return nil, message, name
  end
  watchers[fd] = watcher
  return true
end

function loop.unwatch(fd)
  watchers[fd] = nil
  poller:set(fd, false, false)
end

-- Hand fd's readiness to another watcher for the same socket (the
-- poller's interest stays as it is).
function loop.rewatch(fd, old, new)
  if watchers[fd] == old then watchers[fd] = new end
end

-- Stop watching fd for watcher, unless fd (closed and reused since) has
-- another watcher now.
function loop.forget(fd, watcher)
  if fd and watchers[fd] == watcher then loop.unwatch(fd) end
end

-- The round's ready descriptors go to their watchers: by default each by
-- a watcher:on_ready(events) call (dispatch_one); a driver may take them
-- over (loop.set_dispatch): loop_io pumps open sockets in C.
local function dispatch_one(fd, events)
  local watcher = watchers[fd]
  if watcher then
    watcher:on_ready(events)
  else
    poller:set(fd, false, false) -- a descriptor nobody watches any more
  end
end

local function dispatch_each(fds, events, n)
  for i = 1, n do dispatch_one(fds[i], events[i]) end
end

local dispatch = dispatch_each

-- fn(fds, events, n, watchers, dispatch_one, ready) handles fds[1..n]
-- (events[i] as poller:wait says) each round from now on, watchers by
-- descriptor, and dispatch_one(fd, events) for those it leaves to their
-- watcher; it may wake the loop's coroutines by appending them to ready
-- (one the loop let go of is skipped when the batch runs).
function loop.set_dispatch(fn) dispatch = fn end

---------------------------------------------------------------- signals

-- Caught signals arrive as bytes on a pipe (see csrc/net/net_signal.h);
-- handlers run in the loop like any event.  They do not keep run() going.
local signal_handlers = {} -- name -> list of functions
local signal_watcher = {}
local signals_watched = false

function signal_watcher.on_ready()
  while true do
    local name = core.signal_next()
    if not name then return end
    local list = signal_handlers[name]
    if list then
      local snapshot = { compat.unpack(list) } -- a handler may remove itself
      for i = 1, #snapshot do
        local ok, err = xpcall(snapshot[i], loop.traceback, name)
        if not ok then loop.report("error in " .. name .. " signal handler: " .. tostring(err)) end
      end
    end
  end
end

-- Call fn(name) whenever signal name ("INT", "TERM", "HUP", ...) arrives.
-- Returns a function that removes the handler; the signal's previous
-- action comes back once its last handler is gone.
function loop.onsignal(name, fn)
  local canonical = name:gsub("^SIG", "")
  local called, ok, message = pcall(core.signal_catch, canonical)
  if not called then
    misuse.arg(1, "onsignal", ("unknown signal '%s'"):format(name))
  end
  if not ok then misuse.raise(message) end
  if not signals_watched then
    local fd, message = core.signal_fd()
    if fd then fd, message = loop.watch(fd, signal_watcher, true, false) end
    if not fd then misuse.raise("cannot watch signals: " .. tostring(message)) end
    signals_watched = true
  end
  local list = signal_handlers[canonical] or {}
  signal_handlers[canonical] = list
  list[#list + 1] = fn
  return function()
    for i = #list, 1, -1 do
      if list[i] == fn then table.remove(list, i) end
    end
    if #list == 0 then
      signal_handlers[canonical] = nil
      core.signal_release(canonical)
    end
  end
end

---------------------------------------------------------------- timers

-- Call fn(obj, handle) at deadline (seconds on core.now()'s clock).  obj is
-- held weakly: when it is collected, the timer does nothing.
function loop.timer(deadline, fn, obj)
  local handle = timers:add(deadline)
  timer_fn[handle] = fn
  timer_obj[handle] = obj == nil and NO_OBJECT or obj
  return handle
end

function loop.cancel(handle)
  if handle then
    timers:cancel(handle)
    timer_fn[handle] = nil
    timer_obj[handle] = nil
  end
end

local function run_timers()
  local t = now()
  while true do
    local handle = timers:pop(t)
    if not handle then return end
    local fn, obj = timer_fn[handle], timer_obj[handle]
    timer_fn[handle], timer_obj[handle] = nil, nil
    if fn and obj then
      fn(obj ~= NO_OBJECT and obj or nil, handle)
    end
  end
end

---------------------------------------------------------------- output

-- obj has output to send: obj:flush() runs at the end of this round, or now
-- when called outside the loop (a plain script's send goes out at once).
function loop.dirty(obj)
  if depth == 0 then
    obj:flush()
  elseif not dirty_set[obj] then
    dirty_set[obj] = true
    dirty[#dirty + 1] = obj
  end
end

-- What writes the output that is not in dirty (loop.before_flush).
local before_flush = nil

-- fn() runs first whenever the loop flushes: loop_io's C-listed sockets
-- (websocket.flush_listed), which may mark objects dirty.
function loop.before_flush(fn) before_flush = fn end

local function flush_dirty()
  while true do
    if before_flush then before_flush() end
    if not dirty[1] then return end
    local i = 1
    while dirty[i] do        -- a flush may mark more objects dirty ...
      local obj = dirty[i]
      dirty[i] = nil
      dirty_set[obj] = nil
      obj:flush()
      i = i + 1
    end
  end                        -- ... or have C list more sockets
end

---------------------------------------------------------------- coroutines

-- What follows a resume of co that returned ok, what.
local function resumed(co, ok, what)
  if what == WAIT and ok then return end -- waits again: the usual case
  if not ok then
    local ended = ours[co]
    ours[co] = nil
    loop.unref()
    local err = take_trace() and debug.traceback(co, tostring(what)) or tostring(what)
    if ended ~= true then return ended(false, err) end
    loop.report("error in a moonws coroutine: " .. err)
  elseif co_status(co) == "dead" then
    local ended = ours[co]
    ours[co] = nil
    loop.unref()
    if ended ~= true then ended(true) end
  else
    -- The coroutine yielded for its own reasons: run it again next round.
    ready[#ready + 1] = co
  end
end

local function resume(co, ...) return resumed(co, co_resume(co, ...)) end

-- Make co runnable in this or the next round (spurious wake-ups are
-- harmless: every waiter re-checks its condition).
function loop.wake(co)
  if ours[co] then
    ready[#ready + 1] = co
  end
end

function loop.wake_all(list)
  for i = 1, #list do
    local co = list[i]
    if ours[co] then ready[#ready + 1] = co end
  end
end

local function run_ready()
  local n = #ready
  if n == 0 then return false end
  local batch = ready
  if batch_depth == 0 and depth == 1 then
    ready, spare = spare, batch -- wake-ups during the batch: the other list
  else
    -- The loop stepped from inside a batch or a dispatch: the list keeps
    -- its identity, as the dispatch in C may still append to it, and the
    -- batch moves out.
    batch = {}
    for i = 1, n do
      batch[i], ready[i] = ready[i], nil
    end
  end
  batch_depth = batch_depth + 1
  -- Each one still suspended and ours is resumed in C: only what is not a
  -- wait again comes back here.  Then the batch is emptied.
  local from = 1
  while true do
    local i, ok, what = resume_ready(batch, from, n, ours, WAIT)
    if not i then break end
    resumed(batch[i], ok, what)
    from = i + 1
  end
  batch_depth = batch_depth - 1
  return true
end

-- Make co one of the loop's coroutines (ours[co]: true or ended), first
-- resumed in the next round.
local function adopt(co, ended)
  ours[co] = ended
  loop.ref()
  ready[#ready + 1] = co
  return co
end

-- Run fn(...) as a coroutine of the loop (first resumed in the next round).
function loop.spawn(fn, ...)
  if type(fn) ~= "function" then
    misuse.arg(1, "spawn", "function expected, got " .. type(fn))
  end
  local args = compat.pack(...)
  return adopt(co_create(function() return fn(compat.unpack(args, 1, args.n)) end), true)
end

-- Run fn(a, b) as a coroutine of the loop, as spawn does; when it returns
-- or raises, ended(true) or ended(false, error with its traceback) is
-- called outside it.  Catching the error in the loop rather than with an
-- xpcall inside keeps an idle coroutine's stack small (a C frame inside
-- reserves stack room for the coroutine's whole life).
function loop.spawn_ended(fn, ended, a, b)
  return adopt(co_create(function() return fn(a, b) end), ended)
end

-- Run fn() as a coroutine of the loop NOW, up to its first wait, so it
-- may wait (sleep, connect, receive ...).  When it returns or raises,
-- done(ok, ...) -- xpcall's results -- is called outside any coroutine:
-- at once when fn never waited, else at the start of a later round.
-- Returns the coroutine while fn is still running, else nil.
function loop.task(fn, done)
  local waited, results = false, nil
  local co = co_create(function()
    local r = compat.pack(xpcall(fn, loop.traceback))
    if waited then
      loop.defer(function() done(compat.unpack(r, 1, r.n)) end)
    else
      results = r
    end
  end)
  ours[co] = true
  loop.ref()
  resume(co)
  waited = true
  if results then
    done(compat.unpack(results, 1, results.n))
    return nil
  end
  return co
end

-- Stop caring for a coroutine of the loop that waits (a task whose
-- result nobody wants any more): it is never resumed again, no longer
-- keeps run() going, and its pending to-be-closed variables are closed
-- (Lua 5.4's coroutine.close; LuaJIT just lets it be collected).
function loop.abandon(co)
  if not co or not ours[co] then return end
  ours[co] = nil
  loop.unref()
  if coroutine.close and co_status(co) == "suspended" then
    local ok, err = coroutine.close(co)
    if not ok then loop.report("error closing an abandoned coroutine: " .. tostring(err)) end
  end
end

-- Call fn(arg) at the start of the next round.
function loop.defer(fn, arg)
  deferred[#deferred + 1] = fn
  deferred[#deferred + 1] = arg == nil and NO_OBJECT or arg
end

local function run_deferred()
  if #deferred == 0 then return false end
  local batch = deferred
  deferred = {}
  for i = 1, #batch, 2 do
    local arg = batch[i + 1]
    batch[i](arg ~= NO_OBJECT and arg or nil)
  end
  return true
end

-- How the caller can wait: "yield" in our coroutines, "drive" on the main
-- thread (or a foreign coroutine) outside the loop, nil inside a handler.
function loop.wait_mode()
  local co, main = co_running()
  if not main and ours[co] then return "yield" end
  if depth == 0 then return "drive" end
  return nil
end

local function wake_timer(co) loop.wake(co) end

-- Wait once: for a wake-up (loop.wake_all(waiters), waiters optional) or
-- until deadline (absolute, optional) passes.  Returns false when the
-- deadline had passed, else true -- which says nothing about why: the
-- caller checks what it waits for again.  Raises inside event handlers.
function loop.park(waiters, deadline, what)
  if deadline and now() >= deadline then return false end
  local co = co_running() -- never in ours when it is the main thread
  if ours[co] then
    if waiters then waiters[#waiters + 1] = co end
    -- Each local below the yield is a stack slot the parked coroutine
    -- keeps: with few, it stays in Lua's initial stack (ws:receive()).
    if deadline then
      local handle = loop.timer(deadline, wake_timer, co)
      co_yield(WAIT)
      loop.cancel(handle)
    else
      co_yield(WAIT)
    end
    if waiters then
      local n = #waiters
      if waiters[n] == co then -- the usual case: one waiter, or the last
        waiters[n] = nil
      else
        for i = n - 1, 1, -1 do
          if waiters[i] == co then table.remove(waiters, i) end
        end
      end
    end
  elseif depth == 0 then
    loop.step(deadline and math.max(0, deadline - now()) or nil)
  else
    misuse.raise((what or "this call") .. " would block inside an event handler; "
      .. "run blocking code in a coroutine (moonws.spawn) instead")
  end
  return true
end
local park = loop.park

-- Wait until cond(arg) is true or deadline passes, as park does: true
-- when cond(arg) held, false on timeout.  (arg spares a caller a closure
-- per wait.)
function loop.wait_until(cond, deadline, waiters, what, arg)
  while not cond(arg) do
    if not park(waiters, deadline, what) then return false end
  end
  return true
end

---------------------------------------------------------------- the round

-- Rounds are numbered so per-round budgets (websocket.lua's drain) can tell
-- a new round from more work in the same one.
local round = 0
function loop.round() return round end

-- How many loop.step calls are running (1: the outermost only).
function loop.depth() return depth end

local function step_once(timeout)
  round = round + 1
  -- Work done before waiting may be what the caller waits for (a deferred
  -- drain filling a receive queue): then look at I/O without blocking.
  local worked = run_deferred()
  worked = run_ready() or worked
  flush_dirty()

  local wait = timeout
  if worked or #ready > 0 or #deferred > 0 or stopping then
    wait = 0
  else
    local next_deadline = timers:next()
    if next_deadline then
      local until_timer = math.max(0, next_deadline - now())
      if wait == nil or until_timer < wait then wait = until_timer end
    end
  end
  local n = assert(poller:wait(wait, ready_fds, ready_events))
  if n > 0 then dispatch(ready_fds, ready_events, n, watchers, dispatch_one, ready) end
  run_timers()
  run_ready()
  flush_dirty()
end

-- One bounded round of ready work; waits at most timeout seconds (nil:
-- until something happens).  Returns true while there is work left.
function loop.step(timeout)
  depth = depth + 1
  -- Inside a round a send may leave its flush to the round's end (C lists
  -- it; flush_dirty writes); outside, a plain script's send goes at once.
  core.flush_batching(true)
  local ok, err = pcall(step_once, timeout)
  depth = depth - 1
  if depth == 0 then core.flush_batching(false) end
  if not ok then error(err, 0) end
  return loop.alive()
end

function loop.run()
  stopping = false
  while not stopping and loop.alive() do
    loop.step()
  end
  stopping = false
end

function loop.stop() stopping = true end

-- For host event loops: a descriptor that turns readable when moonws has
-- work (the epoll fd; nil with the poll backend) ...
function loop.fd() return poller:fd() end

-- ... and the seconds until the next timer (0 when work is ready now, nil
-- when no timer is pending).
function loop.next_timeout()
  if #ready > 0 or #deferred > 0 then return 0 end
  local next_deadline = timers:next()
  if not next_deadline then return nil end
  return math.max(0, next_deadline - now())
end

-- The cqueues polling protocol (docs/DESIGN.md 1.7) on every moonws object:
-- cqueues.poll(obj) returns when the loop has work; then moonws.step(0).
-- The object is ignored: whichever one is polled, the loop is what waits.
loop.polling = {
  pollfd = function() return poller:fd() end,
  events = function() return "r" end,
  timeout = function() return loop.next_timeout() end,
}

loop.now = now
loop.backend = function() return poller:backend() end

return loop

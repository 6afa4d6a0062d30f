-- moonws.resty_io -- the driver of nginx cosockets for websocket objects
-- (the interface is written at the head of moonws.websocket); moonws.resty
-- is the public front that makes the objects.
--
-- What differs from moonws's loop, and why (one place for it):
--   * No loop runs the socket: cosockets yield the request's coroutine, so
--     reading happens only while a call waits on the socket (receive(),
--     close()), and so do timers (keepalive, close_timeout): they are
--     deadlines checked between reads.  Hence no event handlers (nothing
--     would run them), no pause/resume (reading already happens only on
--     demand), no descriptor to poll.
--   * Writes are synchronous: flush() sends until the kernel has the
--     bytes, and a big compressed message is deflated a slice at a time
--     with ngx.sleep(0) between slices, so the worker's other requests run.
--   * Light threads (ngx.thread.spawn) may share a socket the way cosockets
--     allow it: one reads while others send; a send that finds another one
--     writing leaves its frame queued for that writer; close() from a
--     thread while another is inside receive() waits on a semaphore for
--     the reader to see the peer's answer.
-- Per-socket data lives in st.drv: the cosocket, who is reading or
-- writing, the deadlines, the tasks for later.

local ngx = ngx -- luacheck: ignore (the nginx global)
local E = require "moonws.errors"
local misuse = require "moonws.misuse"
local websocket = require "moonws.websocket"

local FOREVER = 3600 -- seconds one cosocket wait lasts when nothing bounds it (re-armed)

local resty_io = {
  name = "moonws.resty", type_name = "moonws.resty.websocket", handlers = false,
  traceback = debug.traceback,
  unsupported = {
    pause = "reading happens only inside receive()",
    resume = "reading happens only inside receive()",
    getfd = "cosockets have no descriptor",
    addEventListener = "there is no loop to run listeners: call receive() in the handler",
    removeEventListener = "there is no loop to run listeners: call receive() in the handler",
    pollfd = "there is no moonws loop inside nginx",
    events = "there is no moonws loop inside nginx",
    timeout = "there is no moonws loop inside nginx",
  },
}

local function now() return ngx.now() end
resty_io.now = now

local function ms(seconds)
  local v = math.floor(seconds * 1000 + 0.5)
  return v < 1 and 1 or v
end
resty_io.ms = ms

function resty_io.report(message) ngx.log(ngx.ERR, "moonws: ", message) end

---------------------------------------------------------------- sockets

-- Drop the cosocket once no light thread is inside a call on it.  A
-- client's is closed; the raw request socket has no close in the http
-- module: nginx closes it when the handler returns.
local function release_sock(st)
  local d = st.drv
  if d.sock and not d.reading and not d.writing then
    if st.role == "client" then d.sock:close() end
    d.sock = nil
  end
end

-- Wake the light threads waiting in wait_turn.
local function wake(st)
  local sema = st.drv.sema
  if sema and sema:count() < 0 then sema:post(-sema:count()) end
end
resty_io.wake = wake

-- Another light thread is reading: wait (at most seconds) until it stops
-- or the socket is CLOSED.
local function wait_turn(st, seconds)
  local d = st.drv
  if not d.sema then d.sema = require("ngx.semaphore").new(0) end
  d.sema:wait(seconds)
end

---------------------------------------------------------------- timers and tasks

function resty_io.timer(st, key, deadline, fn)
  local timers = st.drv.timers
  timers[key] = deadline and { deadline, fn } or nil
end

local function next_deadline(st)
  local soonest
  for _, t in pairs(st.drv.timers) do
    if not soonest or t[1] < soonest then soonest = t[1] end
  end
  return soonest
end

local function run_due_timers(st)
  local timers, t = st.drv.timers, now()
  for key, timer in pairs(timers) do
    if timer[1] <= t and timers[key] == timer then
      timers[key] = nil
      timer[2](st)
    end
  end
end

function resty_io.later(st, fn)
  local later = st.drv.later
  later[#later + 1] = fn
end

local function run_later(st)
  local later = st.drv.later
  if #later == 0 then return false end
  st.drv.later = {}
  for i = 1, #later do later[i](st) end
  return true
end

function resty_io.round(st) return st.drv.round end

---------------------------------------------------------------- output

-- Write everything queued (a big compressed message a slice at a time).
-- One light thread writes at a time (cosockets refuse a second writer):
-- another one finding it busy leaves its bytes to it.
function resty_io.flush(st)
  local d = st.drv
  if d.writing then return true end
  local ok, err = true, nil
  d.writing = true
  while st.conn and d.sock do
    websocket.frame_queued(st)
    local conn = st.conn
    if not conn then break end
    if conn:buffered() > 0 then
      local out = conn:take_output()
      d.in_flight = #out
      ok, err = d.sock:send(out)
      d.in_flight = 0
      if not ok then break end
    elseif st.outq then -- more of a big message: let others run first
      d.round = d.round + 1
      ngx.sleep(0)
    else
      break
    end
  end
  d.writing = false
  if not ok then
    websocket.io_error(st, "send failed: " .. tostring(err), err == "timeout" and E.TIMEOUT or E.IO)
  elseif st.conn then
    websocket.flushed(st, st.conn:buffered())
  end
  if st.state == websocket.CLOSED then
    release_sock(st)
    if not ok then return nil, st.err_message or E.CLOSED, st.err_name or E.CLOSED end
  end
  return true
end

function resty_io.in_flight(st) return st.drv.in_flight end

---------------------------------------------------------------- input

-- Wait for bytes from the peer, at most until deadline (nil: no limit) or
-- the next timer, and feed them to the core.  true: bytes fed; false: a
-- wait ran out (due timers have run); nil: the socket is CLOSED now.
local function read_more(st, deadline)
  local d = st.drv
  local limit = deadline
  local due = next_deadline(st)
  if due and (not limit or due < limit) then limit = due end
  local wait = limit and limit - now() or FOREVER
  if wait > 0 then
    -- A close or terminate from another light thread cannot cut this wait
    -- short: bound it, so the reader notices within close_timeout.
    local o = st.opts
    d.sock:settimeouts(ms(o.timeout), ms(o.timeout), ms(math.min(wait, o.close_timeout)))
    d.reading = true
    local data, err = d.sock:receiveany(o.max_step_bytes)
    d.reading = false
    if st.state == websocket.CLOSED then -- finished by another light thread meanwhile
      release_sock(st)
      return nil
    end
    if data then
      local ok, message, name = st.conn:feed(data)
      if not ok then websocket.fail(st, message, name) return nil end
      return true
    end
    if err == "closed" then
      websocket.eof(st)
      return nil
    elseif err ~= "timeout" then
      websocket.io_error(st, "receive failed: " .. tostring(err), E.IO)
      return nil
    end
  end
  run_due_timers(st)
  if st.state == websocket.CLOSED then return nil end
  return false
end

-- One turn of the pump: tasks for later, events already received, else
-- (cond() still false) one read.  false when deadline passed.
local function pump_once(st, deadline, cond)
  local d = st.drv
  if run_later(st) then return true end
  d.round = d.round + 1
  if not websocket.drain(st) then
    -- A budget ran out (a bomb being inflated): let the worker's other
    -- requests run before the next slice.
    ngx.sleep(0)
    return true
  end
  if st.state == websocket.CLOSED or cond() then return true end
  local got = read_more(st, deadline)
  if got == false and deadline and now() >= deadline then return false end
  return true
end

function resty_io.can_wait() return true end

-- Wait until cond() holds, reading meanwhile; another light thread that
-- is already reading does it for us.
function resty_io.wait(st, cond, deadline, what, arg)
  local d = st.drv
  if arg ~= nil then
    local test = cond
    cond = function() return test(arg) end
  end
  if what == "receive" and d.pumping == "receive" then
    misuse.raise("receive: another light thread is already reading this websocket")
  end
  while not cond() do
    if st.state == websocket.CLOSED then return cond() end
    if d.pumping then -- the reader sees what we wait for
      local left = (deadline or st.close_deadline or now() + FOREVER) - now()
      if left <= 0 then return false end
      wait_turn(st, left)
    else
      d.pumping = what
      local ok, going = pcall(pump_once, st, deadline, cond)
      d.pumping = nil
      wake(st) -- a thread waiting to read may take over
      if not ok then error(going, 0) end
      if not going then return false end
    end
  end
  return true
end

-- receive()'s wait: the general one (the reader reads until a message).
function resty_io.wait_message(st, deadline)
  return resty_io.wait(st, websocket.receivable, deadline, "receive", st)
end

---------------------------------------------------------------- the rest

function resty_io.reading() end -- reading happens only when someone waits
function resty_io.keep() end     -- the handler's code holds the socket

-- A client, after failing: the server ends TCP first (RFC 6455 7.1.1);
-- read and drop what still comes, bounded by close_timeout, then close.
local function await_close(st)
  local d = st.drv
  local limit = now() + st.opts.close_timeout
  while d.sock and not d.reading do
    local left = limit - now()
    if left <= 0 then break end
    d.sock:settimeouts(ms(st.opts.timeout), ms(st.opts.timeout), ms(left))
    local data = d.sock:receiveany(st.opts.max_step_bytes)
    if not data then break end
  end
end

function resty_io.release(st, how)
  if how == "linger" and st.role == "client" then await_close(st) end
  release_sock(st)
end

function resty_io.closed(st) wake(st) end

-- A socket object on this driver for the cosocket sock and conn.
function resty_io.new(role, opts, url, sock, conn)
  local ws, st = websocket.new(role, opts, url, resty_io)
  local d = st.drv
  d.sock, d.timers, d.later, d.round, d.in_flight = sock, {}, {}, 0, 0
  websocket.attach(st, conn)
  -- From here on, options.timeout bounds each send (nginx's send timer);
  -- reads set their own.
  sock:settimeouts(ms(opts.timeout), ms(opts.timeout), ms(FOREVER))
  return ws, st
end

return resty_io

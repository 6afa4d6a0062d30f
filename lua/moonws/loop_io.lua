-- moonws.loop_io -- the driver of moonws's own loop for websocket objects
-- (the interface is written at the head of moonws.websocket): nonblocking
-- reads and writes on the connection's descriptor, watched by the loop's
-- poller; one write per socket per round ("corking"); timers on the
-- loop's heap; waiting by yielding a coroutine or driving the loop.
-- moonws.client and moonws.server are the opening phases on top of it.
--
-- Its per-socket data lives in st.drv: the descriptor and the interest
-- set on it, the phase's readiness handler, the timers, the coroutines
-- waiting on the socket.  The loop holds st.drv weakly (a watcher, a
-- dirty object), so a socket nobody references and nothing waits on is
-- collected, and its collection closes the connection.

local E = require "moonws.errors"
local core = require "moonws.core"
local loop = require "moonws.loop"
local websocket = require "moonws.websocket"

local now, park = loop.now, loop.park
local readable, writable = loop.readable, loop.writable
local OPEN = websocket.OPEN

local loop_io = {
  name = "moonws", type_name = "moonws.websocket", handlers = true, reads = true,
  traceback = loop.traceback, report = loop.report, now = now,
}

local kept = {} -- st -> true: sockets the loop keeps alive (handlers set)

---------------------------------------------------------------- interest

-- d.interest: what the poller watches for, 1 read + 2 write, in one field
-- that is absent for the usual 1 (reading only) and false until the socket
-- is watched: an idle connection's drv stays within 4 fields (a Lua table
-- sizes its fields in powers of two).
local function interest_of(d)
  local interest = d.interest
  if interest == nil then return 1 end
  return interest or -1
end

local function set_interest(st, want_read, want_write)
  local d = st.drv
  local interest = (want_read and 1 or 0) + (want_write and 2 or 0)
  if d.fd and interest_of(d) ~= interest then
    if interest == 1 then d.interest = nil else d.interest = interest end
    local ok, message, name = loop.watch(d.fd, d, want_read, want_write)
    if not ok and not d.watch_error then
      -- The poller refused the socket (out of memory, max_user_watches):
      -- it fails alone, in the next round, so no caller is cut off
      -- midway.  An operator should hear of it even when no handler is
      -- set (a server's socket still in its handshake has none).
      d.watch_error = "cannot watch the socket: " .. tostring(message)
      loop.defer(function(s)
        if not s.onerror then loop.report(d.watch_error) end
        websocket.fail(s, d.watch_error, name or E.IO)
      end, st)
    end
  end
end
loop_io.set_interest = set_interest

-- Whether the poller watches st for writing.
local function writing(st) return interest_of(st.drv) >= 2 end
loop_io.writing = writing

function loop_io.reading(st, on)
  set_interest(st, on, writing(st))
end

---------------------------------------------------------------- output

-- Write what is queued; the loop calls it for dirty sockets at the end of
-- a round, and the readiness handler when the socket turns writable.
local function write(st)
  local conn = st.conn
  if not conn then return end
  if st.outq then
    websocket.frame_queued(st)
    if st.conn ~= conn then return end
  end
  local left, want, name = conn:flush()
  if not left then return websocket.io_error(st, want, name) end
  local d = st.drv
  if left == 0 and st.state == OPEN and not st.backlogged and not st.outq
      and not st.drain_armed then
    -- The common case, inlined: all written, nothing to decide but waking
    -- the senders that wait for room (not the receivers: nothing came).
    if interest_of(d) >= 2 then set_interest(st, websocket.reading_wanted(st), false) end
    local waiters = d.send_waiters
    if waiters and #waiters > 0 then
      loop.wake_all(waiters)
    else
      conn:plain_flush(true) -- until something is to decide, C may write
    end
    return
  end
  conn:plain_flush(false)
  local want_write = left > 0 and want == "write"
  local reading = websocket.reading_wanted(st) or want == "read"
  if (want_write and 2 or 0) + (reading and 1 or 0) ~= interest_of(d) then
    set_interest(st, reading, want_write)
  end
  websocket.flushed(st, left)
end
loop_io.write = write

-- Sockets a send listed for the round's end (C writes them) come first.
loop.before_flush(websocket.flush_listed)

-- The dirty object of a socket is its drv: drv:flush() writes.
local function drv_flush(d) return write(d.st) end

function loop_io.flush(st)
  if st.conn then loop.dirty(st.drv) end
  return true
end

---------------------------------------------------------------- lingering

-- Closing a socket whose input is not all read makes the kernel send a
-- reset, which can destroy our last bytes (a close frame, a 4xx answer)
-- before the peer reads them.  So when we end a connection, the sending
-- side is shut down (FIN) and input is read and dropped until the peer
-- closes too, or LINGER seconds pass.  The WebSocket is already CLOSED;
-- this only finishes TCP politely, and does not keep run() going.
local LINGER = 2
local lingering = {}

local function end_linger(w)
  if lingering[w] then
    lingering[w] = nil
    loop.cancel(w.timer)
    loop.unwatch(w.fd)
    w.conn:release()
  end
end

local function on_linger_ready(w)
  local n = w.conn:read()
  if not n then return end_linger(w) end -- the peer closed, or failed
  w.conn:discard()
end

local function linger(conn, fd)
  local w = { conn = conn, fd = fd, on_ready = on_linger_ready }
  conn:shutdown()
  lingering[w] = true
  w.timer = loop.timer(now() + LINGER, end_linger, w)
  if not loop.watch(fd, w, true, false) then end_linger(w) end
end

function loop_io.release(st, how)
  local conn, d = st.conn, st.drv
  if d.lookup_cancel then d.lookup_cancel(st) end
  if not conn then return end
  -- Writes are made once a round, so a close echo queued in this round may
  -- still be waiting when the peer's end of stream finishes the socket in
  -- the same round: one nonblocking try gives it to the kernel first.
  if how ~= "now" then conn:flush() end
  if how == "linger" and d.fd then
    linger(conn, d.fd) -- its watcher takes the descriptor over
  else
    if d.fd then loop.unwatch(d.fd) end
    -- After a closing handshake, end TLS properly too (one nonblocking try).
    if how == "clean" then conn:shutdown() end
    conn:release()
  end
  d.fd = nil
end

---------------------------------------------------------------- input

-- The readiness handler of an open (or closing) socket.
local function on_ready_open(st, events)
  if events >= 2 then write(st) end -- writable(events), inlined: once per wake-up
  -- Read and dispatch (TLS records the poller cannot see included).
  if events % 2 == 1 and st.conn then websocket.drain(st, true) end
end

-- What both sides' handshake handlers do first: send what is queued, then
-- read.  Returns true when new bytes wait to be parsed; false, message,
-- name when the stream ended (message nil at end of stream) or failed;
-- nothing when there is nothing to parse yet.
function loop_io.handshake_read(st, events)
  if writable(events) then
    write(st)
    if st.state ~= websocket.CONNECTING then return nil end
  end
  if not readable(events) then return nil end
  local got = nil
  repeat -- TLS may hold more decrypted bytes than one read takes
    local n, message, name = st.conn:read()
    -- The end right behind bytes (a TLS answer and its close_notify):
    -- those are parsed first; the end is read again next time.
    if n == false then return got or false end
    if n == nil then
      if got then return true end
      return false, message, name
    end
    if n > 0 then got = true end
  until n == 0 or not st.conn:pending()
  return got
end

---------------------------------------------------------------- the phases

-- The loop calls drv:on_ready(events); the phase decides what it means.
-- A collected socket's conn is gone with it, but LuaJIT (Lua 5.1's rules)
-- may still hand its drv, kept for the finalizer, to a weak table -- and
-- Windows reports the closed socket as ready: let go of it.
local function on_ready_collected(st)
  local d = st.drv
  return loop.forget(d.fd, d)
end

-- One field read per wake-up of an open socket: its phase is the default
-- (nil), and collection sets a phase too (loop_io.collected).
local function drv_on_ready(d, events)
  local phase = d.phase
  if phase == nil then return on_ready_open(d.st, events) end
  if d.collected then phase = on_ready_collected end
  return phase(d.st, events)
end

-- Every drv is the loop's watcher and dirty object for its socket: the
-- loop calls drv:on_ready(events) and drv:flush(); shared, not per socket.
-- An open socket's drv has a metatable of its own: C's dispatch pumps the
-- sockets it sees, and nothing else (collection sets drv_mt back).
local drv_methods = { flush = drv_flush, on_ready = drv_on_ready }
local drv_mt = { __index = drv_methods }
local open_drv_mt = { __index = drv_methods }

---------------------------------------------------------------- dispatch

-- The loop's ready descriptors go through core's dispatch: an open
-- socket woken only for reading is pumped in C, with no Lua between the
-- poller and its onmessage (the rest of on_ready_open is for writing, and
-- drain's is in websocket.pumped), and one protected call for them all,
-- not one each.  What C hands back goes the Lua way, in order.
local dispatch_c = core.dispatcher(open_drv_mt)
-- Whose handler runs in C: current[1], the socket's state (a handler
-- that steps the loop gets a table of its own).
local current = {}

-- The index of st's descriptor in fds[from..n]; from - 1 when it is gone
-- (its handler closed it): the rest is dispatched from there again, and
-- one woken only for reading may be pumped twice, which is harmless.
local function index_of(st, fds, from, n)
  local fd = st.drv.fd
  for i = from, n do
    if fds[i] == fd then return i end
  end
  return from - 1
end

local function dispatch(fds, events, n, watchers, dispatch_one, ready)
  local cur = loop.depth() == 1 and current or {}
  local from, round = 1, loop.round()
  while from <= n do
    local ok, i, st, kind, a, b, c = xpcall(dispatch_c, loop.traceback, fds, events, from, n,
      watchers, round, cur, ready)
    if not ok then
      local err = i
      st = cur[1]
      i = index_of(st, fds, from, n)
      websocket.pump_failed(st, err)
    elseif not i then
      break
    elseif st then
      websocket.pumped(st, kind, a, b, c)
    else
      dispatch_one(fds[i], events[i])
    end
    from = i + 1
  end
  cur[1] = nil -- no socket held past its round
end
loop.set_dispatch(dispatch)

-- A new socket object on this driver (CONNECTING; counted by run()).
function loop_io.new(role, opts, url)
  local ws, st = websocket.new(role, opts, url, loop_io)
  local d = setmetatable(st.drv, drv_mt)
  d.st = st -- counted by run() until uncount() (d.uncounted)
  loop.ref()
  return ws, st
end

-- Give st its connection (an fd exists) and the phase's readiness handler.
function loop_io.attach(st, conn, phase, want_read, want_write)
  websocket.configure(conn, st.opts)
  websocket.attach(st, conn)
  local d = st.drv
  d.fd, d.phase, d.interest = conn:fd(), phase, false
  set_interest(st, want_read, want_write)
end

-- Drop st's connection before it opened (a connect attempt failed).
function loop_io.detach(st)
  local d = st.drv
  if d.fd then loop.unwatch(d.fd) end
  d.fd = nil
  websocket.detach(st):release()
end

-- The connection left the handshake phases: from now on, frames.
-- It gets a drv of its own: the handshake's fields (its phase, timers,
-- task) grew the table, and a Lua table keeps its room when fields go; a
-- fresh one sized for what is left keeps an idle connection small.
function loop_io.open_phase(st)
  local old = st.drv
  local d = setmetatable(core.sized_table(4), open_drv_mt) -- fd, st, server or waiters
  for k, v in next, old do d[k] = v end
  d.phase = nil -- the open phase's handler is drv_on_ready's default
  websocket.set_drv(st, d)
  if d.fd then loop.rewatch(d.fd, old, d) end
end

-- A different readiness handler for the phase to come (TLS, handshake).
function loop_io.set_phase(st, phase)
  setmetatable(st.drv, drv_mt).phase = phase
end

---------------------------------------------------------------- the rest of the interface

-- Coroutines waiting on the socket, in two lists made on first use:
-- senders waiting for room, woken when output drains, and the others
-- (receive, close), woken when input or the state changes.  One list
-- would resume every receiver at each write for nothing.
local function waiter_list(d, key)
  local list = d[key]
  if not list then
    list = {}
    d[key] = list
  end
  return list
end

function loop_io.wait(st, cond, deadline, what, arg)
  local key = what == "send" and "send_waiters" or "waiters"
  return loop.wait_until(cond, deadline, waiter_list(st.drv, key), what, arg)
end

-- receive()'s wait once it found nothing: one wake-up of the socket's
-- waiters, no condition to call (receive looks again itself).  The list
-- is there but for the first wait: no call for it on the hot path.
function loop_io.wait_message(st, deadline)
  local d = st.drv
  return park(d.waiters or waiter_list(d, "waiters"), deadline, "receive")
end

function loop_io.can_wait() return loop.wait_mode() ~= nil end

function loop_io.wake(st, which)
  local d = st.drv
  local waiters, senders = d.waiters, d.send_waiters
  if which ~= "send" and waiters and #waiters > 0 then loop.wake_all(waiters) end
  if senders and #senders > 0 then loop.wake_all(senders) end
end

-- Timers by key, in a table that exists only while one is armed.
local function forget_timer(d, key, handle)
  local timers = d.timers
  if timers and timers[key] == handle then
    timers[key] = nil
    if next(timers) == nil then d.timers = nil end
  end
end

function loop_io.timer(st, key, deadline, fn)
  local d = st.drv
  local timers = d.timers
  local old = timers and timers[key]
  if old then
    loop.cancel(old)
    forget_timer(d, key, old)
  end
  if deadline then
    local handle
    handle = loop.timer(deadline, function(s)
      forget_timer(s.drv, key, handle)
      if not s.drv.collected then fn(s) end -- see drv_on_ready
    end, st)
    timers = d.timers
    if not timers then
      timers = {}
      d.timers = timers
    end
    timers[key] = handle
  end
end

function loop_io.later(st, fn) loop.defer(fn, st) end

loop_io.round = loop.round

function loop_io.keep(st, on) kept[st] = on or nil end

local function uncount(st)
  local d = st.drv
  if not d.uncounted then
    d.uncounted = true
    loop.unref()
  end
end

-- A server's sockets tell its state (ss.on_closed), not a field of each.
function loop_io.closed(st)
  uncount(st)
  local ss = st.drv.server
  if ss and ss.on_closed then ss.on_closed(st) end
end

-- Counted by the server's stats (moonws.topics), on the server's state:
-- a field per connection would cost every idle connection.
function loop_io.handler_failed(st)
  local ss = st.drv.server
  if ss and ss.on_handler_error then ss.on_handler_error(ss) end
end

function loop_io.collected(st)
  uncount(st)
  local d = st.drv
  d.collected = true
  setmetatable(d, drv_mt).phase = on_ready_collected
  if d.lookup_cancel then d.lookup_cancel(st) end
end

-- cqueues.poll(ws): the loop's polling protocol on every socket.
websocket.add_methods(loop.polling)

return loop_io

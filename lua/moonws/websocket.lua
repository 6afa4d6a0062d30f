-- moonws.websocket -- THE WebSocket object (docs/DESIGN.md 2.3:
-- one object, two drivers): its state machine, its public API and argument checks,
-- the handshake policy and the event dispatch live here, once, for every
-- front.  How bytes move is a driver's job: moonws.loop_io on moonws's own
-- loop (with moonws.client and moonws.server for the phases before OPEN),
-- moonws.resty_io on nginx cosockets.  Only functions of this module change
-- the object's state.
--
-- The public object is an empty proxy whose metatable serves methods and
-- read-only properties, so assigning a handler (ws.onmessage = f) passes
-- through __newindex and the driver can keep the socket alive while
-- handlers are set.  The state lives in a private table (st) reached by a
-- private key.  A driver reads st.conn, st.opts, st.state and st.role and
-- keeps its own per-socket data in st.drv (a new table for it through
-- websocket.set_drv); it never writes other fields.
--
-- State rules (the browser's): onclose fires exactly once, after onerror
-- when there was an error; wasClean is true only when both close frames
-- were exchanged before the TCP connection ended; code is the peer's close
-- code (1005 when its frame had none) or 1006 when no close frame came.
--
-- The driver interface (a table of functions, each taking st first):
--   flush(st) -> true | nil, message, name
--                         output was queued on st.conn: write it now, or
--                         at the end of the loop round; before writing it
--                         calls websocket.frame_queued(st), after it
--                         websocket.flushed(st, bytes_left)
--   wait(st, cond, deadline, what [, arg]) -> true | false
--                         wait until cond(arg) holds (false: deadline, an
--                         absolute now(), passed); raises where waiting is
--                         not possible (inside an event handler)
--   wait_message(st, deadline) -> true | false
--                         receive()'s wait when it found nothing: at least
--                         until something may have changed for it (a
--                         wake), or as wait(st, websocket.receivable,
--                         deadline, "receive", st); receive looks again
--   can_wait(st)          whether wait would wait rather than raise
--   wake(st [, "send"])   what waiters wait for may have changed ("send":
--                         only room to send)
--   timer(st, key, deadline, fn)  arm the socket's timer key to call
--                         fn(st) at deadline; deadline nil cancels it
--   reading(st, on)       whether to read from the peer (pause, a full
--                         receive queue, send backpressure)
--   later(st, fn)         call fn(st) soon, from the driver (not inside
--                         the current call)
--   round(st) -> n        the driver's round, for per-round budgets
--   release(st, how)      end the transport: "now"; "clean" (after the
--                         closing handshake); "linger" (the peer may still
--                         be sending: let our last bytes reach it)
--   keep(st, on)          the socket must stay alive (handlers set)
--   report(message)       an error no handler took
--   now() -> seconds      the driver's clock
-- and fields: name and type_name (for messages and tostring), traceback
-- (the message handler for user callbacks), handlers (false: the front
-- cannot run event handlers), unsupported (method name -> why the front
-- lacks it), reads (true: st.conn reads from its transport itself, so
-- drain may read), and optional functions in_flight(st) (bytes handed to
-- the transport and not yet written), closed(st) (the socket became
-- CLOSED), collected(st) (the object was collected) and handler_failed(st)
-- (a handler raised: for counters).
-- The driver calls websocket.drain(st, reads) when bytes wait in st.conn
-- or (reads) in its transport (or pumps st.conn itself, many sockets under
-- one protected call, then calls websocket.pumped(st, results...) when the
-- pump returned something, and websocket.pump_failed(st, error) when a
-- handler raised in it),
-- websocket.eof(st) at end of stream, websocket.io_error(st, message,
-- name) when the transport failed, and the functions of the opening phase
-- (opened, announce, fail, refusing).

local compat = require "moonws.compat"
local core = require "moonws.core"
local E = require "moonws.errors"
local latency = require "moonws.latency"
local listeners = require "moonws.listeners"
local log = require "moonws.log"
local misuse = require "moonws.misuse"
local options = require "moonws.options"

local CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3

local websocket = {
  CONNECTING = CONNECTING, OPEN = OPEN, CLOSING = CLOSING, CLOSED = CLOSED,
}

-- The key of an object's private state (ws[PRIV], srv[PRIV]).  A short
-- string: Lua finds it by its interned address, where a table key goes
-- through the general hash (receive() and send look it up per message).
-- It hides the state no less than a table did: next() hands either out.
local PRIV = "\0moonws"
websocket.PRIV = PRIV

local HANDLERS = {
  onopen = true, onmessage = true, onclose = true, onerror = true, onping = true, onpong = true,
  ondrain = true,
}

-- Timers a socket may have armed (keys of drv.timer).
local TIMERS = { "connect", "close", "ping", "pong", "backlog" }

local methods, getters = {}, {}
local mt = { __name = "moonws.websocket" }
websocket.mt = mt

---------------------------------------------------------------- events

local function report_handler_error(st, name, err)
  if st.io.handler_failed then st.io.handler_failed(st) end
  local message = ("error in %s handler: %s"):format(name, tostring(err))
  local onerror = st.onerror
  if name ~= "onerror" and onerror then
    local ok, err2 = xpcall(onerror, st.io.traceback,
      { type = "error", message = message, error = E.HANDLER, target = st.ws })
    if ok then return end
    message = message .. "\n(onerror failed too: " .. tostring(err2) .. ")"
  end
  st.io.report(message)
end
listeners.report = report_handler_error

-- Call handler `name` of st with event; errors never escape.
local function fire(st, name, event)
  local handler = st[name]
  if not handler then return false end
  event.target = st.ws
  local ok, err = xpcall(handler, st.io.traceback, event)
  if not ok then report_handler_error(st, name, err) end
  return true
end

local function handlers_set(st)
  return st.onopen or st.onmessage or st.onclose or st.onerror or st.onping or st.onpong
    or st.ondrain
end

local function rekeep(st)
  st.io.keep(st, st.state ~= CLOSED and handlers_set(st) and true or false)
end

---------------------------------------------------------------- reading

-- Reading stops while the application pauses, while receive()'s queue is
-- full, and while send_limit bytes wait for a peer that does not read
-- what we send (a peer must not make us buffer without bound for it).
local function reading_wanted(st)
  return not st.paused and not st.queue_paused and not st.backlogged
end
websocket.reading_wanted = reading_wanted

-- Messages waiting for receive() (or for onmessage, set after they came):
-- st.queue = {head, tail, [i] = data, binary = {[i] = true} for binary
-- messages (false until the first), slow = whether taking a message must
-- go pop_message's way (reading paused for a full queue, or a failure
-- held behind the messages)}, made on first use (by conn:pump too).  A
-- text message costs one table write, and receive()'s common case reads
-- only fields that are there.
local function queued(st)
  local q = st.queue
  return q and q.tail - q.head + 1 or 0
end

-- The gate: what the C hot path (conn:pump, send_fast) may do without
-- coming back here.  It repeats the common outcome of this module's rules
-- and must be recomputed whenever one of its inputs changes: the state,
-- onmessage, the receive queue being empty, reading (pause, a full queue,
-- backpressure) and the deflating send queue.
local GATE_STOP, GATE_EACH, GATE_DELIVER, GATE_QUEUE = 0, 1, 2, 3

-- Drain st once more in the next round (once, however often asked).
local function drain_next_round(st)
  if not st.drain_deferred then
    st.drain_deferred = true
    st.io.later(st, websocket.drain_later)
  end
end

local function regate(st)
  local conn = st.conn
  if not conn then return end
  local mode, send_open = GATE_EACH, false
  if not reading_wanted(st) then
    mode = GATE_STOP
  elseif st.state == OPEN then
    if not st.onmessage then
      mode = GATE_QUEUE
    elseif not st.delivering and queued(st) == 0 then
      mode = GATE_DELIVER
    end
  end
  if st.state == OPEN then send_open = not st.outq end
  local code = send_open and mode + 4 or mode
  local old = st.gate
  if old ~= code then
    st.gate = code
    conn:gate(mode, send_open)
    -- Reading starts again: bytes TLS decrypted before it stopped get no
    -- readiness event of their own, so pump them in the next round.
    if old and old % 4 == GATE_STOP and mode ~= GATE_STOP and st.io.reads then
      drain_next_round(st)
    end
  end
end

local function refresh_reading(st)
  if st.conn and st.state ~= CONNECTING then
    st.io.reading(st, reading_wanted(st))
    regate(st)
  end
end

---------------------------------------------------------------- deflating sends

-- A big message that goes compressed costs its deflate (about 3 ms a MiB):
-- sent whole, an echo of a peer's 16 MiB message would stall every other
-- connection for 50 ms.  So it is deflated max_step_bytes a round and goes
-- out as fragments; messages sent after it, and a close, wait behind it in
-- order.  What waits counts in bufferedAmount and against send_limit.

local function unsent(st)
  local in_flight = st.io.in_flight
  return st.conn:buffered() + (st.outq_bytes or 0) + (in_flight and in_flight(st) or 0)
end

local function outq_push(st, data, binary)
  local q = st.outq
  if not q then
    q = { head = 1, tail = 0 }
    st.outq, st.outq_bytes = q, 0
    st.conn:hold_fanout(true) -- a fan-out hands this socket back, to queue here
    regate(st) -- sends queue behind it now
  end
  q.tail = q.tail + 1
  q[q.tail] = { data = data, binary = binary, pos = 1 }
  st.outq_bytes = st.outq_bytes + #data
end

local function outq_drop(st)
  st.outq, st.outq_bytes, st.close_after = nil, nil, nil
  if st.conn then st.conn:hold_fanout(false) end
  regate(st)
end

---------------------------------------------------------------- ending

-- The connection is over: free it (how: as drv.release takes it; by
-- default "clean" after a closing handshake, else "now"), and fire
-- onclose (once).
local function finish(st, code, reason, clean, how)
  if st.state == CLOSED then return end
  local io = st.io
  for _, key in ipairs(TIMERS) do io.timer(st, key, nil) end
  if st.conn then
    st.final_counters = st.conn:counters()
    io.release(st, how or (clean and "clean" or "now"))
    st.conn = nil
    core.send_forget(st.ws)
  end
  outq_drop(st)
  st.state = CLOSED
  st.close_code, st.close_reason, st.was_clean = code, reason or "", clean
  if io.closed then io.closed(st) end
  if st.opts.log then
    log.emit(st, "closed", ("code %d%s, %s"):format(code,
      st.close_reason ~= "" and (" %q"):format(st.close_reason) or "",
      clean and "clean" or "not clean"), { code = code, reason = st.close_reason, clean = clean })
  end
  fire(st, "onclose", { type = "close", code = code, reason = st.close_reason, wasClean = clean })
  io.keep(st, false)
  io.wake(st)
end

-- Record an error and fire onerror (before the onclose that follows).
-- With a code (a close frame carrying it goes to the peer), the message
-- says so: what the application reads matches what the peer sees.
local function error_event(st, message, name, code)
  if code then message = ("%s; closing with %d"):format(message, code) end
  if st.opts.log then log.emit(st, "error", message, { error = name, code = code }) end
  st.err_message, st.err_name = message, name
  local r = st.refusal -- a refused handshake's answer (moonws.response)
  fire(st, "onerror", { type = "error", message = message, error = name, code = code,
    status = r and r.status, headers = r and r.headers, body = r and r.body })
end

-- A failure that ends the connection at once (no closing handshake);
-- onclose gets code (default 1006; 1015 for TLS failures).
local function abort(st, message, name, code)
  if st.state == CLOSED then return end
  if message then error_event(st, message, name) end
  finish(st, code or 1006, "", false)
end
websocket.fail = abort

-- The server refused the handshake with an HTTP answer: the error event
-- and connect's extra results carry its status, headers and body start.
function websocket.fail_refused(st, message, name, status, headers, body)
  st.refusal = { status = status, headers = headers, body = body }
  abort(st, message, name)
end

-- A refused handshake's status, headers, body (nothing when there was
-- none): what moonws.connect returns after nil, message, name.
function websocket.refusal(st)
  local r = st.refusal
  if r then return r.status, r.headers, r.body end
end

local function on_close_timeout(st)
  if st.state == CLOSED then return end
  local sent, received = false, false
  if st.conn then sent, received = st.conn:state() end
  if sent and received then
    -- Both close frames went by; only the peer's TCP close is missing.
    finish(st, st.close_code, st.close_reason, true)
  else
    finish(st, 1006, "", false)
  end
end

local function enter_closing(st)
  if st.state == OPEN or st.state == CONNECTING then
    st.state = CLOSING
    regate(st)
    st.io.timer(st, "ping", nil)
    st.io.timer(st, "pong", nil)
    st.close_deadline = st.io.now() + st.opts.close_timeout
    st.io.timer(st, "close", st.close_deadline, on_close_timeout)
  end
end

-- The server answered the handshake with a refusal (an HTTP status, on
-- conn): once it has gone out, the connection ends.
function websocket.refusing(st)
  st.refusing = true
  enter_closing(st)
end

-- Our output drained: end the TCP connection when the protocol says so.
local function after_flush(st)
  if st.state ~= CLOSING or not st.conn then return end
  if st.refusing then return finish(st, 1006, "", false, "linger") end
  local sent, received, failed = st.conn:state()
  if failed then
    finish(st, 1006, "", false, "linger")
  elseif sent and received and st.role == "server" then
    -- RFC 6455 7.1.1: the server closes the TCP connection first.
    finish(st, st.close_code, st.close_reason, true, "linger")
  end
  -- A client waits for the server's TCP close (bounded by close_timeout).
end

-- The transport failed (message: what failed).
function websocket.io_error(st, message, name)
  if st.state == CLOSED then return end
  local sent, received = false, false
  if st.conn then sent, received = st.conn:state() end
  if sent and received then
    finish(st, st.close_code, st.close_reason, true)
  elseif st.state == CLOSING then
    finish(st, 1006, "", false)
  else
    abort(st, message, name or E.IO)
  end
end

-- The peer ended the stream.
function websocket.eof(st)
  if st.state == CLOSED then return end
  local sent, received = st.conn:state()
  if sent and received then
    finish(st, st.close_code, st.close_reason, true)
  elseif st.state == CLOSING then
    finish(st, 1006, "", false)
  else
    abort(st, "connection lost: the peer closed TCP without a closing handshake", E.IO)
  end
end

---------------------------------------------------------------- output

-- The peer left send_limit bytes unread for send_timeout seconds, with
-- reading stopped all along: it is not reading, so stop waiting for it.
local function on_backlog_timeout(st)
  if st.state ~= OPEN then return end
  error_event(st, ("the peer read nothing for send_timeout (%gs) with %d bytes "
    .. "waiting (send_limit)"):format(st.opts.send_timeout, unsent(st)), E.TIMEOUT, 1008)
  st.conn:close(1008, "peer not reading")
  enter_closing(st)
  st.io.flush(st)
end

-- Output reached send_limit (over: true) or fell back to half of it.
local function set_backlogged(st, over)
  st.backlogged = over
  local io = st.io
  if over then
    io.timer(st, "backlog", io.now() + st.opts.send_timeout, on_backlog_timeout)
  else
    io.timer(st, "backlog", nil)
    if st.conn and st.state ~= CONNECTING then io.later(st, websocket.drain) end
  end
  refresh_reading(st)
end

-- Frame what this round's budget allows of the deflating queue; the driver
-- calls it before it writes.
function websocket.frame_queued(st)
  if not st.outq then return end
  local io = st.io
  if st.send_round ~= io.round(st) then
    st.send_round, st.send_budget = io.round(st), st.opts.max_step_bytes
  end
  local q, conn, budget = st.outq, st.conn, st.send_budget
  while q.head <= q.tail and budget > 0 do
    local e = q[q.head]
    local data, n, ok, message, name, took = e.data, #e.data, nil, nil, nil, nil
    if e.pos == 1 and n <= budget then -- small: whole, as send() would
      ok, message, name = conn:send(data, e.binary, nil, st.opts.fragment_size)
      took = n
    else
      local last = math.min(n, e.pos + budget - 1)
      ok, message, name = conn:send_fragment(data:sub(e.pos, last), e.binary, last == n, true)
      took = last - e.pos + 1
    end
    if not ok then
      outq_drop(st)
      -- Closed: nothing may follow.  Out of memory mid-message: it cannot
      -- be finished, so the connection fails.
      if name ~= E.CLOSED then abort(st, "send: " .. message, name) end
      return
    end
    e.pos, budget, st.outq_bytes = e.pos + took, budget - took, st.outq_bytes - took
    if e.pos > n then
      q[q.head] = nil
      q.head = q.head + 1
    end
  end
  st.send_budget = budget
  if q.head <= q.tail then
    io.later(st, io.flush) -- the rest in the next rounds
    return
  end
  st.outq, st.outq_bytes = nil, nil
  conn:hold_fanout(false)
  regate(st)
  local close = st.close_after
  if close then
    st.close_after = nil
    conn:close(close[1], close[2])
  end
end

-- The driver wrote what it could; left bytes wait (in conn or in flight).
function websocket.flushed(st, left)
  left = left + (st.outq_bytes or 0)
  -- Reading stops at send_limit and resumes at half of it, so a peer that
  -- takes a few bytes now and then does not flip it every round.
  local limit = st.opts.send_limit
  local over
  if st.backlogged then over = left > limit / 2 else over = left >= limit end
  if over ~= (st.backlogged or false) then set_backlogged(st, over) end
  if left <= st.opts.send_buffer then st.io.wake(st, "send") end
  -- ondrain: the output went over send_buffer (or a send was refused at
  -- send_limit) and is down to send_low_water now.
  if st.drain_armed and left <= st.opts.send_low_water then
    st.drain_armed = nil
    fire(st, "ondrain", { type = "drain", bufferedAmount = left })
  end
  if left == 0 and st.state == CLOSING then after_flush(st) end
end

---------------------------------------------------------------- input

local apply_failure -- forward

-- Recompute st.queue.slow after queue_paused or failure changed.
local function queue_watch(st)
  local q = st.queue
  if q then q.slow = st.queue_paused or st.failure ~= nil end
end

local function queue_message(st, data, kind)
  local q = st.queue
  if not q then
    q = { head = 1, tail = 0, binary = false, slow = false }
    st.queue = q
  end
  local tail = q.tail + 1
  q[tail], q.tail = data, tail
  if kind == "binary" then
    local marks = q.binary or {}
    marks[tail], q.binary = true, marks
  end
  if tail - q.head + 1 >= st.opts.max_queue then
    st.queue_paused = true
    queue_watch(st)
    refresh_reading(st)
  end
end

local function pop_message(st)
  local q = st.queue
  local head = q.head
  local data, kind, marks = q[head], "text", q.binary
  q[head] = nil
  if marks and marks[head] then kind, marks[head] = "binary", nil end
  if head >= q.tail then
    q.head, q.tail = 1, 0
  else
    q.head = head + 1
  end
  if st.queue_paused and q.tail - q.head + 1 <= math.floor(st.opts.max_queue / 2) then
    st.queue_paused = false
    queue_watch(st)
    refresh_reading(st)
    if st.conn then st.io.later(st, websocket.drain) end
  end
  -- The last message before a failure is taken: the failure follows, once
  -- the caller has had its turn to answer.
  if st.failure and q.tail < q.head then st.io.later(st, apply_failure) end
  return data, kind
end

local function deliver(st, data, kind)
  -- Built whole (target too): no table resize per message.
  fire(st, "onmessage", { type = "message", data = data, binary = kind == "binary",
    target = st.ws })
end

-- Messages queued for receive() before onmessage was set go to the handler
-- first, in order; then the hot path may deliver again.
local function deliver_queued(st)
  while st.onmessage and queued(st) > 0 do
    deliver(st, pop_message(st))
  end
  st.delivering = false
  regate(st)
end

local function deliver_later(st)
  if not st.delivering then
    st.delivering = true
    regate(st)
    st.io.later(st, deliver_queued)
  end
end

-- A message the hot path did not take (its gate was not open for it).
local function on_message(st, data, kind)
  if st.state ~= OPEN then return end -- the browser drops messages once closing
  if st.onmessage and queued(st) == 0 and not st.delivering then
    deliver(st, data, kind)
  else
    queue_message(st, data, kind)
    if st.onmessage then deliver_later(st) else st.io.wake(st) end
  end
end

-- The connection failed (the peer broke the protocol): the close frame
-- with the RFC's code goes out, onerror fires, the closing begins.
local function fail_now(st, message, name, code)
  st.failure = nil
  queue_watch(st)
  if not st.conn or st.state == CLOSED then return end
  st.conn:fail_close()
  enter_closing(st)
  error_event(st, "frame: " .. message, name, code)
  st.io.flush(st)
end

function apply_failure(st)
  local f = st.failure
  if f then fail_now(st, f[1], f[2], f[3]) end
end

local function handle_event(st, kind, a, b, c)
  if kind == "text" or kind == "binary" then
    on_message(st, a, kind)
  elseif kind == "ping" then
    st.io.flush(st) -- the pong the core queued
    if st.onping then fire(st, "onping", { type = "ping", data = a }) end
  elseif kind == "pong" then
    if st.pings and latency.pong(st, a, st.io.now()) then st.io.wake(st) end -- ping()'s wait
    if st.onpong then fire(st, "onpong", { type = "pong", data = a }) end
  elseif kind == "close" then
    st.close_code, st.close_reason = a, b
    enter_closing(st)
    st.io.flush(st) -- our echo, or the wake-up that ends a completed handshake
  elseif kind == "error" then
    if queued(st) > 0 then
      -- Messages that came before the bad frame wait for receive() (or
      -- for onmessage): let the application take them, and answer them,
      -- before the close goes out -- as event style, whose handler runs
      -- before the next frame is read, always could.
      st.failure = { a, b, c }
      queue_watch(st)
    else
      fail_now(st, a, b, c)
    end
  end
end

-- What drain does with a result of conn:pump other than a budget's end.
local function pumped_event(st, kind, a, b, c)
  if kind == "full" then
    st.queue_paused = true
    queue_watch(st)
    refresh_reading(st)
  elseif kind == "eof" then
    websocket.eof(st)
  elseif kind == "ioerror" then
    websocket.io_error(st, a, b)
  else
    handle_event(st, kind, a, b, c)
  end
end

-- How a drain ends: finished false when a budget of the round cut it.
local function drain_end(st, finished)
  if not finished then drain_next_round(st) end
  if not st.onmessage and queued(st) > 0 then st.io.wake(st) end
  return finished
end

-- Parse and dispatch the complete events waiting in the conn -- and, with
-- read, read from the transport while input is missing -- at most
-- max_step_events events and max_step_bytes read and inflated a round: a
-- flood or a bomb must not stall one round of the loop (a game frame).
-- The rest is dispatched in a later round.  Returns false when it stopped
-- for a budget.  conn:pump delivers or queues the messages the gate lets
-- through itself and returns every other event; the handlers it calls run
-- under one protected call per pump, not one per message.
function websocket.drain(st, read)
  local conn, io = st.conn, st.io
  if not conn then return true end
  local round = io.round(st)
  while true do
    local ok, kind, a, b, c = xpcall(conn.pump, io.traceback, conn, st, round, read)
    if not ok then
      report_handler_error(st, "onmessage", kind)
    elseif not kind then
      -- false: a budget of this round is spent; the rest next round
      if kind == false then return drain_end(st, false) end
      break
    else
      pumped_event(st, kind, a, b, c)
    end
    if st.conn ~= conn then return true end
  end
  return drain_end(st, true)
end

-- A driver that pumped st itself (loop_io's C dispatch: many sockets
-- under one protected call, waking the receivers of queued messages as
-- drain_end would) hands over what drain would have gone on with: pump's
-- results ...
function websocket.pumped(st, kind, a, b, c)
  if kind == false then return drain_end(st, false) end
  local conn = st.conn
  pumped_event(st, kind, a, b, c)
  if st.conn == conn then return websocket.drain(st, true) end
  return true
end

-- ... or the error a handler raised in it.
function websocket.pump_failed(st, err)
  report_handler_error(st, "onmessage", err)
  return websocket.drain(st, true)
end

-- The next round's share of a drain cut short by its budget.
function websocket.drain_later(st)
  st.drain_deferred = false
  if st.conn then websocket.drain(st, st.io.reads) end
end

---------------------------------------------------------------- keepalive

-- Whether the ping keepalive sent is still unanswered: nothing at all came
-- from the peer since (any byte proves it alive).
local function awaiting_pong(st)
  return st.ping_mark ~= nil and st.conn ~= nil and st.conn:bytes_read() == st.ping_mark
end

local function on_pong_timeout(st)
  if st.state == OPEN and awaiting_pong(st) then
    abort(st, ("no data from the peer within ping_timeout (%gs) after a ping"):format(
      st.opts.ping_timeout), E.TIMEOUT)
  end
end

local function on_ping_timer(st)
  if st.state ~= OPEN then return end
  local io = st.io
  if not awaiting_pong(st) then
    st.ping_mark = st.conn:bytes_read()
    st.conn:ping("")
    latency.sent(st, "", io.now()) -- ws.latency
    io.flush(st)
    if st.state ~= OPEN then return end
    io.timer(st, "pong", io.now() + st.opts.ping_timeout, on_pong_timeout)
  end
  io.timer(st, "ping", io.now() + st.opts.ping_interval, on_ping_timer)
end


---------------------------------------------------------------- the opening

local metatable_for -- forward: the object's metatable for a driver

-- A new socket object in CONNECTING state; role "client" or "server"; io
-- is its driver.
function websocket.new(role, opts, url, io)
  -- Made at the size an open socket's state reaches (15 fields on a
  -- server), not grown to it through 8: no rehash, no garbage per socket.
  local st = core.sized_table(16)
  st.state, st.role, st.opts, st.io, st.drv = CONNECTING, role, opts, io, {}
  st.url, st.protocol, st.extensions = url or "", "", ""
  local ws = setmetatable({ [PRIV] = st }, metatable_for(io))
  compat.on_collect(ws, mt.__gc)
  st.ws = ws
  return ws, st
end

-- A new conn takes the limits and compression of opts (before its
-- handshake).
function websocket.configure(conn, opts)
  conn:limits(opts.max_payload, opts.max_frame)
  conn:set_compression(opts.compression)
  conn:tune(opts.send_limit, opts.send_buffer, opts.fragment_size, opts.max_step_bytes,
    opts.max_queue, opts.max_step_events)
end

-- A driver's new table for its per-socket data (one sized for what it
-- keeps once the socket is open).
function websocket.set_drv(st, drv) st.drv = drv end

-- Give st its conn.
-- (send's memory of a socket's conn, core.send_forget, goes with every
-- change of st.conn.)
function websocket.attach(st, conn)
  st.conn, st.gate = conn, nil
  core.send_forget(st.ws)
end

-- Take st's conn back (a connect attempt failed; another may follow).
function websocket.detach(st)
  local conn = st.conn
  st.conn = nil
  core.send_forget(st.ws)
  return conn
end

-- The opening handshake succeeded: the socket is OPEN (a client has the
-- server's response headers).
function websocket.opened(st, protocol, extensions, response_headers)
  local io = st.io
  st.conn:handshake_done()
  st.state = OPEN
  st.was_opened = true
  st.protocol, st.extensions = protocol or "", extensions or ""
  st.response_headers = response_headers
  io.timer(st, "connect", nil)
  refresh_reading(st)
  if st.opts.ping_interval then
    io.timer(st, "ping", io.now() + st.opts.ping_interval, on_ping_timer)
  end
  if st.opts.log then
    log.emit(st, "open", ("%s protocol %q extensions %q"):format(st.url, st.protocol,
      st.extensions))
  end
end

-- Announce the open socket and parse frames that came with the handshake.
function websocket.announce(st, fire_onopen)
  if fire_onopen then fire(st, "onopen", { type = "open" }) end
  st.io.wake(st)
  if st.state == OPEN then websocket.drain(st, st.io.reads) end
end

-- The URL a server learned from the request (scheme, Host, target).
function websocket.set_url(st, url) st.url = url end

-- The peer's address, as the driver knows it ("127.0.0.1:8080"): for
-- the log and for the application.

-- Who the peer is for the application (moonws.peer_address):
-- ws.remote_address, ws.remote_port.
function websocket.set_remote(st, address, port)
  st.remote_address, st.remote_port = address, port
end

-- Bound the opening phase: connect + handshake (client), handshake
-- (server); on_timeout(st) runs when it passes.
function websocket.arm_connect_timer(st, on_timeout)
  st.io.timer(st, "connect", st.io.now() + st.opts.timeout, on_timeout)
end

---------------------------------------------------------------- handshake policy

-- "%40" -> "@": userinfo in URLs is percent-encoded (RFC 3986 3.2.1).
local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end
websocket.unescape = unescape

-- The client's upgrade request for parsed URL u under opts, as conn:request
-- takes it: URL credentials become an Authorization header.
function websocket.request_spec(u, opts)
  local headers = opts.headers
  if u.userinfo then
    local h = {}
    for k, v in pairs(headers or {}) do h[k] = v end
    h.Authorization = "Basic " .. core.base64(unescape(u.userinfo))
    headers = h
  end
  return {
    host = u.host_header,
    target = u.resource,
    protocols = websocket.offered_protocols(opts),
    origin = opts.origin,
    headers = headers,
  }
end

-- The client's Sec-WebSocket-Protocol offer ("a, b"), or nil.
function websocket.offered_protocols(opts)
  local p = opts.protocols
  if not p then return nil end
  return type(p) == "string" and p or table.concat(p, ", ")
end

-- Judge the server's response bytes on st.conn: nil (not complete yet),
-- true (OPEN now), or false, message, name, status, headers (the
-- connection failed; the caller ends it, after reading a refusal's body).
function websocket.check_response(st)
  local ok, a, b, c, name = st.conn:parse_response(st.opts.max_handshake,
    websocket.offered_protocols(st.opts), false)
  if ok == nil then return nil end
  if not ok then return false, "handshake: " .. a, name or E.HANDSHAKE, b, c end
  websocket.opened(st, a, b, c)
  return true
end

-- The subprotocol a server picks for request req: its `protocols` option
-- is a list (the first offered that it lists) or a function(offered, req).
-- nil, or nil, message when the function failed or chose badly.
local function choose_protocol(opts, req)
  local wanted = opts.protocols
  if type(wanted) == "function" then
    local ok, chosen = pcall(wanted, req.protocols, req)
    if not ok then return nil, "protocols callback failed: " .. tostring(chosen) end
    if chosen ~= nil then
      for _, p in ipairs(req.protocols) do
        if p == chosen then return chosen end
      end
      return nil, ("protocols callback chose '%s', which the client did not offer")
        :format(tostring(chosen))
    end
    return nil
  end
  if type(wanted) == "string" then wanted = { wanted } end
  if wanted then
    for _, p in ipairs(req.protocols) do
      for _, w in ipairs(wanted) do
        if p == w then return p end
      end
    end
  end
  return nil
end

-- What a handshake callback's refusal says: `false, status [, reason
-- [, headers]]` or `false, { status =, reason =, headers =, body = }`.
-- status, message, headers, body | nil, why (a refusal that cannot be
-- sent: the front answers 500).  The body is at most HANDSHAKE_BODY_MAX
-- bytes; without one, the reason is the body.
local function refusal(a, b, c)
  local t = type(a) == "table" and a or { status = a, reason = b or "forbidden", headers = c }
  local status = t.status == nil and 403 or options.integral(t.status)
  if not status or status < 200 or status > 599 then
    return nil, "a refusal's status must be 200..599, got " .. tostring(t.status)
  end
  if t.reason ~= nil and type(t.reason) ~= "string" then
    return nil, "a refusal's reason must be a string"
  end
  if t.headers ~= nil and type(t.headers) ~= "table" then
    return nil, "a refusal's headers must be a table"
  end
  if t.body ~= nil and (type(t.body) ~= "string" or #t.body > core.HANDSHAKE_BODY_MAX) then
    return nil, ("a refusal's body must be a string of at most %d bytes"):format(
      core.HANDSHAKE_BODY_MAX)
  end
  return status, t.reason, t.headers, t.body
end

-- The server side of an upgrade that the C checks accepted: subprotocol,
-- the handshake callback (origin, auth; it may wait where the front can:
-- a coroutine of the loop, a request's in nginx), then the 101 queued on
-- conn with the headers the callback added.
-- true, protocol, extensions | false, status, message, headers, body
-- (refuse: the front answers).  Failures of the user's callbacks are
-- reported.
function websocket.accept(opts, conn, req, report, traceback)
  local protocol, perr = choose_protocol(opts, req)
  if perr then
    report(perr)
    return false, 500, "internal error"
  end
  local extra_headers
  if opts.handshake then
    local ok, verdict, a, b, c = xpcall(opts.handshake, traceback, req)
    if not ok then
      report("error in handshake callback: " .. tostring(verdict))
      return false, 500, "internal error"
    end
    if verdict == false then
      local status, message, headers, body = refusal(a, b, c)
      if not status then
        report("handshake callback: " .. message)
        return false, 500, "internal error"
      end
      return false, status, message, headers, body
    end
    if type(a) == "table" then extra_headers = a end
  end
  local called, ok, extensions = pcall(conn.respond_upgrade, conn, req.key, protocol, nil,
    extra_headers)
  if not called then
    report("handshake callback returned bad headers: " .. tostring(ok))
    return false, 500, "internal error"
  end
  if not ok then -- out of memory: extensions holds the message
    report("handshake refused: " .. tostring(extensions))
    return false, 503, "out of memory"
  end
  req.key = nil
  return true, protocol, extensions
end

---------------------------------------------------------------- the object

local function priv(ws)
  local st = type(ws) == "table" and rawget(ws, PRIV) -- a raw field of every socket
  if not st then misuse.raise("bad self (a moonws websocket expected)") end
  return st
end
websocket.priv = priv

-- What a closed socket's calls return.
local function closed_result(st)
  if st.err_message then return nil, st.err_message, st.err_name end
  return nil, ("closed (%d%s)"):format(st.close_code,
    st.close_reason ~= "" and " " .. st.close_reason or ""), E.CLOSED
end

-- A message for the deflating queue: checked as conn:send checks; returns
-- true and the bytes now unsent, or nil, message, name.
local function send_later(st, data, binary)
  if not binary and not core.utf8_valid(data) then
    misuse.arg(1, "send", "invalid UTF-8 in a text message (send it as binary)")
  end
  local queued = unsent(st)
  if queued >= st.opts.send_limit then
    return nil, ("send queue full: %d bytes wait for a peer that is not reading (send_limit)")
      :format(queued), E.TOO_BIG
  end
  outq_push(st, data, binary)
  return true, queued + #data
end

-- Queues one message behind any deflating one (big compressed messages
-- go through the send queue, the rest straight to the core): true, bytes
-- queued | nil, message, name | false, message (text that is not UTF-8).
local function enqueue(st, data, binary)
  local opts, conn = st.opts, st.conn
  if st.outq or (#data > opts.max_step_bytes and conn:deflates(#data)) then
    return send_later(st, data, binary)
  end
  return conn:send(data, binary, opts.send_limit, opts.fragment_size)
end

-- Queue a message that was checked already (the fan-out's receivers that
-- it hands back: moonws.topics), as send does but never waiting: true |
-- nil, message, name.
function websocket.queue_send(st, data, binary)
  if st.state ~= OPEN then return nil, E.CLOSED, E.CLOSED end
  local ok, queued, name = enqueue(st, data, binary)
  if not ok then return nil, queued, name end
  return st.io.flush(st)
end

-- More than send_buffer bytes are queued: ondrain is due once they are
-- down to send_low_water; wait for room where waiting is possible (a
-- coroutine, the main thread).
local function send_wait(st)
  st.drain_armed = true
  local limit = st.opts.send_buffer
  if unsent(st) > limit and st.io.can_wait(st) then
    st.io.wait(st, function()
      return st.state ~= OPEN or st.conn == nil or unsent(st) <= limit
    end, nil, "send")
    if st.state ~= OPEN then return nil, "closed before the message was sent", E.CLOSED end
  end
  return true
end

-- The general way of a message, which send_fast leaves to it: every check
-- with its error, the deflating queue, send_limit's refusal.
local function send_general(ws, data, kind)
  local st = priv(ws)
  if type(data) ~= "string" then
    misuse.arg(1, "send", "string expected, got " .. type(data))
  end
  local binary = options.send_kind(kind)
  local state = st.state
  if state ~= OPEN then
    if state == CONNECTING then
      misuse.raise("send while CONNECTING: wait for onopen (or use moonws.connect)")
    end
    return nil, E.CLOSED, E.CLOSED
  end
  -- Event-style sends never wait, so a peer that stops reading would make
  -- the queue grow without end: past send_limit, refuse (queue nothing).
  local opts, io = st.opts, st.io
  local ok, queued, name = enqueue(st, data, binary)
  if not ok then
    if ok == false then misuse.arg(1, "send", queued) end -- text that is not UTF-8
    if name == E.TOO_BIG then st.drain_armed = true end -- ondrain when it has gone
    return nil, queued, name
  end
  local flushed, message, ename = io.flush(st)
  if not flushed then return nil, message, ename end
  if queued > opts.send_buffer then return send_wait(st) end
  return true
end

-- The rest of send after the C hot path's verdict: 2 (queued, schedule a
-- flush), 3 (also wait for room), nil (the general way); st is ws's state
-- when the message was queued.
local function send_rest(ws, data, kind, verdict, st)
  if not verdict then return send_general(ws, data, kind) end
  local flushed, message, name = st.io.flush(st)
  if not flushed then return nil, message, name end
  if verdict == 3 then return send_wait(st) end
  return true
end

-- Socket objects whose output send left to the end of the loop's round:
-- C lists a socket there instead of asking for a flush when its last
-- write in Lua (the driver's) found nothing to decide (conn:plain_flush).
local listed = {}

-- The end of a round (the loop's flush): C writes every listed socket's
-- output; those whose write leaves something to decide (bytes left, a
-- failure) get the driver's flush, which writes and decides in Lua.
function websocket.flush_listed()
  if listed[1] == nil then return end
  local n = core.flush_listed(listed, PRIV)
  for i = 1, n do
    local st = rawget(listed[i], PRIV)
    listed[i] = nil
    st.io.flush(st)
  end
end

-- The hot path: send itself is C when the build lets a C function yield
-- (Lua 5.4); under LuaJIT a Lua send calls the C part (send_fast).
if core.send_method then
  methods.send = core.send_method(PRIV, listed, send_rest)
else
  local send_fast = core.fast_send(PRIV, listed)
  function methods.send(ws, data, kind)
    local r, message, name = send_fast(ws, data, kind)
    if r == 1 then return true end
    if not r and message then return nil, message, name end
    return send_rest(ws, data, kind, r, r and rawget(ws, PRIV))
  end
end

local function control(name, ws, data)
  local st = priv(ws)
  if data == nil then data = "" end
  if type(data) ~= "string" then
    misuse.arg(1, name, "string expected, got " .. type(data))
  end
  if #data > core.CONTROL_MAX then
    misuse.arg(1, name, "payload over 125 bytes")
  end
  if st.state == CONNECTING then
    misuse.raise(name .. " while CONNECTING: wait for onopen")
  end
  if st.state ~= OPEN then return nil, E.CLOSED, E.CLOSED end
  local ok, msg, ename = st.conn[name](st.conn, data)
  if not ok then return nil, msg, ename end
  return st.io.flush(st)
end

-- ping([data]): where the caller can wait (a coroutine, a plain script),
-- it waits for the pong, at most ping_timeout, and returns the round trip
-- in seconds (moonws.latency); elsewhere (an event handler) it returns
-- true at once, and a pong still updates ws.latency.
function methods.ping(ws, data)
  local st = priv(ws)
  local io = st.io
  local waiting = st.state == OPEN and io.can_wait(st)
  if data == nil and waiting then data = latency.unique(st) end
  local ok, message, name = control("ping", ws, data)
  if not ok then return nil, message, name end
  local ping = latency.sent(st, data or "", io.now())
  if not waiting then return ok end
  io.wait(st, function() return ping.rtt ~= nil or st.state ~= OPEN end,
    io.now() + st.opts.ping_timeout, "ping")
  if ping.rtt then return ping.rtt end
  if st.state ~= OPEN then
    if st.state == CLOSED then return closed_result(st) end
    return nil, "closing before the pong came", E.CLOSED
  end
  return nil, ("no pong within ping_timeout (%gs)"):format(st.opts.ping_timeout), E.TIMEOUT
end
function methods.pong(ws, data) return control("pong", ws, data) end

-- Start the closing handshake (no waiting).
local function start_close(st, code, reason)
  if st.state == CONNECTING then
    abort(st, "closed before the connection was established", E.CLOSED)
  elseif st.state == OPEN then
    -- After what the deflating queue still holds, as the browser sends
    -- what was sent before close().
    if st.outq then st.close_after = { code, reason } else st.conn:close(code, reason) end
    enter_closing(st)
    st.io.flush(st)
  end
end
websocket.start_close = start_close -- server:shutdown closes with 1001, which close() refuses

-- A server's code for the connection ended (moonws.serve's handler
-- returned or raised, server.onconnection raised: err).  As Python's
-- websockets does: close with 1000 when it returned, 1011 when it raised
-- (reported as a handler error: the socket's onerror, else the report).
function websocket.handler_ended(st, name, ok, err)
  if not ok then report_handler_error(st, name, err) end
  start_close(st, ok and 1000 or 1011, "")
end

function methods.close(ws, code, reason)
  local st = priv(ws)
  code, reason = options.close_args(code, reason)
  start_close(st, code, reason)
  if st.state ~= CLOSED and st.io.can_wait(st) then
    st.io.wait(st, function() return st.state == CLOSED end, nil, "close")
  end
  if st.state == CLOSED and not st.was_clean then
    return nil, "the closing handshake did not complete", E.CLOSED
  end
  return true
end

function methods.terminate(ws)
  local st = priv(ws)
  if st.state ~= CLOSED then finish(st, 1006, "", false) end
end

-- What receive() waits for (a driver's wait_message).
function websocket.receivable(st)
  local q = st.queue
  return q and q.tail >= q.head or st.state == CLOSED
end

function methods.receive(ws, timeout)
  -- The state without priv's two calls: a raw field of every socket (a
  -- plain index raises Lua's own error for a value that cannot be
  -- indexed; nil, a string, any other table reach priv's message).
  local st = ws ~= nil and ws[PRIV] or priv(ws)
  if timeout ~= nil then
    if type(timeout) ~= "number" or timeout < 0 then
      misuse.arg(1, "receive", "non-negative number expected")
    end
    timeout = st.io.now() + timeout -- the deadline from here on
  end
  -- Few live locals here: a coroutine parked in receive keeps Lua's initial
  -- 40-slot stack only if the frames down to its yield fit in it.
  repeat
    do
      local q = st.queue
      if q then
        local head, tail = q.head, q.tail
        if head <= tail then
          if q.slow then return pop_message(st) end
          -- pop_message's common case, inlined: the hot path of coroutines.
          local data, kind, marks = q[head], "text", q.binary
          q[head] = nil
          if marks and marks[head] then kind, marks[head] = "binary", nil end
          if head >= tail then q.head, q.tail = 1, 0 else q.head = head + 1 end
          return data, kind
        end
      end
    end
    if st.state == CLOSED then return closed_result(st) end
    -- false: the deadline passed with nothing to receive
  until not st.io.wait_message(st, timeout)
  return nil, "receive timed out", E.TIMEOUT
end

function methods.pause(ws)
  local st = priv(ws)
  st.paused = true
  refresh_reading(st)
end

function methods.resume(ws)
  local st = priv(ws)
  if not st.paused then return end
  st.paused = false
  refresh_reading(st)
  if st.conn and st.state ~= CONNECTING then st.io.later(st, websocket.drain) end
end

function methods.getfd(ws)
  local st = priv(ws)
  return st.conn and st.conn:fd() or nil
end

-- stats([t]): what went through the connection (data messages; see
-- docs): messages_in, bytes_in, wire_bytes_in, inflated_in, messages_out,
-- bytes_out, wire_bytes_out.  Into t when given.  After the close, the
-- last values.
function methods.stats(ws, t)
  local st = priv(ws)
  if t ~= nil and type(t) ~= "table" then
    misuse.arg(1, "stats", "table expected, got " .. type(t))
  end
  if st.conn then return st.conn:counters(t) end
  t = t or {}
  for k, v in pairs(st.final_counters or {}) do t[k] = v end
  return t
end

getters.readyState = function(st) return st.state end
getters.bufferedAmount = function(st) return st.conn and unsent(st) or 0 end
getters.url = function(st) return st.url end
getters.protocol = function(st) return st.protocol end
getters.extensions = function(st) return st.extensions end
getters.closeCode = function(st) return st.state == CLOSED and st.close_code or nil end
getters.closeReason = function(st) return st.state == CLOSED and st.close_reason or nil end
getters.response_headers = function(st) return st.response_headers end
getters.latency = function(st) return st.latency or 0 end
getters.remote_address = function(st) return st.remote_address end
getters.remote_port = function(st) return st.remote_port end
for name in pairs(HANDLERS) do
  getters[name] = function(st) return listeners.field(st, name) end
end

-- Methods and properties a front adds (the loop's cqueues polling).
function websocket.add_methods(t)
  for name, fn in pairs(t) do methods[name] = fn end
end

-- Methods, then getters(st), found in C: the hot path looks up ws.send
-- once per message.
mt.__index = core.fast_index(methods, getters, PRIV)

-- A driver that lacks some methods gets a metatable of its own, whose
-- stubs say why when they are called.
local driver_mts = setmetatable({}, { __mode = "k" })

function metatable_for(io)
  if not io.unsupported then return mt end
  local m = driver_mts[io]
  if m then return m end
  local own = {}
  for name, fn in pairs(methods) do own[name] = fn end
  for name, why in pairs(io.unsupported) do
    own[name] = function()
      misuse.raise(("%s is not available in %s: %s"):format(name, io.name, why))
    end
  end
  m = {}
  for k, v in pairs(mt) do m[k] = v end
  m.__index = core.fast_index(own, getters, PRIV)
  driver_mts[io] = m
  return m
end

-- A handler field or listener changed: keep the socket alive while any
-- is set; messages queued before onmessage had one go to it first.
local function handlers_changed(st, field)
  rekeep(st)
  if field == "onmessage" then
    -- conn:pump keeps the handler it found until the next gate(): a new
    -- one (a field, or a listeners' dispatcher) must reach it at once.
    st.gate = nil
    if st.onmessage and queued(st) > 0 then deliver_later(st) else regate(st) end
  end
end

-- addEventListener(type, fn [, { once = true }]), removeEventListener(type,
-- fn): listeners beside the handler fields, as in the browser
-- (moonws.listeners).
function methods.addEventListener(ws, event_type, fn, opts)
  local st = priv(ws)
  handlers_changed(st, listeners.add(st, event_type, fn, opts))
end

function methods.removeEventListener(ws, event_type, fn)
  local st = priv(ws)
  handlers_changed(st, listeners.remove(st, event_type, fn))
end

function mt.__newindex(ws, k, v)
  if HANDLERS[k] then
    local st = rawget(ws, PRIV)
    if st.io.handlers == false then
      misuse.raise(("%s sockets have no %s handler: call receive() in the handler"):format(
        st.io.name, k))
    end
    if v ~= nil and type(v) ~= "function" then
      local m = getmetatable(v)
      if not (m and m.__call) then
        misuse.raise(("%s must be a function (got %s)"):format(k, type(v)))
      end
    end
    listeners.set_field(st, k, v)
    handlers_changed(st, k)
  elseif getters[k] then
    misuse.raise(k .. " is read-only")
  else
    rawset(ws, k, v)
  end
end

local STATE_NAMES = { [0] = "CONNECTING", "OPEN", "CLOSING", "CLOSED" }
function mt.__tostring(ws)
  local st = rawget(ws, PRIV)
  return ("%s (%s, %s%s)"):format(st.io.type_name, STATE_NAMES[st.state], st.role,
    st.url ~= "" and ", " .. st.url or "")
end

-- `local ws <close> = ...`: close with 1000 at scope end, without waiting.
function mt.__close(ws)
  local st = rawget(ws, PRIV)
  if st.state == OPEN or st.state == CONNECTING then start_close(st, 1000, "") end
end

-- Collected while open: the C conn's own finalizer sends a close frame
-- without a status code and closes the socket; the driver forgets it.
function mt.__gc(ws)
  core.send_forget(ws) -- before this address can be another object's
  local st = rawget(ws, PRIV)
  if st.io.collected then st.io.collected(st) end
end

websocket.methods = methods
return websocket

-- moonws.socket -- the WebSocket object of DESIGN.md 1.3, after the
-- transport exists: events, sending, receiving, the closing handshake,
-- keepalive, backpressure and lifetime.
--
-- The public object is an empty proxy whose metatable serves methods and
-- read-only properties, so assigning a handler (ws.onmessage = f) passes
-- through __newindex and the loop can pin the socket while handlers are
-- set.  All state lives in a private table (st) reached by a private key;
-- the loop refers to st weakly, so a socket nobody references and nothing
-- waits on is collected, and its collection closes the connection.
--
-- State rules (the browser's): onclose fires exactly once, after onerror
-- when there was an error; wasClean is true only when both close frames
-- were exchanged before the TCP connection ended; code is the peer's close
-- code (1005 when its frame had none) or 1006 when no close frame came.

local compat = require "moonws.compat"
local core = require "moonws.core"
local log = require "moonws.log"
local loop = require "moonws.loop"
local options = require "moonws.options"

local now = loop.now
local readable, writable = loop.readable, loop.writable

local CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3

local socket = {
  CONNECTING = CONNECTING, OPEN = OPEN, CLOSING = CLOSING, CLOSED = CLOSED,
}

local PRIV = setmetatable({}, { __name = "moonws.private", __tostring = function() return "<moonws private>" end })
socket.PRIV = PRIV

local HANDLERS = {
  onopen = true, onmessage = true, onclose = true, onerror = true, onping = true, onpong = true,
}

local pinned = {}   -- st -> true: sockets the loop keeps alive (handlers set)

local methods, getters = {}, {}
local mt = { __name = "moonws.websocket" }
socket.mt = mt

---------------------------------------------------------------- events

local traceback = loop.traceback

local function report_handler_error(st, name, err)
  local message = ("error in %s handler: %s"):format(name, tostring(err))
  local onerror = st.onerror
  if name ~= "onerror" and onerror then
    local ok, err2 = xpcall(onerror, traceback,
      { type = "error", message = message, error = "handler", target = st.ws })
    if ok then return end
    message = message .. "\n(onerror failed too: " .. tostring(err2) .. ")"
  end
  loop.report(message)
end

-- Call handler `name` of st with event; errors never escape.
local function fire(st, name, event)
  local handler = st[name]
  if not handler then return false end
  event.target = st.ws
  local ok, err = xpcall(handler, traceback, event)
  if not ok then report_handler_error(st, name, err) end
  return true
end
socket.fire = fire

local function repin(st)
  if st.state ~= CLOSED and (st.onopen or st.onmessage or st.onclose or st.onerror
      or st.onping or st.onpong) then
    pinned[st] = true
  else
    pinned[st] = nil
  end
end

---------------------------------------------------------------- I/O interest

local abort -- forward

-- The poller refused the socket (out of memory, max_user_watches): it
-- fails alone, in the next round, so no caller is cut off midway.  An
-- operator should hear of it even when no handler is set (a server's
-- socket still in its handshake has none).
local function on_watch_failed(st)
  if not st.onerror then loop.report(st.watch_error) end
  abort(st, st.watch_error, st.watch_error_name)
end

local function set_interest(st, want_read, want_write)
  if st.fd and (st.i_read ~= want_read or st.i_write ~= want_write) then
    st.i_read, st.i_write = want_read, want_write
    local ok, message, name = loop.watch(st.fd, st, want_read, want_write)
    if not ok and not st.watch_error then
      st.watch_error = "cannot watch the socket: " .. tostring(message)
      st.watch_error_name = name or "io"
      loop.defer(on_watch_failed, st)
    end
  end
end

-- Reading stops while the application pauses, while receive()'s queue is
-- full, and while send_limit bytes wait for a peer that does not read
-- what we send (a peer must not make us buffer without bound for it).
local function reading_wanted(st)
  return not st.paused and not st.queue_paused and not st.backlogged
end

local function refresh_interest(st)
  set_interest(st, reading_wanted(st), st.i_write or false)
end
socket.set_interest = set_interest

---------------------------------------------------------------- deflating sends

-- A big message that goes compressed costs its deflate (about 3 ms a MiB):
-- sent whole, an echo of a peer's 16 MiB message would stall every other
-- connection for 50 ms.  So it is deflated max_step_bytes a round and goes
-- out as fragments; messages sent after it, and a close, wait behind it in
-- order.  What waits counts in bufferedAmount and against send_limit.

local function unsent(st) return st.conn:buffered() + st.outq_bytes end

local function outq_push(st, data, binary)
  local q = st.outq
  if not q then
    q = { head = 1, tail = 0 }
    st.outq = q
  end
  q.tail = q.tail + 1
  q[q.tail] = { data = data, binary = binary, pos = 1 }
  st.outq_bytes = st.outq_bytes + #data
end

local function outq_drop(st)
  st.outq, st.outq_bytes, st.close_after = nil, 0, nil
end

---------------------------------------------------------------- ending

local function cancel_timers(st)
  loop.cancel(st.connect_timer); st.connect_timer = nil
  loop.cancel(st.close_timer); st.close_timer = nil
  loop.cancel(st.ping_timer); st.ping_timer = nil
  loop.cancel(st.pong_timer); st.pong_timer = nil
  loop.cancel(st.backlog_timer); st.backlog_timer = nil
end

local function release_transport(st)
  local conn = st.conn
  if conn then
    st.final_counters = conn:counters()
    if st.fd then loop.unwatch(st.fd) end
    conn:release()
    st.conn, st.fd = nil, nil
  end
  if st.lookup_cancel then st.lookup_cancel(st); st.lookup_cancel = nil end
end

-- The connection is over: free it, and fire onclose (once).
local function finish(st, code, reason, clean)
  if st.state == CLOSED then return end
  cancel_timers(st)
  -- After a closing handshake, end TLS properly too (one nonblocking try).
  if clean and st.conn then st.conn:shutdown() end
  release_transport(st)
  outq_drop(st)
  st.state = CLOSED
  st.close_code, st.close_reason, st.was_clean = code, reason or "", clean
  if st.counted then st.counted = false; loop.unref() end
  if st.on_finish then st.on_finish(st) end
  if st.opts.log then
    log.emit(st, "closed", ("code %d%s, %s"):format(code,
      st.close_reason ~= "" and (" %q"):format(st.close_reason) or "",
      clean and "clean" or "not clean"), { code = code, reason = st.close_reason, clean = clean })
  end
  fire(st, "onclose", { type = "close", code = code, reason = st.close_reason, wasClean = clean })
  pinned[st] = nil
  loop.wake_all(st.waiters)
end
socket.finish = finish

-- Record an error and fire onerror (before the onclose that follows).
-- With a code (a close frame carrying it goes to the peer), the message
-- says so: what the application reads matches what the peer sees.
local function error_event(st, message, name, code)
  if code then message = ("%s; closing with %d"):format(message, code) end
  if st.opts.log then log.emit(st, "error", message, { error = name, code = code }) end
  st.err_message, st.err_name = message, name
  fire(st, "onerror", { type = "error", message = message, error = name, code = code })
end
socket.error_event = error_event

-- A failure that ends the connection at once (no closing handshake);
-- onclose gets code (default 1006; 1015 for TLS failures).
function abort(st, message, name, code)
  if st.state == CLOSED then return end
  if message then error_event(st, message, name) end
  finish(st, code or 1006, "", false)
end
socket.abort = abort

local function on_close_timeout(st)
  st.close_timer = nil
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
    loop.cancel(st.ping_timer); st.ping_timer = nil
    loop.cancel(st.pong_timer); st.pong_timer = nil
    st.close_timer = loop.timer(now() + st.opts.close_timeout, on_close_timeout, st)
  end
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

-- Take st's transport into a lingering close.
local function linger(st)
  local w = { conn = st.conn, fd = st.fd, on_ready = on_linger_ready }
  st.conn, st.fd = nil, nil
  w.conn:shutdown()
  lingering[w] = true
  w.timer = loop.timer(now() + LINGER, end_linger, w)
  if not loop.watch(w.fd, w, true, false) then end_linger(w) end
end

-- After our output drained: end the TCP connection when the protocol says so.
local function after_flush(st)
  if st.state ~= CLOSING or not st.conn then return end
  if st.refusing then
    linger(st)
    finish(st, 1006, "", false)
    return
  end
  local sent, received, failed = st.conn:state()
  if failed then
    linger(st)
    finish(st, 1006, "", false)
  elseif sent and received and st.role == "server" then
    -- RFC 6455 7.1.1: the server closes the TCP connection first.
    linger(st)
    finish(st, st.close_code, st.close_reason, true)
  end
  -- A client waits for the server's TCP close (bounded by close_timeout).
end

local function on_io_error(st, message, name)
  if st.state == CLOSED then return end
  local sent, received = false, false
  if st.conn then sent, received = st.conn:state() end
  if sent and received then
    finish(st, st.close_code, st.close_reason, true)
  elseif st.state == CLOSING then
    finish(st, 1006, "", false)
  else
    abort(st, message, name or "io")
  end
end

local function on_eof(st)
  local sent, received = st.conn:state()
  if sent and received then
    finish(st, st.close_code, st.close_reason, true)
  elseif st.state == CLOSING then
    finish(st, 1006, "", false)
  else
    abort(st, "connection lost: the peer closed TCP without a closing handshake", "io")
  end
end

---------------------------------------------------------------- output

local drain -- forward

-- The peer left send_limit bytes unread for send_timeout seconds, with
-- reading stopped all along: it is not reading, so stop waiting for it.
local function on_backlog_timeout(st)
  st.backlog_timer = nil
  if st.state ~= OPEN then return end
  error_event(st, ("the peer read nothing for send_timeout (%gs) with %d bytes "
    .. "waiting (send_limit)"):format(st.opts.send_timeout, unsent(st)), "timeout",
    1008)
  st.conn:close(1008, "peer not reading")
  enter_closing(st)
  loop.dirty(st)
end

-- Output reached send_limit (over: true) or fell back to half of it.
local function set_backlogged(st, over)
  st.backlogged = over
  if over then
    st.backlog_timer = loop.timer(now() + st.opts.send_timeout, on_backlog_timeout, st)
  else
    loop.cancel(st.backlog_timer); st.backlog_timer = nil
    if st.conn and st.state ~= CONNECTING then loop.defer(drain, st) end
  end
end

-- Frame what this round's budget allows of the queue.
local function outq_pump(st)
  if st.send_round ~= loop.round() then
    st.send_round, st.send_budget = loop.round(), st.opts.max_step_bytes
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
      if name ~= "closed" then abort(st, "send: " .. message, name) end
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
    loop.defer(loop.dirty, st) -- the rest in the next rounds
    return
  end
  st.outq = nil
  local close = st.close_after
  if close then
    st.close_after = nil
    conn:close(close[1], close[2])
  end
end

-- Write what is queued; called by the loop for dirty sockets and when the
-- socket turns writable.
local function flush(st)
  local conn = st.conn
  if not conn then return end
  if st.outq then
    outq_pump(st)
    if st.conn ~= conn then return end
  end
  local left, want, name = conn:flush()
  if not left then return on_io_error(st, want, name) end
  left = left + st.outq_bytes
  -- Reading stops at send_limit and resumes at half of it, so a peer that
  -- takes a few bytes now and then does not flip it every round.
  local limit = st.opts.send_limit
  local over
  if st.backlogged then over = left > limit / 2 else over = left >= limit end
  local crossed = over ~= (st.backlogged or false)
  if crossed then set_backlogged(st, over) end
  local want_write = left > 0 and want == "write"
  if crossed or want_write ~= (st.i_write or false) then
    set_interest(st, reading_wanted(st) or want == "read", want_write)
  end
  if #st.waiters > 0 and left <= st.opts.send_buffer then loop.wake_all(st.waiters) end
  if left == 0 and st.state == CLOSING then after_flush(st) end
end
socket.flush = flush

---------------------------------------------------------------- input

local function queue_message(st, data, kind)
  local tail = st.qtail + 1
  st.queue[tail] = data
  st.kinds[tail] = kind
  st.qtail = tail
  if tail - st.qhead + 1 >= st.opts.max_queue then
    st.queue_paused = true
    refresh_interest(st)
  end
end

local handle_event, on_readable -- forward

-- The next round's share of a drain cut short by its budget; TLS may also
-- hold decrypted bytes the poller cannot see.
local function drain_later(st)
  st.drain_deferred = false
  if st.conn and drain(st) and st.conn and reading_wanted(st) and st.conn:pending() then
    on_readable(st)
  end
end

-- Parse and dispatch the complete events waiting in the conn, at most
-- max_step_events of them: a flood must not stall one round of the loop
-- (a game frame).  The rest is dispatched in the next round.  Returns
-- false when it stopped for the budget.
function drain(st)
  local conn = st.conn
  if st.budget_round ~= loop.round() then
    st.budget_round, st.budget = loop.round(), st.opts.max_step_events
    if conn then conn:budget(st.opts.max_step_bytes) end -- bytes to inflate
  end
  local budget = st.budget
  local finished, queued = true, false
  while conn and st.conn == conn and not st.paused and not st.queue_paused
      and not st.backlogged do
    if budget == 0 then
      finished = false
      break
    end
    local kind, a, b, c = conn:next_event()
    if not kind then
      -- false: inflated max_step_bytes already; the rest next round
      if kind == false then finished = false end
      break
    end
    budget = budget - 1
    local onmessage = st.onmessage
    if onmessage and (kind == "text" or kind == "binary") and st.state == OPEN
        and st.qtail < st.qhead then
      -- The hot path (on_message -> deliver -> fire, inlined): a message
      -- for the handler, nothing queued before it.
      local ok, err = xpcall(onmessage, traceback, { type = "message", data = a,
        binary = kind == "binary", target = st.ws })
      if not ok then report_handler_error(st, "onmessage", err) end
    elseif not onmessage and (kind == "text" or kind == "binary") and st.state == OPEN then
      -- The other hot path: queued for receive() (on_message, inlined);
      -- the waiters are woken once, after the loop.
      queue_message(st, a, kind)
      queued = true
    else
      handle_event(st, kind, a, b, c)
    end
  end
  st.budget = budget
  if not finished and not st.drain_deferred then
    st.drain_deferred = true
    loop.defer(drain_later, st)
  end
  if queued and #st.waiters > 0 then loop.wake_all(st.waiters) end
  -- Output the core queued by itself (a pong, a close) was marked dirty by
  -- handle_event, and sends mark it: no check needed here.
  return finished
end
socket.drain = drain

local function pop_message(st)
  local head, queue, kinds = st.qhead, st.queue, st.kinds
  local data, kind = queue[head], kinds[head]
  queue[head], kinds[head] = nil, nil
  if head >= st.qtail then
    st.qhead, st.qtail = 1, 0
  else
    st.qhead = head + 1
  end
  if st.queue_paused and st.qtail - st.qhead + 1 <= math.floor(st.opts.max_queue / 2) then
    st.queue_paused = false
    refresh_interest(st)
    if st.conn then loop.defer(drain, st) end
  end
  return data, kind
end

local function deliver(st, data, kind)
  -- Built whole (target too): no table resize per message.
  fire(st, "onmessage", { type = "message", data = data, binary = kind == "binary",
    target = st.ws })
end

-- Messages queued for receive() before onmessage was set go to the handler
-- first, in order.
local function deliver_queued(st)
  st.delivering = false
  while st.onmessage and st.qtail >= st.qhead do
    deliver(st, pop_message(st))
  end
end

local function on_message(st, data, kind)
  if st.state ~= OPEN then return end -- the browser drops messages once closing
  if st.onmessage and st.qtail < st.qhead then
    deliver(st, data, kind)
  else
    queue_message(st, data, kind)
    if st.onmessage then
      if not st.delivering then st.delivering = true; loop.defer(deliver_queued, st) end
    elseif #st.waiters > 0 then
      loop.wake_all(st.waiters)
    end
  end
end

function handle_event(st, kind, a, b, c)
  if kind == "text" or kind == "binary" then
    on_message(st, a, kind)
  elseif kind == "ping" then
    loop.dirty(st) -- the pong the core queued
    if st.onping then fire(st, "onping", { type = "ping", data = a }) end
  elseif kind == "pong" then
    if st.onpong then fire(st, "onpong", { type = "pong", data = a }) end
  elseif kind == "close" then
    st.close_code, st.close_reason = a, b
    enter_closing(st)
    loop.dirty(st) -- our echo, or the wake-up that ends a completed handshake
  elseif kind == "error" then
    enter_closing(st)
    error_event(st, "frame: " .. a, b, c)
    loop.dirty(st) -- the close frame carrying code c
  end
end

-- Read and dispatch; TLS may hold decrypted bytes the poller cannot see
-- (SSL_has_pending), so keep reading while the transport has some.
function on_readable(st)
  repeat
    local conn = st.conn
    local n, want, name = conn:read(st.opts.max_step_bytes)
    if n == false then return on_eof(st) end
    if n == nil then return on_io_error(st, want, name) end
    if n == 0 then return end
    st.awaiting_pong = false -- any byte from the peer proves it is alive
    if not drain(st) then return end -- out of budget for this round
  until not (st.tls and st.conn and reading_wanted(st) and st.conn:pending())
end

-- The watcher method for an open (or closing) socket.
local function on_ready_open(st, events)
  if events >= 2 then flush(st) end -- writable(events), inlined: once per wake-up
  if events % 2 == 1 and st.conn then on_readable(st) end
end

---------------------------------------------------------------- keepalive

local function on_pong_timeout(st)
  st.pong_timer = nil
  if st.state == OPEN and st.awaiting_pong then
    abort(st, ("no data from the peer within ping_timeout (%gs) after a ping"):format(
      st.opts.ping_timeout), "timeout")
  end
end

local function on_ping_timer(st)
  st.ping_timer = nil
  if st.state ~= OPEN then return end
  if not st.awaiting_pong then
    st.awaiting_pong = true
    st.conn:ping("")
    loop.dirty(st)
    st.pong_timer = loop.timer(now() + st.opts.ping_timeout, on_pong_timeout, st)
  end
  st.ping_timer = loop.timer(now() + st.opts.ping_interval, on_ping_timer, st)
end

---------------------------------------------------------------- creation

-- A new socket object in CONNECTING state; role "client" or "server".
function socket.new(role, opts, url)
  local st = {
    state = CONNECTING, role = role, opts = opts,
    url = url or "", protocol = "", extensions = "",
    queue = {}, kinds = {}, qhead = 1, qtail = 0, outq_bytes = 0,
    waiters = {},
    on_ready = nil, -- the phase's watcher method
    flush = flush,
  }
  local ws = setmetatable({ [PRIV] = st }, mt)
  compat.on_collect(ws, mt.__gc)
  st.ws = ws
  st.counted = true
  loop.ref()
  return ws, st
end

-- Give st its transport (a conn whose fd exists).
function socket.attach(st, conn, on_ready, want_read, want_write)
  st.conn, st.fd = conn, conn:fd()
  st.on_ready = on_ready
  conn:limits(st.opts.max_payload, st.opts.max_frame)
  st.i_read, st.i_write = nil, nil
  set_interest(st, want_read, want_write)
end

-- The opening handshake succeeded: the socket is OPEN.
function socket.opened(st, protocol, extensions)
  st.conn:handshake_done()
  st.state = OPEN
  st.was_opened = true
  st.protocol, st.extensions = protocol or "", extensions or ""
  loop.cancel(st.connect_timer); st.connect_timer = nil
  st.on_ready = on_ready_open
  refresh_interest(st)
  if st.opts.ping_interval then
    st.ping_timer = loop.timer(now() + st.opts.ping_interval, on_ping_timer, st)
  end
  if st.opts.log then
    log.emit(st, "open", ("%s protocol %q extensions %q"):format(st.url, st.protocol,
      st.extensions))
  end
end

-- Announce the open socket and parse frames that came with the handshake.
function socket.announce(st, fire_onopen)
  if fire_onopen then fire(st, "onopen", { type = "open" }) end
  if #st.waiters > 0 then loop.wake_all(st.waiters) end
  if st.state == OPEN then
    drain(st)
    if st.conn and st.conn:pending() then loop.defer(on_readable, st) end
  end
end

-- What both sides' handshake watchers do first: send what is queued, then
-- read.  Returns true when new bytes wait to be parsed; false, message,
-- name when the stream ended (message nil at end of stream) or failed;
-- nothing when there is nothing to parse yet.
function socket.handshake_read(st, events)
  if writable(events) then
    flush(st)
    if st.state ~= CONNECTING then return nil end
  end
  if not readable(events) then return nil end
  local got = nil
  repeat -- TLS may hold more decrypted bytes than one read takes
    local n, message, name = st.conn:read()
    if n == false then return false end
    if n == nil then return false, message, name end
    if n > 0 then got = true end
  until n == 0 or not st.conn:pending()
  return got
end

-- The watcher interface: the loop calls st:on_ready(events).
function socket.dispatch(st, events) return st.on_ready(st, events) end

---------------------------------------------------------------- the object

local function priv(ws)
  local st = type(ws) == "table" and ws[PRIV] -- a raw field of every socket
  if not st then error("bad self (a moonws websocket expected)", 3) end
  return st
end

-- A message for the deflating queue: checked as conn:send checks; returns
-- true and the bytes now unsent, or nil, message, name.
local function send_later(st, data, binary)
  if not binary and not core.utf8_valid(data) then
    error("bad argument #1 to 'send' (invalid UTF-8 in a text message (send it as binary))", 3)
  end
  local queued = unsent(st)
  if queued >= st.opts.send_limit then
    return nil, ("send queue full: %d bytes wait for a peer that is not reading (send_limit)")
      :format(queued), "too_big"
  end
  outq_push(st, data, binary)
  return true, queued + #data
end

-- The hot path: one C call per message (it also applies send_limit and
-- fragment_size, and says how much is queued).
function methods.send(ws, data, kind)
  local st = priv(ws)
  if type(data) ~= "string" then
    error("bad argument #1 to 'send' (string expected, got " .. type(data) .. ")", 2)
  end
  local binary = options.send_kind(kind)
  local state = st.state
  if state ~= OPEN then
    if state == CONNECTING then
      error("send while CONNECTING: wait for onopen (or use moonws.connect)", 2)
    end
    return nil, "closed", "closed"
  end
  -- Event-style sends never wait, so a peer that stops reading would make
  -- the queue grow without end: past send_limit, refuse (queue nothing).
  local opts = st.opts
  local conn, ok, queued, name = st.conn, nil, nil, nil
  if st.outq or (#data > opts.max_step_bytes and conn:deflates(#data)) then
    ok, queued, name = send_later(st, data, binary)
  else
    ok, queued, name = conn:send(data, binary, opts.send_limit, opts.fragment_size)
  end
  if not ok then return nil, queued, name end
  loop.dirty(st)
  local limit = opts.send_buffer
  if queued > limit and loop.wait_mode() then
    loop.wait_until(function()
      return st.state ~= OPEN or st.conn == nil or unsent(st) <= limit
    end, nil, st.waiters, "send")
    if st.state ~= OPEN then return nil, "closed before the message was sent", "closed" end
  end
  return true
end

local function control(name, ws, data)
  local st = priv(ws)
  if data == nil then data = "" end
  if type(data) ~= "string" then
    error(("bad argument #1 to '%s' (string expected, got %s)"):format(name, type(data)), 3)
  end
  if #data > core.CONTROL_MAX then
    error(("bad argument #1 to '%s' (payload over 125 bytes)"):format(name), 3)
  end
  if st.state == CONNECTING then
    error(name .. " while CONNECTING: wait for onopen", 3)
  end
  if st.state ~= OPEN then return nil, "closed", "closed" end
  local ok, msg, ename = st.conn[name](st.conn, data)
  if not ok then return nil, msg, ename end
  loop.dirty(st)
  return true
end

for name, fn in pairs(loop.polling) do methods[name] = fn end -- cqueues.poll(ws)

function methods.ping(ws, data) return control("ping", ws, data) end
function methods.pong(ws, data) return control("pong", ws, data) end


-- Start the closing handshake (no waiting).
local function start_close(st, code, reason)
  if st.state == CONNECTING then
    abort(st, "closed before the connection was established", "closed")
  elseif st.state == OPEN then
    -- After what the deflating queue still holds, as the browser sends
    -- what was sent before close().
    if st.outq then st.close_after = { code, reason } else st.conn:close(code, reason) end
    enter_closing(st)
    loop.dirty(st)
  end
end

socket.start_close = start_close -- server:shutdown closes with 1001, which close() refuses

function methods.close(ws, code, reason)
  local st = priv(ws)
  code, reason = options.close_args(code, reason)
  start_close(st, code, reason)
  if st.state ~= CLOSED and loop.wait_mode() then
    loop.wait_until(function() return st.state == CLOSED end, nil, st.waiters, "close")
  end
  if st.state == CLOSED and not st.was_clean then
    return nil, "the closing handshake did not complete", "closed"
  end
  return true
end

function methods.terminate(ws)
  local st = priv(ws)
  if st.state ~= CLOSED then finish(st, 1006, "", false) end
end

function methods.receive(ws, timeout)
  local st = priv(ws)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("bad argument #1 to 'receive' (non-negative number expected)", 2)
  end
  -- A message already queued needs no waiting (nor a closure).
  if st.qtail >= st.qhead then return pop_message(st) end
  local deadline = timeout and now() + timeout
  local ok = loop.wait_until(function()
    return st.qtail >= st.qhead or st.state == CLOSED
  end, deadline, st.waiters, "receive")
  if st.qtail >= st.qhead then return pop_message(st) end
  if not ok then return nil, "receive timed out", "timeout" end
  if st.err_message then return nil, st.err_message, st.err_name end
  return nil, ("closed (%d%s)"):format(st.close_code,
    st.close_reason ~= "" and " " .. st.close_reason or ""), "closed"
end

function methods.pause(ws)
  local st = priv(ws)
  st.paused = true
  refresh_interest(st)
end

function methods.resume(ws)
  local st = priv(ws)
  if not st.paused then return end
  st.paused = false
  refresh_interest(st)
  if st.conn and st.state ~= CONNECTING then loop.defer(drain, st) end
end

function methods.getfd(ws)
  local st = priv(ws)
  return st.fd
end

-- stats([t]): what went through the connection (data messages; see
-- docs): messages_in, bytes_in, wire_bytes_in, inflated_in, messages_out,
-- bytes_out, wire_bytes_out.  Into t when given.  After the close, the
-- last values.
function methods.stats(ws, t)
  local st = priv(ws)
  if t ~= nil and type(t) ~= "table" then
    error("bad argument #1 to 'stats' (table expected, got " .. type(t) .. ")", 2)
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
for name in pairs(HANDLERS) do
  getters[name] = function(st) return st[name] end
end

function mt.__index(ws, k)
  local m = methods[k]
  if m ~= nil then return m end
  local g = getters[k]
  if g then return g(rawget(ws, PRIV)) end
  return nil
end

function mt.__newindex(ws, k, v)
  if HANDLERS[k] then
    if v ~= nil and type(v) ~= "function" then
      local m = getmetatable(v)
      if not (m and m.__call) then
        error(("%s must be a function (got %s)"):format(k, type(v)), 2)
      end
    end
    local st = rawget(ws, PRIV)
    st[k] = v
    repin(st)
    if k == "onmessage" and v and st.qtail >= st.qhead and not st.delivering then
      st.delivering = true
      loop.defer(deliver_queued, st)
    end
  elseif getters[k] then
    error(k .. " is read-only", 2)
  else
    rawset(ws, k, v)
  end
end

local STATE_NAMES = { [0] = "CONNECTING", "OPEN", "CLOSING", "CLOSED" }
function mt.__tostring(ws)
  local st = rawget(ws, PRIV)
  return ("moonws.websocket (%s, %s%s)"):format(STATE_NAMES[st.state], st.role,
    st.url ~= "" and ", " .. st.url or "")
end

-- `local ws <close> = ...`: close with 1000 at scope end, without waiting.
function mt.__close(ws)
  local st = rawget(ws, PRIV)
  if st.state == OPEN or st.state == CONNECTING then start_close(st, 1000, "") end
end

-- Collected while open: the C conn's own finalizer sends a close frame
-- without a status code and closes the socket; here the loop forgets it.
function mt.__gc(ws)
  local st = rawget(ws, PRIV)
  if st.counted then st.counted = false; loop.unref() end
  if st.lookup_cancel then st.lookup_cancel(st) end
end

socket.methods = methods
socket.priv = priv
return socket

-- moonws.latency -- round trips of pings: ws:ping() in coroutine style
-- waits for its pong and returns the seconds it took; ws.latency holds the
-- last round trip measured, by keepalive pings (ping_interval) or ws:ping
-- (0 until one is), as Python's websockets does.
--
-- A pong answers the ping with the same payload (RFC 6455 5.5.3); a peer
-- may answer only the latest of several pings, so a pong also settles
-- every ping sent before its own.  A ping that waits without a payload of
-- its own gets a unique one, so its pong cannot be another's.  At most
-- MAX_PENDING pings are remembered (a peer that never answers drops the
-- oldest).

local latency = {}

local MAX_PENDING = 16

-- A ping with payload went out at time `at` (the driver's clock).  The
-- record, whose rtt is set once a pong settles it.
function latency.sent(st, payload, at)
  local pending = st.pings
  if not pending then
    pending = {}
    st.pings = pending
  end
  if #pending == MAX_PENDING then table.remove(pending, 1) end
  local ping = { payload = payload, at = at }
  pending[#pending + 1] = ping
  return ping
end

-- A pong with payload came at time `at`: it settles its ping and the
-- ones before it (each gets its rtt; st.latency the newest).  Returns
-- whether it answered a ping (false: unsolicited).
function latency.pong(st, payload, at)
  local pending = st.pings
  if not pending then return false end
  for i = 1, #pending do
    if pending[i].payload == payload then
      local ping
      for _ = 1, i do
        ping = table.remove(pending, 1)
        ping.rtt = at - ping.at
      end
      if #pending == 0 then st.pings = nil end
      st.latency = ping.rtt
      return true
    end
  end
  return false
end

-- A payload no other ping of this socket has.
function latency.unique(st)
  st.ping_serial = (st.ping_serial or 0) + 1
  return ("moonws-ping-%d"):format(st.ping_serial)
end

return latency

-- spec/support/rawpeer.lua -- drive spec/peers/raw_peer.py (a raw-socket
-- WebSocket peer with its own framing and HTTP, not built on moonws) from
-- the protocol and handshake specs, and read back what it observed.
--
-- A script is a Lua list of one-key step tables (see raw_peer.py's header);
-- it goes to the peer as JSON on the command line.  Each observation the
-- peer prints is one JSON line, decoded here into a table.

local json = require "dkjson"
local process = require "spec.support.process"

local rawpeer = {}

local PEER = "spec/peers/raw_peer.py"
local PYTHON = "/usr/bin/python3"

local function start(argv, limit)
  return process.start(argv, limit or 30)
end

-- A raw peer that listens: rawpeer.server(steps) -> process (p:port(idle)).
function rawpeer.server(steps, limit)
  return start({ PYTHON, PEER, "server", json.encode(steps) }, limit)
end

-- A raw peer that connects to 127.0.0.1:port.
function rawpeer.client(port, steps, limit)
  return start({ PYTHON, PEER, "client", "127.0.0.1", tostring(port), json.encode(steps) }, limit)
end

-- Every observation so far, in order (the PORT line is skipped).
function rawpeer.events(p)
  local list = {}
  for line in p:stdout():gmatch("[^\n]+") do
    if line:sub(1, 1) == "{" then
      local ev, _, err = json.decode(line)
      assert(ev, ("raw peer printed bad JSON (%s): %s"):format(tostring(err), line))
      list[#list + 1] = ev
    end
  end
  return list
end

-- The observations with event == kind (and opcode == opcode when given).
function rawpeer.select(events, kind, opcode)
  local out = {}
  for _, ev in ipairs(events) do
    if ev.event == kind and (opcode == nil or ev.opcode == opcode) then out[#out + 1] = ev end
  end
  return out
end

-- The first observation satisfying pred, or nil.
function rawpeer.find(p, pred)
  for _, ev in ipairs(rawpeer.events(p)) do
    if pred(ev) then return ev end
  end
end

-- Wait (driving idle) until the peer has printed an observation of kind.
function rawpeer.wait_event(p, kind, timeout, idle)
  return p:wait_for('^{.*"event": "' .. kind .. '"', timeout or 10, idle) ~= nil
end

-- Wait for the peer to finish its script and exit; raise with its output
-- otherwise.  Returns its observations.
function rawpeer.finish(p, timeout, idle)
  if not p:wait_exit(timeout or 10, idle) then
    error(("raw peer did not finish in time\nstdout:\n%s\nstderr:\n%s"):format(
      p:stdout(), p:stderr()), 2)
  end
  local events = rawpeer.events(p)
  local last = events[#events]
  if not last or last.event ~= "done" then
    error(("raw peer failed\nstdout:\n%s\nstderr:\n%s"):format(p:stdout(), p:stderr()), 2)
  end
  return events
end

-- Bytes of a hex string, and hex of bytes.
function rawpeer.unhex(h)
  return (h:gsub("%x%x", function(c) return string.char(tonumber(c, 16)) end))
end

function rawpeer.hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- The value of header name (any case) in a peer's [[name, value]] list.
function rawpeer.header(headers, name)
  name = name:lower()
  for _, h in ipairs(headers or {}) do
    if h[1]:lower() == name then return h[2] end
  end
end

---------------------------------------------------------------- event logs

-- Record a socket's events into log, in order (kind plus the event's
-- fields; closes are timestamped with core.now()).
function rawpeer.record(ws, log)
  local core = require "moonws.core"
  ws.onopen = function() log[#log + 1] = { kind = "open" } end
  ws.onmessage = function(e)
    log[#log + 1] = { kind = "message", data = e.data, binary = e.binary }
  end
  ws.onerror = function(e)
    log[#log + 1] = { kind = "error", error = e.error, code = e.code, message = e.message }
  end
  ws.onclose = function(e)
    log[#log + 1] = { kind = "close", code = e.code, reason = e.reason, wasClean = e.wasClean,
      at = core.now() }
  end
  ws.onping = function(e) log[#log + 1] = { kind = "ping", data = e.data } end
end

-- The kinds of a log's entries, in order.
function rawpeer.kinds(log)
  local out = {}
  for i, e in ipairs(log) do out[i] = e.kind end
  return out
end

-- How many close events a log has (onclose must fire exactly once).
function rawpeer.count_closes(log)
  local n = 0
  for _, e in ipairs(log) do if e.kind == "close" then n = n + 1 end end
  return n
end

return rawpeer

-- moonws.log -- the `log` option: a trace of each connection's life
-- (connecting, accepted, open, refused, error, closed) naming the peer's
-- address, for whoever debugs a deployment.  Off by default and free when
-- off: every call site tests `st.opts.log` before formatting anything.
--
-- `log = true` writes one line per event to stderr; `log = function(line,
-- record)` receives the same line and a table { event, peer, url, message,
-- error, code, reason, clean } to route into the host's own logging.

local peer_address = require "moonws.peer_address"

local log = {}

local function stderr_sink(line)
  io.stderr:write(line, "\n")
end

-- The sink an option value stands for (options.lua has checked the type).
function log.sink(value)
  if value == true then return stderr_sink end
  return value or nil
end

-- Trace `event` of socket st; record carries the details for the line.
-- Errors in a user's sink go to loop.report like a handler's would.
function log.emit(st, event, message, record)
  local sink = st.opts.log
  if not sink then return end
  record = record or {}
  record.event, record.message = event, message
  record.peer = peer_address.join(st.remote_address, st.remote_port)
  record.url = st.url
  local line = ("moonws %s %s %s: %s"):format(st.role or "-", record.peer, event, message)
  local ok, err = pcall(sink, line, record)
  if not ok then
    require("moonws.loop").report("error in the log function: " .. tostring(err))
  end
end

return log

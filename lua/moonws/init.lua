-- moonws -- WebSocket (RFC 6455) client and server for Lua, on a C core.
--
-- The public API of docs/DESIGN.md section 1: event style (moonws.new + handler
-- fields + moonws.run), coroutine style (moonws.connect / ws:receive inside
-- moonws.spawn, or straight from a plain script), servers (moonws.listen,
-- moonws.serve), and the loop entry points for embedding.  Policy lives in
-- the Lua modules; the protocol lives in the C core (moonws.core).

local compat = require "moonws.compat"
local core = require "moonws.core"
local loop = require "moonws.loop"
local misuse = require "moonws.misuse"
local websocket = require "moonws.websocket"
local client = require "moonws.client"
local server = require "moonws.server"

local moonws = {
  _VERSION = "moonws scm",
  CONNECTING = websocket.CONNECTING,
  OPEN = websocket.OPEN,
  CLOSING = websocket.CLOSING,
  CLOSED = websocket.CLOSED,
  codes = core.codes,     -- codes[1009] == "MESSAGE_TOO_BIG", codes.NORMAL == 1000
  errors = core.errors,   -- stable error name -> description
}

function moonws.new(url, options) return client.new(url, options, "new") end
moonws.connect = client.connect
moonws.listen = server.listen
moonws.serve = server.serve
-- pubsub(url [, options]): Redis publish/subscribe; moonws.pubsub and
-- hiredis (moonws/redis.so) load on first use only.
function moonws.pubsub(url, options) return require("moonws.pubsub").new(url, options) end

moonws.spawn = loop.spawn
moonws.run = loop.run
moonws.stop = loop.stop
moonws.fd = loop.fd
moonws.next_timeout = loop.next_timeout
-- cqueues.poll(moonws) (or a socket, or a server) waits until moonws has
-- work, inside a cqueues controller: moonws:pollfd(), :events(), :timeout().
for name, fn in pairs(loop.polling) do moonws[name] = fn end

-- step([timeout]): one bounded round; timeout 0 never waits.
function moonws.step(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    misuse.arg(1, "step", "non-negative number expected")
  end
  return loop.step(timeout)
end

-- block_cache([on]) -> on, bytes held: the cache of small freed blocks in
-- front of this Lua state's allocator (docs/DESIGN.md 2.5); false turns it
-- off and restores the allocator, true turns it on again.
function moonws.block_cache(on)
  if on ~= nil and type(on) ~= "boolean" then
    misuse.arg(1, "block_cache", "boolean expected")
  end
  return core.block_cache(on)
end

-- sleep(seconds): yields inside a moonws coroutine, drives the loop on the
-- main thread.
function moonws.sleep(seconds)
  if type(seconds) ~= "number" or seconds < 0 then
    misuse.arg(1, "sleep", "non-negative number expected")
  end
  loop.wait_until(function() return false end, loop.now() + seconds, nil, "sleep")
end

-- onsignal(name, handler): run handler(name) in the loop when the process
-- gets signal name ("INT", "TERM", "HUP", "USR1", ...); returns a function
-- that removes it.  For clean shutdowns: close sockets, then let run() end.
function moonws.onsignal(name, handler)
  if type(name) ~= "string" then
    misuse.arg(1, "onsignal", "signal name expected, got " .. type(name))
  end
  if type(handler) ~= "function" then
    misuse.arg(2, "onsignal", "function expected, got " .. type(handler))
  end
  return loop.onsignal(name, handler)
end

-- graceful(server, ...): on SIGTERM or SIGINT, shut the servers down
-- (server:shutdown: stop accepting, close 1001 "going away", wait for the
-- closing handshakes up to close_timeout), then make moonws.run() return
-- so the script ends with status 0.  Returns a function that removes the
-- signal handlers.  A second signal while shutting down changes nothing.
function moonws.graceful(...)
  local servers = compat.pack(...)
  if servers.n == 0 then misuse.arg(1, "graceful", "a moonws server expected") end
  for i = 1, servers.n do
    if not server.is_server(servers[i]) then
      misuse.arg(i, "graceful", "a moonws server expected, got " .. type(servers[i]))
    end
  end
  local removers, started = {}, false
  local function remove()
    for _, r in ipairs(removers) do r() end
    removers = {}
  end
  local function on_signal()
    if started then return end
    started = true
    loop.spawn(function()
      for i = 1, servers.n do server.begin_shutdown(servers[i]) end
      for i = 1, servers.n do servers[i]:shutdown() end -- waits
      remove()
      loop.stop()
    end)
  end
  removers[1] = loop.onsignal("TERM", on_signal)
  removers[2] = loop.onsignal("INT", on_signal)
  return remove
end

-- moonws.onerror: errors no socket handler took (handler failures in
-- coroutines, accept failures); default: print to stderr.
setmetatable(moonws, {
  __newindex = function(t, k, v)
    if k == "onerror" then
      loop.onerror = v
    else
      rawset(t, k, v)
    end
  end,
  __index = function(t, k)
    if k == "onerror" then return loop.onerror end
  end,
})

return moonws

-- examples/pool/server.lua -- one worker of examples/pool/pool.lua: an echo
-- server that greets each client with its process id.  It also runs alone:
--
--   lua5.4 examples/pool/server.lua [port]
--
-- Every worker listens on the same port with reuseport = true; the kernel
-- spreads new connections among them.  moonws.graceful makes SIGTERM (or
-- SIGINT) close every client with 1001 "going away", wait for the closing
-- handshakes (up to close_timeout), and end moonws.run(): the exit status
-- is 0.

-- Run from a checkout without installing (harmless once installed).
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

local moonws = require "moonws"
local pool = require "moonws.pool"

local server = assert(moonws.listen {
  host = "127.0.0.1", port = tonumber(arg[1]) or 8080,
  reuseport = true,
  close_timeout = 5,
})
server.onconnection = function(ws)
  ws:send("hello from " .. pool.getpid())
  ws.onmessage = function(e) ws:send(e.data, e.binary and "binary" or "text") end
end

moonws.graceful(server) -- SIGTERM/SIGINT: close 1001, drain, exit 0
pool.ready()            -- a rolling restart (SIGHUP to the pool) may retire the old worker now
moonws.run()

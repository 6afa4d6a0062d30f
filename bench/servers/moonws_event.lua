-- bench/servers/moonws_event.lua -- moonws echo server, event style.
--
--   lua5.4 bench/servers/moonws_event.lua PORT [TLS_PORT CERT KEY]
--
-- Run from the checkout root (bench/run does): it loads moonws from lua/ and
-- ./moonws/core.so.  Echoes every message with its kind; binds 127.0.0.1.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

-- Lua-level profile for bench/run's hot-path probe (bench/servers/luaprof.lua).
local luaprof = os.getenv("BENCH_LUAPROF") and dofile("bench/servers/luaprof.lua")
local moonws = require "moonws"
if luaprof then luaprof(moonws) end
-- The Lua heap on SIGUSR2, for bench/instr.lua's memory guard.
if os.getenv("BENCH_HEAP") then dofile("bench/servers/heap_report.lua")(moonws) end
-- BENCH_BLOCK_CACHE=off: Lua's allocations go straight to malloc (the
-- malloc-counting shim then sees every one).
if os.getenv("BENCH_BLOCK_CACHE") == "off" then moonws.block_cache(false) end

local function echo(ws)
  ws.onmessage = function(e) ws:send(e.data, e.binary and "binary" or "text") end
end

local port, tls_port, cert, key = tonumber(arg[1]), tonumber(arg[2]), arg[3], arg[4]
local server = assert(moonws.listen { host = "127.0.0.1", port = port, backlog = 4096,
  reuseport = os.getenv("MOONWS_WORKER") ~= nil }) -- a worker of a moonws.pool row
server.onconnection = echo
if tls_port then
  local tls_server = assert(moonws.listen { host = "127.0.0.1", port = tls_port, backlog = 4096,
    tls = { cert = cert, key = key } })
  tls_server.onconnection = echo
end
moonws.run()

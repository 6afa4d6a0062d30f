-- bench/servers/hostile_moonws.lua -- the README's echo sample with
-- permessage-deflate on, for bench/hostile.py (a server under attack).
--
--   lua5.4 bench/servers/hostile_moonws.lua PORT
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath
local moonws = require "moonws"

local server = assert(moonws.listen { host = "127.0.0.1", port = tonumber(arg[1]),
  compression = true })
server.onconnection = function(ws, request)
  ws.onmessage = function(e) ws:send(e.data, e.binary and "binary" or "text") end
end
moonws.run()

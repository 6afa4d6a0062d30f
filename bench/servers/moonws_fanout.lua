-- bench/servers/moonws_fanout.lua PORT [compress] -- the fan-out row:
-- sockets on /sub subscribe to one topic; what the socket on /pub sends is
-- published to them (bench/fanout.c is the client).  compress: accept
-- permessage-deflate (the client asks for no context takeover, so one
-- compression serves every subscriber).
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath
local moonws = require "moonws"

local server = assert(moonws.listen {
  host = "127.0.0.1", port = tonumber(arg[1]), backlog = 4096,
  compression = arg[2] == "compress" and { threshold = 0 } or false,
})
server.onconnection = function(ws, req)
  if req.path == "/sub" then
    ws:subscribe("bench")
  else
    ws.onmessage = function(e) server:publish("bench", e.data, e.binary and "binary" or "text") end
  end
end
print("listening")
io.stdout:flush()
moonws.run()

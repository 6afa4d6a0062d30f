-- examples/echo_server.lua -- an event-style echo server.
--
--   lua5.4 examples/echo_server.lua [port]
--
-- Echoes every message with its kind, answers "close please" by closing
-- with 4000/"bye", and prints each connection's close code and reason.

-- Run from a checkout without installing (harmless once installed).
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

local moonws = require "moonws"

local server = assert(moonws.listen { host = "127.0.0.1", port = tonumber(arg[1]) or 8080 })
print(("server: listening on ws://127.0.0.1:%d"):format(server.port))
io.stdout:flush()

server.onconnection = function(ws, request)
  print(("server: connection from %s to %s"):format(request.headers["user-agent"] or "a client",
    request.path))
  ws.onmessage = function(event)
    if event.binary then
      print(("server: got %d binary bytes: %s"):format(#event.data,
        event.data:gsub(".", function(c) return ("%02x "):format(c:byte()) end)))
    else
      print(("server: got text %q"):format(event.data))
    end
    if event.data == "close please" then
      ws:close(4000, "bye")
    else
      ws:send(event.data, event.binary and "binary" or "text")
    end
  end
  ws.onclose = function(event)
    print(("server: closed with %d %q (clean: %s)"):format(event.code, event.reason,
      tostring(event.wasClean)))
    io.stdout:flush()
  end
end

moonws.run()

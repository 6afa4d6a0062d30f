-- examples/embed/flood_server.lua -- the peer for the embedding examples.
--
--   lua5.4 examples/embed/flood_server.lua [port]
--
-- Serves on 127.0.0.1 (port 0 by default: prints "PORT <n>" once
-- listening).  For each message a client sends:
--   "flood SMALL LARGE SIZE"  answers with SMALL + LARGE messages as fast
--       as the connection takes them: small text messages, with LARGE
--       binary messages of SIZE bytes spread among them.  Every message
--       starts with "<seq> <length>|" so the client can check order and
--       size (the game host's test, examples/embed/game.lua);
--   anything else  is echoed back as "echo: <message>", of the same kind
--       (the LÖVE game, examples/love/).
-- When a client has closed, prints "server: closed <code> <reason>".

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

local moonws = require "moonws"

-- Message seq of a flood: its length in bytes, "<seq> <length>|" first.
local function message(seq, length)
  local head = ("%d %d|"):format(seq, length)
  return head .. ("x"):rep(length - #head)
end

-- Send the flood; false once the client has gone.  send() waits (in this
-- coroutine) while send_buffer (1 MiB) is queued: as fast as the client
-- reads, with bounded memory.
local function flood(ws, small, large, size)
  local total = small + large
  local every = large > 0 and total // (large + 1) or math.huge
  local sent_large = 0
  for seq = 1, total do
    local ok
    if seq % every == 0 and sent_large < large then
      sent_large = sent_large + 1
      ok = ws:send(message(seq, size), "binary")
    else
      ok = ws:send(message(seq, 32))
    end
    if not ok then return false end
  end
  return true
end

local server = assert(moonws.serve({ host = "127.0.0.1", port = tonumber(arg[1]) or 0 },
  function(ws)
    while true do
      local data, kind = ws:receive()
      if not data then break end
      local small, large, size = data:match("^flood (%d+) (%d+) (%d+)$")
      local going_on
      if small then
        going_on = flood(ws, tonumber(small), tonumber(large), tonumber(size))
      else
        going_on = ws:send("echo: " .. data, kind)
      end
      if not going_on then break end
    end
    -- receive() returns nil once the socket is CLOSED, with closeCode and
    -- closeReason set (after a failed send, what is left is dropped).
    while ws:receive() do end
    print(("server: closed %s %s"):format(tostring(ws.closeCode), tostring(ws.closeReason)))
    io.stdout:flush()
  end))
print("PORT " .. server.port)
io.stdout:flush()
moonws.run()

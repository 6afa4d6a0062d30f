-- examples/client.lua -- a client bot in coroutine style.
--
--   lua5.4 examples/client.lua ws://127.0.0.1:8080/chat
--
-- Connects, sends a few messages, prints each echo, asks the server to
-- close, and prints the close code and reason it saw.

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

local moonws = require "moonws"

local url = arg[1] or "ws://127.0.0.1:8080/chat"

moonws.spawn(function()
  local ws, err = moonws.connect(url, { timeout = 5, headers = { ["User-Agent"] = "moonws-demo-bot" } })
  if not ws then
    print("client: cannot connect: " .. err)
    os.exit(1)
  end
  print("client: connected to " .. ws.url)
  for _, text in ipairs { "Hello Server!", "how are you?", "¡olé! ✓" } do
    assert(ws:send(text))
    print(("client: sent %q, got back %q"):format(text, (ws:receive(5))))
  end
  assert(ws:send("\0\1\2\255", "binary"))
  local data, kind = ws:receive(5)
  print(("client: sent 4 binary bytes, got back %d %s bytes"):format(#data, kind))

  assert(ws:send("close please"))
  local _, message, name = ws:receive(5)
  print(("client: receive ended: %s (%s)"):format(message, name))
  print(("client: closed with %d %q"):format(ws.closeCode, ws.closeReason))
end)
moonws.run()

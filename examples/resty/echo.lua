-- examples/resty/echo.lua -- a WebSocket echo endpoint inside nginx:
--   location /echo { content_by_lua_file /path/to/examples/resty/echo.lua; }
-- One request handler per connection, in coroutine style: receive() and
-- send() yield to nginx while they wait (cosockets), so thousands of
-- these run side by side in one worker.
local resty = require "moonws.resty"

local ws, err = resty.upgrade {
  protocols = { "echo" },        -- chosen when the client offers it
  compression = true,            -- accept permessage-deflate
  max_payload = 1024 * 1024,     -- bigger messages: close 1009
}
if not ws then
  -- Not a valid WebSocket request: upgrade() already answered (400, 426 ...).
  ngx.log(ngx.INFO, "no upgrade: ", err)
  return
end

while true do
  local data, kind = ws:receive()         -- kind: "text" | "binary"
  if not data then                        -- closed: kind is the message
    ngx.log(ngx.INFO, "websocket ended: ", kind, " (code ", ws.closeCode, ")")
    break
  end
  if data == "bye" then
    ws:close(1000, "goodbye")             -- waits for the client's close frame
    break
  end
  if not ws:send(data, kind) then break end
end
-- Returning ends the request: nginx closes the TCP connection.

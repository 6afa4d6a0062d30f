-- examples/resty/client.lua -- moonws.resty as a client from inside nginx:
--   location /relay { content_by_lua_file /path/to/examples/resty/client.lua; }
-- GET /relay?url=wss://echo.example/ sends one message to that WebSocket
-- server and answers with what came back.  wss:// certificates are
-- checked against lua_ssl_trusted_certificate (nginx.conf), and host
-- names need nginx's `resolver` directive (localhost is dialled as
-- 127.0.0.1).
local resty = require "moonws.resty"

local url = ngx.var.arg_url
if not url then
  ngx.status = 400
  ngx.say("give ?url=ws://... or wss://...")
  return
end
local ws, err, name = resty.connect(ngx.unescape_uri(url), { timeout = 10 })
if not ws then
  ngx.status = 502
  ngx.say("cannot connect (", name, "): ", err)
  return
end
ws:send("hello from nginx")
local data, kind = ws:receive(10)
ws:close(1000, "done")
ngx.say(data and ("got " .. kind .. ": " .. data) or ("no answer: " .. tostring(kind)))

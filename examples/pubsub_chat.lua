-- examples/pubsub_chat.lua -- a chat server that scales out through Redis.
--
--   lua5.4 examples/pubsub_chat.lua [port [redis_url]]
--   (or PORT=8080 REDIS_URL=redis://127.0.0.1:6379 CHAT_CHANNEL=moonws:chat)
--
-- Every text a client sends goes at once to this server's own clients
-- (the sender included) and, through moonws.pubsub, to every other server
-- process subscribed to the same channel, which passes it to its clients.
-- While Redis is away the local chat keeps working; the sender is told
-- its message did not leave this server, and once Redis is back every
-- client hears that messages from other servers may have been missed.
-- Port 0 picks a free port; the server prints "PORT <n>" once listening.

-- Run from a checkout without installing (harmless once installed).
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

local moonws = require "moonws"

local port = tonumber(arg[1] or os.getenv("PORT") or 8080)
local redis_url = arg[2] or os.getenv("REDIS_URL") or "redis://127.0.0.1:6379"
local channel = os.getenv("CHAT_CHANNEL") or "moonws:chat"

-- Our own messages come back from Redis too: an id tells them apart.
local function random_id()
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(8)
  f:close()
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
local self_id = random_id()

local server = assert(moonws.listen { host = "127.0.0.1", port = port })
local clients = {} -- ws -> true

local function broadcast(text)
  for ws in pairs(clients) do ws:send(text) end
end

local ps = moonws.pubsub(redis_url)

ps:subscribe(channel, function(data)
  local origin, text = data:match("^(%x+)\n(.*)$")
  if origin and origin ~= self_id then broadcast(text) end
end)

ps.onlost = function(event)
  print(("chat: %d message(s) not relayed: %s"):format(event.count, event.message))
end
ps.ondisconnect = function(event)
  print(("chat: redis %s connection down: %s"):format(event.role, event.message))
end
ps.onreconnect = function(event)
  print(("chat: redis is back after %.1f s"):format(event.down_for))
  if event.missed then
    broadcast("! reconnected to redis; messages from other servers may have been missed")
  end
end

server.onconnection = function(ws)
  clients[ws] = true
  ws.onmessage = function(event)
    if event.binary then return end
    broadcast(event.data)
    local ok, message = ps:publish(channel, self_id .. "\n" .. event.data)
    if not ok then ws:send("! not relayed to other servers: " .. message) end
  end
  ws.onclose = function() clients[ws] = nil end
end

moonws.onsignal("TERM", function()
  server:close()
  for ws in pairs(clients) do ws:close(1001, "server going away") end
  ps:close()
  moonws.stop()
end)

print("PORT " .. server.port)
io.stdout:flush()
moonws.spawn(function()
  if ps:wait(10) then print("REDIS ready") else print("REDIS not reachable yet") end
  io.stdout:flush()
end)
moonws.run()

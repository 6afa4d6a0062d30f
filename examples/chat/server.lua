-- examples/chat/server.lua -- a small chat: one moonws server that serves
-- its own page over plain HTTP and relays every message to every client.
--
--   lua5.4 examples/chat/server.lua [port [redis_url]]
--   (or PORT=8080 REDIS_URL=redis://127.0.0.1:6379 in the environment)
--
-- Open http://127.0.0.1:8080/ in two browser tabs and type.  The page is
-- examples/chat/index.html; it connects back to ws://<same host>/chat.
-- Compression (permessage-deflate) is on, so browsers negotiate it.
-- Ctrl-C (or SIGTERM) closes every client with 1001 "server going away".
--
-- With a Redis URL, every line also goes through moonws.pubsub to every
-- other chat server on that Redis, so several processes -- the workers of
-- a moonws.pool on one port (reuseport), or machines behind nginx -- make
-- one room.  While Redis is away the local room keeps working and the
-- sender is told its line did not leave this server.

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

local moonws = require "moonws"

local here = arg[0]:match("^(.*)/[^/]*$") or "."
local page = assert(io.open(here .. "/index.html", "rb")):read("a")

local port = tonumber(arg[1] or os.getenv("PORT") or 8080)
local redis_url = arg[2] or os.getenv("REDIS_URL")

local function log(fmt, ...)
  print(("chat: " .. fmt):format(...))
  io.stdout:flush()
end

local server = assert(moonws.listen {
  host = "127.0.0.1", port = port,
  reuseport = os.getenv("MOONWS_WORKER") ~= nil, -- a worker of moonws.pool
  compression = true,
  max_payload = 64 * 1024,               -- a chat line, not a file upload
  -- Plain HTTP GET (no Upgrade header): the page itself.
  request = function(req)
    if req.path == "/" or req.path == "/index.html" then
      return 200, { ["Content-Type"] = "text/html; charset=utf-8" }, page
    end
    return 404, { ["Content-Type"] = "text/plain" }, "not found\n"
  end,
  -- Only the chat endpoint upgrades.
  handshake = function(req)
    if req.path ~= "/chat" then return false, 404, "no such endpoint" end
    return true
  end,
})
log("listening on http://127.0.0.1:%d/ (WebSocket at ws://127.0.0.1:%d/chat)", server.port,
  server.port)

local function broadcast(text)
  for ws in server:clients() do ws:send(text) end
end

-- Across processes: lines from other servers arrive through Redis; our
-- own come back too, and an id per process tells them apart.
local relay
if redis_url then
  local urandom = assert(io.open("/dev/urandom", "rb"))
  local self_id = urandom:read(8):gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  urandom:close()
  local ps = moonws.pubsub(redis_url)
  ps:subscribe("moonws:chat", function(data)
    local origin, text = data:match("^(%x+)\n(.*)$")
    if origin and origin ~= self_id then broadcast(text) end
  end)
  ps.ondisconnect = function(e) log("redis %s connection down: %s", e.role, e.message) end
  ps.onreconnect = function(e)
    log("redis is back")
    if e.missed then broadcast("! reconnected to redis; lines from other servers may be lost") end
  end
  ps.onlost = function(e) log("%d line(s) not relayed: %s", e.count, e.message) end
  moonws.spawn(function() log(ps:wait(10) and "redis ready" or "redis not reachable yet") end)
  relay = {
    send = function(text) return ps:publish("moonws:chat", self_id .. "\n" .. text) end,
    close = function() ps:close() end,
  }
end

local guests = 0
server.onconnection = function(ws)
  guests = guests + 1
  local worker = os.getenv("MOONWS_WORKER")
  local name = "guest" .. guests .. (worker and "@" .. worker or "")
  log("%s joined (extensions: %q)", name, ws.extensions)
  ws:send("* you are " .. name)
  broadcast("* " .. name .. " joined")
  ws.onmessage = function(event)
    if event.binary then return end      -- the page only sends text
    log("%s says %q", name, event.data)
    broadcast(name .. ": " .. event.data)
    if relay then
      local ok, why = relay.send(name .. ": " .. event.data)
      if not ok then ws:send("! not relayed to other servers: " .. why) end
    end
  end
  ws.onclose = function(event)
    log("%s left (%d %q)", name, event.code, event.reason)
    broadcast("* " .. name .. " left")
  end
end

-- A clean shutdown: stop accepting, close every client with 1001 and wait
-- for their answers (up to close_timeout), then let run() return.
local function shutdown(signal)
  log("got SIG%s, closing", signal)
  moonws.spawn(function()
    server:shutdown(1001, "server going away")
    if relay then relay.close() end
    moonws.stop()
  end)
end
moonws.onsignal("INT", shutdown)
moonws.onsignal("TERM", shutdown)

moonws.run()
log("stopped")

-- examples/chat/server.lua -- a small chat: one moonws server that serves
-- its own page over plain HTTP, keeps its rooms as topics, and serves its
-- counters at /metrics (Prometheus text).
--
--   lua5.4 examples/chat/server.lua [port [redis_url]]
--   (or PORT=8080 REDIS_URL=redis://127.0.0.1:6379 in the environment)
--
-- Open http://127.0.0.1:8080/ in two browser tabs and type.  The page is
-- examples/chat/index.html; it connects back to ws://<same host>/chat, the
-- room "lobby"; ws://<host>/chat/<room> joins another room.  Compression
-- (permessage-deflate) is on without server context takeover, so a line
-- is compressed once for all the room (docs/TOPICS.md).
-- Ctrl-C (or SIGTERM) closes every client with 1001 "server going away".
--
-- With a Redis URL, the server's topics go through moonws.pubsub, so the
-- rooms of every chat server on that Redis are the same rooms: the workers
-- of a moonws.pool on one port (reuseport), or machines behind nginx.
-- While Redis is away the local room keeps working and the sender is told
-- its line did not leave this server.

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

-- Across processes: the server's topics go through Redis.
local ps
if redis_url then
  ps = moonws.pubsub(redis_url)
  ps.ondisconnect = function(e) log("redis %s connection down: %s", e.role, e.message) end
  ps.onlost = function(e) log("%d line(s) not relayed: %s", e.count, e.message) end
  moonws.spawn(function() log(ps:wait(10) and "redis ready" or "redis not reachable yet") end)
end

local metrics = require "moonws.metrics"
local server
server = assert(moonws.listen {
  host = "127.0.0.1", port = port,
  reuseport = os.getenv("MOONWS_WORKER") ~= nil, -- a worker of moonws.pool
  -- One compression of a line for the whole room (no context takeover).
  compression = { server_no_context_takeover = true, threshold = 0 },
  max_payload = 64 * 1024,               -- a chat line, not a file upload
  pubsub = ps,                           -- rooms shared through Redis, or nil
  -- Plain HTTP GET (no Upgrade header): the page itself, and the counters.
  request = function(req)
    if req.path == "/" or req.path == "/index.html" then
      return 200, { ["Content-Type"] = "text/html; charset=utf-8" }, page
    end
    if req.path == "/metrics" then return metrics.response(server) end
    return 404, { ["Content-Type"] = "text/plain" }, "not found\n"
  end,
  -- Only the chat endpoints upgrade: /chat (the lobby) and /chat/<room>.
  handshake = function(req)
    if req.path ~= "/chat" and not req.path:match("^/chat/[%w_-]+$") then
      return false, 404, "no such endpoint"
    end
    return true
  end,
})
log("listening on http://127.0.0.1:%d/ (WebSocket at ws://127.0.0.1:%d/chat)", server.port,
  server.port)

-- A line for everyone in the room: through Redis when there is one; when
-- Redis refuses it, to this server's part of the room, and the sender is
-- told.  Join and leave notices stay on their server (here).
local function say(room, text, sender, here)
  if here then return server:publish(room, text, nil, { relay = false }) end
  local ok, why = server:publish(room, text)
  if not ok then
    server:publish(room, text, nil, { relay = false })
    if sender then sender:send("! not relayed to other servers: " .. why) end
  end
end

if ps then
  ps.onreconnect = function(e)
    log("redis is back")
    if e.missed then server:broadcast("! reconnected to redis; lines from other servers may be lost") end
  end
end

local guests = 0
server.onconnection = function(ws, req)
  guests = guests + 1
  local worker = os.getenv("MOONWS_WORKER")
  local name = "guest" .. guests .. (worker and "@" .. worker or "")
  local room = req.path:match("^/chat/(.+)$") or "lobby"
  log("%s joined %s (extensions: %q)", name, room, ws.extensions)
  ws:send("* you are " .. name)
  ws:subscribe(room)
  -- Through Redis, the room's channel is subscribed before the guest is
  -- told it joined: from then on, lines from other servers reach it.
  moonws.spawn(function()
    if ps then ps:wait(5) end
    say(room, "* " .. name .. " joined", nil, true)
  end)
  ws.onmessage = function(event)
    if event.binary then return end      -- the page only sends text
    log("%s says %q", name, event.data)
    say(room, name .. ": " .. event.data, ws)
  end
  ws.onclose = function(event)
    log("%s left (%d %q)", name, event.code, event.reason)
    say(room, "* " .. name .. " left", nil, true)
  end
end

-- A clean shutdown: stop accepting, close every client with 1001 and wait
-- for their answers (up to close_timeout), then let run() return.
local function shutdown(signal)
  log("got SIG%s, closing", signal)
  moonws.spawn(function()
    server:shutdown(1001, "server going away")
    if ps then ps:close() end
    moonws.stop()
  end)
end
moonws.onsignal("INT", shutdown)
moonws.onsignal("TERM", shutdown)

moonws.run()
log("stopped")

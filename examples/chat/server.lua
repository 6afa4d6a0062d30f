-- examples/chat/server.lua -- a small chat: one moonws server that serves
-- its own page over plain HTTP and relays every message to every client.
--
--   lua5.4 examples/chat/server.lua [port]        (or PORT=8080 in the environment)
--
-- Open http://127.0.0.1:8080/ in two browser tabs and type.  The page is
-- examples/chat/index.html; it connects back to ws://<same host>/chat.
-- Compression (permessage-deflate) is on, so browsers negotiate it.
-- Ctrl-C (or SIGTERM) closes every client with 1000 "server going away".

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

local moonws = require "moonws"

local here = arg[0]:match("^(.*)/[^/]*$") or "."
local page = assert(io.open(here .. "/index.html", "rb")):read("a")

local port = tonumber(arg[1] or os.getenv("PORT") or 8080)

local function log(fmt, ...)
  print(("chat: " .. fmt):format(...))
  io.stdout:flush()
end

local server = assert(moonws.listen {
  host = "127.0.0.1", port = port,
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

local guests = 0
server.onconnection = function(ws)
  guests = guests + 1
  local name = "guest" .. guests
  log("%s joined (extensions: %q)", name, ws.extensions)
  ws:send("* you are " .. name)
  broadcast("* " .. name .. " joined")
  ws.onmessage = function(event)
    if event.binary then return end      -- the page only sends text
    log("%s says %q", name, event.data)
    broadcast(name .. ": " .. event.data)
  end
  ws.onclose = function(event)
    log("%s left (%d %q)", name, event.code, event.reason)
    broadcast("* " .. name .. " left")
  end
end

-- A clean shutdown: stop accepting, say goodbye to every client; run()
-- returns once the last closing handshake is done.
local function shutdown(signal)
  log("got SIG%s, closing", signal)
  server:close()
  for ws in server:clients() do ws:close(1000, "server going away") end
end
moonws.onsignal("INT", shutdown)
moonws.onsignal("TERM", shutdown)

moonws.run()
log("stopped")

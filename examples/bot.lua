-- examples/bot.lua -- a client bot that stays connected.
--
--   lua5.4 examples/bot.lua [URL] [--min-delay=S] [--max-delay=S]
--                           [--ping-interval=S] [--ping-timeout=S]
--
-- URL defaults to $MOONWS_URL, then ws://127.0.0.1:8080/bot.  The bot says
-- hello, prints what it receives, and keeps the connection checked with
-- keepalive pings (a peer silent for ping-timeout seconds is dropped).
-- When the connection is lost it reconnects, waiting longer after each
-- failed attempt (exponential backoff with jitter).  SIGINT or SIGTERM
-- closes the connection with 1000 and ends the process with status 0.

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

local moonws = require "moonws"

local url = os.getenv("MOONWS_URL") or "ws://127.0.0.1:8080/bot"
local settings = { min_delay = 0.5, max_delay = 30, ping_interval = 15, ping_timeout = 10 }
for _, a in ipairs(arg) do
  local key, value = a:match("^%-%-([%w-]+)=(.+)$")
  if key and settings[key:gsub("%-", "_")] and tonumber(value) then
    settings[key:gsub("%-", "_")] = tonumber(value)
  elseif a:match("^wss?://") then
    url = a
  else
    io.stderr:write("bot: unknown argument " .. a .. "\n")
    os.exit(2)
  end
end

local function log(fmt, ...)
  print(("bot: " .. fmt):format(...))
  io.stdout:flush()
end

local stopping = false   -- set by SIGINT/SIGTERM
local current            -- the open socket, if any

-- The delay before retry n: "equal jitter" backoff.  The cap doubles each
-- time up to max_delay, and the delay is a random point in the cap's upper
-- half: retries grow, and many bots that lost the same server spread out
-- instead of coming back all at once.
local function backoff(n)
  local cap = math.min(settings.max_delay, settings.min_delay * 2 ^ (n - 1))
  return cap / 2 + math.random() * cap / 2
end

-- Wait in short slices, so that a signal ends the wait at once.
local function pause(seconds)
  local slices = math.max(1, math.ceil(seconds / 0.05))
  for _ = 1, slices do
    if stopping then return end
    moonws.sleep(seconds / slices)
  end
end

-- One connection's life: hello, then print messages until it closes.
local function session(ws)
  local closed
  ws.onpong = function() log("heartbeat: pong") end
  ws.onclose = function(event) closed = event end
  ws:send("hello from bot")
  while true do
    local data, message, name = ws:receive()
    if not data then
      if name ~= "closed" then log("connection lost (%s): %s", name, message) end
      break
    end
    log("received %q", data)
  end
  log("closed: %d %q (clean: %s)", closed.code, closed.reason, tostring(closed.wasClean))
end

local function shutdown(signal)
  log("got SIG%s, shutting down", signal)
  stopping = true
  if current and current.readyState == moonws.OPEN then
    current:close(1000, "bot shutting down")
  end
end
local unwatch = { moonws.onsignal("INT", shutdown), moonws.onsignal("TERM", shutdown) }

moonws.spawn(function()
  local failures = 0
  while not stopping do
    local ws, message, name = moonws.connect(url, {
      timeout = 5,
      ping_interval = settings.ping_interval,
      ping_timeout = settings.ping_timeout,
      headers = { ["User-Agent"] = "moonws-example-bot" },
    })
    if ws then
      log("connected to %s after %d failed attempts", ws.url, failures)
      failures = 0
      current = ws
      if stopping then ws:close(1000, "bot shutting down") end -- the signal came while connecting
      session(ws)
      current = nil
    elseif not stopping then
      failures = failures + 1
      local delay = backoff(failures)
      log("connect failed (%s): %s; retry %d in %.3fs", name, message, failures, delay)
      pause(delay)
    end
  end
  for _, remove in ipairs(unwatch) do remove() end
end)

moonws.run()
log("stopped")

-- examples/game_loop.lua -- moonws inside a game's frame loop.
--
--   lua5.4 examples/game_loop.lua [URL] [FRAMES]
--
-- URL defaults to $MOONWS_URL, then ws://127.0.0.1:8080/game (an echo
-- server such as examples/echo_server.lua); FRAMES defaults to 300.
--
-- A game owns its loop: each frame it updates the world, renders, and
-- waits for the next frame (60 per second).  moonws fits in as one call per
-- frame, moonws.step(0), which does the ready network work and never
-- waits.  Here the "world" is a dot moving along a line; every 6th frame
-- its position goes to the server, and the echoes are checked against what
-- was sent.  After FRAMES frames the game closes the socket and exits.
--
-- The frame clock comes from luasystem (Debian: lua-system), standing in
-- for the engine's timer (love.timer, SDL_GetTicks, ...).

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

local moonws = require "moonws"
local ok, system = pcall(require, "system")
if not ok then
  io.stderr:write("game_loop.lua needs luasystem for its frame clock: apt-get install lua-system\n")
  os.exit(2)
end

local url = arg[1] or os.getenv("MOONWS_URL") or "ws://127.0.0.1:8080/game"
local frames = math.tointeger(tonumber(arg[2])) or 300
local FRAME = 1 / 60

local function log(fmt, ...)
  print(("game: " .. fmt):format(...))
  io.stdout:flush()
end

-- The network side: plain event handlers, run from inside moonws.step(0).
local pending = {}            -- text sent -> frame it was sent in
local sent, echoed, mismatched, latency = 0, 0, 0, 0
local closed
local frame = 0

local ws = moonws.new(url)
ws.onopen = function() log("connected at frame %d", frame) end
ws.onmessage = function(event)
  local at = pending[event.data]
  if at then
    pending[event.data] = nil
    echoed = echoed + 1
    latency = frame - at
  else
    mismatched = mismatched + 1
    log("unexpected message %q", event.data)
  end
end
ws.onerror = function(event) log("network error: %s", event.message) end
ws.onclose = function(event)
  closed = event
  log("closed at frame %d: %d %q (clean: %s)", frame, event.code, event.reason,
    tostring(event.wasClean))
end

-- The game side.
local x, speed = 0.0, 12.5     -- units, units per second

local function update(dt)
  x = x + speed * dt
  if x > 100 or x < 0 then speed = -speed end
  if frame % 6 == 0 and frame < frames and ws.readyState == moonws.OPEN then
    local text = ("pos %d %.3f"):format(frame, x)
    pending[text] = frame
    ws:send(text)
    sent = sent + 1
  end
end

local function render()
  if frame % 60 == 0 then
    log("frame %d: x=%.1f sent=%d echoed=%d (last echo took %d frames)", frame, x, sent,
      echoed, latency)
  end
end

-- The end: stop sending, and close once the last echoes are back (or a
-- second later).  close() waits for the closing handshake; inside a moonws
-- coroutine that wait happens in the loop, so no frame ever stalls.
local closing = false
local function finish()
  if frame == frames then log("%d frames done, closing after the last echoes", frames) end
  if not closing and (next(pending) == nil or frame >= frames + 60) then
    closing = true
    moonws.spawn(function() ws:close(1000, "game over") end)
  end
end

local start = system.gettime()
local next_frame = start
local last = start
while frame < frames or (ws.readyState ~= moonws.CLOSED and frame < frames + 180) do
  frame = frame + 1
  local now = system.gettime()
  moonws.step(0)                           -- the network: ready work only, never waits
  update(now - last)
  render()
  last = now
  if frame >= frames then finish() end
  next_frame = next_frame + FRAME          -- "vsync": sleep off the rest of the frame
  local rest = next_frame - system.gettime()
  if rest > 0 then system.sleep(rest) else next_frame = system.gettime() end
end

local elapsed = system.gettime() - start
log("ran %d frames in %.2fs (%.1f fps); sent %d, echoed %d, unmatched %d", frame, elapsed,
  frame / elapsed, sent, echoed, mismatched)
local good = closed and closed.wasClean and sent > 0 and echoed == sent and mismatched == 0
os.exit(good and 0 or 1)

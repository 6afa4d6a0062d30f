-- examples/embed/game.lua -- the script a game host (host.c) runs.
--
--   build/embed/host [-m sleep|poll] examples/embed/game.lua URL [SMALL LARGE SIZE]
--
-- Connects to a flood server (flood_server.lua), asks it for SMALL small
-- and LARGE large messages of SIZE bytes, and counts what arrives,
-- checking order and sizes.  The host calls frame() 60 times a second;
-- frame() steps moonws without waiting (the host's poll mode also steps
-- it between frames, when moonws.fd() turns readable or a timer is due).
-- Once every message has come, the game closes with 1000 "done", and the
-- host stops after onclose.

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

local moonws = require "moonws"

local url = assert(arg[1], "usage: game.lua URL [SMALL LARGE SIZE]")
local small, large, size = tonumber(arg[2]) or 20000, tonumber(arg[3]) or 4,
  tonumber(arg[4]) or 1024 * 1024
local total = small + large

local received, bytes, in_order, closed = 0, 0, true, nil

local ws = moonws.new(url)
ws.onopen = function() ws:send(("flood %d %d %d"):format(small, large, size)) end
ws.onmessage = function(e)
  local seq, length = e.data:match("^(%d+) (%d+)|")
  received = received + 1
  bytes = bytes + #e.data
  if tonumber(seq) ~= received or tonumber(length) ~= #e.data then
    if in_order then
      print(("out of order: message %d is %q..."):format(received, e.data:sub(1, 20)))
    end
    in_order = false
  end
  if received == total then ws:close(1000, "done") end
end
ws.onerror = function(e) print("error: " .. e.message) end
ws.onclose = function(e) closed = e end

-- moonws.step(0) never waits, and dispatches at most max_step_events (256)
-- events per socket: a flood is spread over steps instead of stalling one.
-- Every step counts, frame()'s and those a polling host makes between
-- frames (it calls moonws.step too, so it finds this one).
local most_in_a_step = 0
local step = moonws.step
function moonws.step(timeout)
  local before = received
  step(timeout)
  most_in_a_step = math.max(most_in_a_step, received - before)
end

-- Called by the host once a frame: the game's work, then the network's.
function frame()
  moonws.step(0)
  return closed == nil
end

-- Called by the host at the end; true means success.
function finish()
  print(("messages %d of %d, %d bytes"):format(received, total, bytes))
  print("in_order " .. tostring(in_order))
  print("most_messages_in_a_step " .. most_in_a_step)
  print(("closed %d %q clean %s"):format(closed.code, closed.reason, tostring(closed.wasClean)))
  return in_order and received == total and closed.wasClean
end

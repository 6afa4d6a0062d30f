-- examples/love/main.lua -- moonws in a LÖVE 11 game (LuaJIT).
--
--   make luajit                     # builds build/luajit/moonws/core.so
--   love examples/love ws://127.0.0.1:PORT/ [MOONWS_ROOT]
--
-- The engine owns the loop: it calls love.update once a frame, and
-- love.update calls moonws.step(0), which never waits and does bounded
-- work.  The game connects, sends a few messages (text and binary),
-- checks their echoes, closes with 4001 "game over" and quits; its exit
-- status says whether everything came back in order.  Any moonws server
-- that echoes "echo: <message>" works (examples/embed/flood_server.lua).
--
-- LÖVE's require looks inside the game folder; moonws lives in the
-- checkout, so the game puts the checkout on package.path and
-- package.cpath: MOONWS_ROOT (second argument or environment), else the
-- folder two levels above this game.

local moonws
local ws
local sent = { "hello from LÖVE", "frame by frame", ("\0\1\2\255"):rep(1000) }
local kinds = { "text", "text", "binary" }
local echoed, frames, worst_update = 0, 0, 0
local log = {}
local status        -- the exit status, once the game is over
local give_up       -- love.timer time after which the game fails

local function say(line)
  log[#log + 1] = line
  print(line)
  io.stdout:flush()
end

local function use_checkout(root)
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = root .. "/build/luajit/?.so;" .. package.cpath
end

function love.load(args)
  local url = args[1] or os.getenv("MOONWS_URL") or "ws://127.0.0.1:8080/"
  use_checkout(args[2] or os.getenv("MOONWS_ROOT") or love.filesystem.getSource() .. "/../..")
  moonws = require "moonws"
  say("moonws loaded in " .. jit.version)
  give_up = love.timer.getTime() + 20

  ws = moonws.new(url, { timeout = 10 })
  ws.onopen = function()
    say("open " .. url)
    for i = 1, #sent do ws:send(sent[i], kinds[i]) end
  end
  ws.onmessage = function(e)
    echoed = echoed + 1
    local expected = "echo: " .. tostring(sent[echoed])
    local kind = e.binary and "binary" or "text"
    if e.data == expected and kind == kinds[echoed] then
      say(("echo %d %s %d bytes ok"):format(echoed, kind, #e.data))
    else
      say(("echo %d %s %d bytes WRONG"):format(echoed, kind, #e.data))
      status = 1
    end
    if echoed == #sent then ws:close(4001, "game over") end
  end
  ws.onerror = function(e) say("error " .. tostring(e.error) .. ": " .. e.message) end
  ws.onclose = function(e)
    say(("closed %d %q clean %s"):format(e.code, e.reason, tostring(e.wasClean)))
    if status == nil then status = (e.wasClean and echoed == #sent) and 0 or 1 end
  end
end

function love.update(dt)
  local t0 = love.timer.getTime()
  moonws.step(0) -- the network's share of the frame: never waits
  worst_update = math.max(worst_update, love.timer.getTime() - t0)
  frames = frames + 1
  if status == nil and love.timer.getTime() > give_up then
    say("gave up waiting")
    ws:terminate()
    status = 1
  end
  if status ~= nil and ws.readyState == moonws.CLOSED then
    say(("frames %d worst_step_ms %.3f"):format(frames, worst_update * 1000))
    say("quit " .. status)
    love.event.quit(status)
  end
end

-- A headless run has nobody to read LÖVE's error screen: print the error
-- and quit (LÖVE exits when the handler returns no loop function).
function love.errorhandler(message)
  print("error: " .. debug.traceback(tostring(message), 3))
  io.stdout:flush()
end

function love.draw()
  love.graphics.print(table.concat(log, "\n"), 10, 10)
end

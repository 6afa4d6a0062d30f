-- examples/luv_loop.lua -- moonws inside a foreign event loop: libuv (luv).
--
--   lua5.4 examples/luv_loop.lua          (Debian: apt-get install lua-luv)
--
-- libuv owns the process: uv.run() is the only loop.  moonws is driven by
-- libuv handles: a poll handle on moonws.fd() (readable when moonws has
-- I/O work) and a timer set from moonws.next_timeout() before libuv waits.
-- Both call moonws.step(0), which never waits.  A moonws echo server
-- and a client talk through it; the client's sends come from a libuv timer,
-- outside any moonws call.  Prints what happens and exits 0.

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

local uv = require "luv"
local moonws = require "moonws"

-- Drive moonws from libuv.  The poll handle wakes libuv when moonws has
-- I/O; the prepare handle runs before libuv waits, so work queued outside
-- moonws.step (moonws.new, a send from a libuv callback) gets a timer too.
-- Returns a function that stops driving.
local io_steps = 0
local function drive_moonws_with_uv()
  local poll, timer, prepare = uv.new_poll(moonws.fd()), uv.new_timer(), uv.new_prepare()
  local function step() moonws.step(0) end
  poll:start("r", function() io_steps = io_steps + 1; step() end)
  prepare:start(function()
    local t = moonws.next_timeout() -- nil: no timer pending
    timer:stop()
    if t then timer:start(math.ceil(t * 1000), 0, step) end
  end)
  return function()
    for _, handle in ipairs { poll, timer, prepare } do handle:stop(); handle:close() end
  end
end

local stop_moonws = drive_moonws_with_uv()
local closes = 0
local function closed() -- once both ends saw the close, libuv may end
  closes = closes + 1
  if closes == 2 then stop_moonws() end
end

local server = assert(moonws.listen { host = "127.0.0.1", port = 0 })
server.onconnection = function(ws)
  ws.onmessage = function(e) ws:send("echo: " .. e.data) end
  ws.onclose = function(e)
    print(("server: closed %d %q"):format(e.code, e.reason))
    server:close()
    closed()
  end
end

local ws = moonws.new("ws://127.0.0.1:" .. server.port .. "/")
local ticker = uv.new_timer()
local sent = 0

ws.onopen = function()
  print("client: open")
  ticker:start(10, 10, function() -- a libuv timer sends, 3 times
    sent = sent + 1
    ws:send("tick " .. sent)
    if sent == 3 then ticker:stop(); ticker:close() end
  end)
end
ws.onmessage = function(e)
  print("client: " .. e.data)
  if e.data == "echo: tick 3" then ws:close(4000, "enough") end
end
ws.onclose = function(e)
  print(("client: closed %d %q clean %s"):format(e.code, e.reason, tostring(e.wasClean)))
  closed()
end

uv.run()
print(("uv.run returned; moonws stepped %d times for I/O"):format(io_steps))

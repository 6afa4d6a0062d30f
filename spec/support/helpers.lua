-- spec/support/helpers.lua -- what many specs share: loading moonws from
-- the checkout, and running the loop until a condition holds (bounded).

-- MOONWS_CPATH picks another build of moonws.core (the LuaJIT one:
-- build/luajit/?.so); default: the Lua 5.4 build in the checkout.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("MOONWS_CPATH") or "./?.so") .. ";" .. package.cpath

local moonws = require "moonws"

local helpers = { moonws = moonws }

-- A TCP port nothing listens on right now on 127.0.0.1 (for a program
-- that cannot say which port it picked; a race with other programs is
-- possible, as with any such port).
function helpers.free_port()
  local l = assert(require("moonws.core").listen("127.0.0.1", 0))
  local port = l:port()
  l:close()
  return port
end

-- Can a TCP connection to host:port be made now (within about 0.5 s)?
function helpers.accepting(host, port)
  local core = require "moonws.core"
  local conn = core.connect(core.numeric_address(host, port))
  if not conn then return false end
  local ok
  for _ = 1, 50 do
    local r, message = conn:connect_result()
    if r or message then ok = r == true break end
    os.execute("sleep 0.01")
  end
  conn:release()
  return ok or false
end

-- Step the loop until cond() is true; fails the spec after timeout seconds.
function helpers.run_until(cond, timeout, what)
  local core = require "moonws.core"
  local limit = core.now() + (timeout or 10)
  while not cond() do
    if core.now() > limit then
      error("timed out waiting for " .. (what or "a condition"), 2)
    end
    moonws.step(0.05)
  end
  return true
end

-- Step the loop for about `seconds`.
function helpers.idle(seconds)
  local core = require "moonws.core"
  local stop = core.now() + seconds
  repeat moonws.step(math.max(0, stop - core.now())) until core.now() >= stop
end

return helpers

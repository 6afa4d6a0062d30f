-- spec/support/helpers.lua -- what many specs share: loading moonws from
-- the checkout, and running the loop until a condition holds (bounded).

-- MOONWS_CPATH picks another build of moonws.core (the LuaJIT one:
-- build/luajit/?.so); default: the Lua 5.4 build in the checkout.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("MOONWS_CPATH") or "./?.so") .. ";" .. package.cpath

local moonws = require "moonws"

local helpers = { moonws = moonws }

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

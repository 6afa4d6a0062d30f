-- moonws.compat -- the one place that knows which Lua runs moonws: Lua
-- 5.4, or LuaJIT 2.1 (OpenResty, LÖVE, Defold; the Lua 5.1 language).
-- Every other module is written in the language both share and calls
-- these for the few things that differ.

local compat = {}

compat.pack = table.pack or function(...) return { n = select("#", ...), ... } end
compat.unpack = table.unpack or unpack -- luacheck: ignore (5.1 global)

-- Is v an integer-valued number?  (5.1 numbers are all doubles.)
if math.type then
  compat.is_integer = function(v) return math.type(v) == "integer" end
else
  compat.is_integer = function(v)
    return type(v) == "number" and v == math.floor(v) and v >= -2 ^ 53 and v <= 2 ^ 53
  end
end

-- Call fn(t) when table t is collected.  Lua 5.4 honours __gc on tables
-- (the metatable must have it when set); LuaJIT does not, so there a
-- userdata sentinel stored in t carries the finalizer.
local SENTINEL = {}
if _VERSION == "Lua 5.1" then -- LuaJIT
  function compat.on_collect(t, fn)
    local sentinel = newproxy(true) -- luacheck: ignore (5.1 global)
    getmetatable(sentinel).__gc = function() fn(t) end
    rawset(t, SENTINEL, sentinel)
  end
else
  function compat.on_collect() end -- the metatable's __gc does it
end

return compat

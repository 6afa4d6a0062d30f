-- moonws.misuse -- misuse raises at the caller's line (docs/DESIGN.md 1.3).
--
-- A fixed error level is right only for the path it was counted on: the
-- same check reached through a wrapper (moonws.connect calls what
-- moonws.new calls), a tail call, or pcall(ws.send, ...) would blame a
-- line inside moonws, or no line at all.  So the level is found at run
-- time: the first Lua function on the stack that is not one of moonws's
-- own files (the folder this file was loaded from) is the caller to blame.

local misuse = {}

-- "@lua/moonws/" for "@lua/moonws/misuse.lua": every module of moonws is
-- loaded from the same folder.  nil when loaded some other way (a string
-- chunk): then the function that raises is blamed, as a fixed level would.
local own_prefix = debug.getinfo(1, "S").source:match("^(@.*[/\\])misuse%.lua$")

local function ours(source)
  return own_prefix ~= nil and source:sub(1, #own_prefix) == own_prefix
end

-- The level, as error() counts it inside misuse.raise (or .arg), of the
-- first Lua function outside moonws (getinfo counts one more: this one).
local function caller_level()
  local level = 2
  while true do
    local info = debug.getinfo(level + 1, "S")
    if not info then return 2 end -- only moonws on the stack
    if info.what ~= "C" and not ours(info.source) then return level end
    level = level + 1
  end
end

-- Raise message at the user's line.
function misuse.raise(message)
  error(message, caller_level())
end

-- "bad argument #n to 'fn' (what)", at the user's line.
function misuse.arg(n, fn, what)
  error(("bad argument #%d to '%s' (%s)"):format(n, fn, what), caller_level())
end

return misuse

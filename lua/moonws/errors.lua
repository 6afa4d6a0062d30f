-- moonws.errors -- the stable error names, by name.  The one table of
-- them is the C core's (ws_proto.h WS_ERRORS, exported as moonws.errors:
-- name -> description); here every name is also reachable as a constant,
-- errors.TIMEOUT == "timeout", and moonws's own code uses only these.
-- Reading a constant that does not exist raises, so a misspelt name fails
-- where it is written (and spec/errors_spec.lua fails on a name typed as a
-- string literal).

local core = require "moonws.core"

local errors = {}
for name in pairs(core.errors) do errors[name:upper()] = name end

return setmetatable(errors, {
  __index = function(_, k) error("moonws.errors has no error named " .. tostring(k), 2) end,
  __newindex = function() error("moonws.errors is read-only", 2) end,
})

-- spec/support/ws_client.lua -- run spec/peers/ws_client.py (one
-- connection by Python's websockets, see its header) and read its one
-- JSON line back.
--
--   local ws_client = require "spec.support.ws_client"
--   local r = ws_client.run(track, { url, "--source", "127.0.0.2" })
--   ws_client.header(r.headers, "set-cookie")

local helpers = require "spec.support.helpers"
local process = require "spec.support.process"
local json = require "dkjson"

local ws_client = {}

-- Run it with args (a list) to its end; track is a process tracker's
-- (the spec cleans up after each test).  Its JSON result.
function ws_client.run(track, args)
  local argv = { "/usr/bin/python3", "spec/peers/ws_client.py" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = track(process.start(argv, 60))
  assert(p:wait_exit(20, helpers.idle), "ws_client.py did not finish:\n" .. p:stderr())
  local line = p:stdout():match("[^\n]+")
  local result = line and json.decode(line)
  assert(result, "ws_client.py said:\n" .. p:stdout() .. p:stderr())
  return result
end

-- The value of header name (lower case) in a [[name, value]] list.
function ws_client.header(list, name)
  for _, h in ipairs(list or {}) do
    if h[1]:lower() == name then return h[2] end
  end
end

return ws_client

-- spec/support/haproxy.lua -- a throwaway HAProxy (Debian's haproxy) in
-- TCP mode in front of a moonws server, sending the PROXY protocol header.
--
--   local haproxy = require "spec.support.haproxy"
--   local h = haproxy.start { backend = port, send = "send-proxy-v2",
--                             bind = { "127.0.0.1", "::1" } }
--   h.port (the same port on every bind address); h:stop()
--
-- It runs in the foreground (-db) under `timeout` through
-- spec.support.process, with its configuration in a mktemp -d folder,
-- listens on loopback addresses only, on a port found free just before
-- (retried when another process took it meanwhile), and is killed by PID.

local process = require "spec.support.process"

local haproxy = {}
haproxy.__index = haproxy

haproxy.BIN = "/usr/sbin/haproxy"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local helpers = require "spec.support.helpers"
local free_port, accepting = helpers.free_port, helpers.accepting

local CONF = [[
global
  maxconn 64
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
%s
  default_backend be
backend be
  server moonws 127.0.0.1:%d %s
]]

local function start_once(spec)
  local pipe = assert(io.popen("mktemp -d"))
  local dir = pipe:read("l")
  pipe:close()
  assert(dir and dir:match("^/"), "mktemp -d failed")
  local port = free_port()
  local binds, addresses = {}, spec.bind or { "127.0.0.1" }
  for _, address in ipairs(addresses) do
    binds[#binds + 1] = ("  bind %s:%d"):format(address:find(":", 1, true) and
      "[" .. address .. "]" or address, port)
  end
  local f = assert(io.open(dir .. "/haproxy.cfg", "w"))
  f:write(CONF:format(table.concat(binds, "\n"), spec.backend, spec.send or "send-proxy"))
  f:close()
  local self = setmetatable({ dir = dir, port = port }, haproxy)
  self.proc = process.start({ haproxy.BIN, "-db", "-f", dir .. "/haproxy.cfg" }, spec.limit or 120)
  local deadline = os.time() + 10
  while true do
    if accepting(addresses[1], port) then return self end
    if not self.proc:alive() or os.time() > deadline then
      local log = self.proc:stdout() .. self.proc:stderr()
      self:stop()
      return nil, log
    end
    os.execute("sleep 0.02")
  end
end

-- Start HAProxy with spec = { backend = port, send = "send-proxy" |
-- "send-proxy-v2", bind = { addresses }, limit = seconds }.
function haproxy.start(spec)
  local log
  for _ = 1, 5 do
    local self
    self, log = start_once(spec)
    if self then return self end
    if not log:find("ddress already in use", 1, true) and not log:find("cannot bind", 1, true) then
      break
    end
  end
  error("haproxy did not start:\n" .. tostring(log), 2)
end

function haproxy:stop()
  if self.proc then self.proc:cleanup() end
  if self.dir:match("^/.+/tmp%.%w+$") then os.execute("rm -rf " .. quote(self.dir)) end
end

return haproxy

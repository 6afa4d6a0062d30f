-- spec/support/redis.lua -- a throwaway redis-server on 127.0.0.1 for the
-- specs that use moonws.pubsub: generated config in a temp dir, no
-- persistence, killed by PID.
--
--   local r = require("spec.support.redis").new()
--   r:url(); r:stop(); r:start() (same dir and port); r:cleanup()

local helpers = require "spec.support.helpers"
local process = require "spec.support.process"

local redis = {}

-- Redis refuses "port 0": take a port the kernel hands out, then free it.
redis.free_port = helpers.free_port

function redis.shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local Redis = {}
Redis.__index = Redis

-- A redis-server in its own temp dir; start() again reuses dir and port.
function redis.new()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -m 700 " .. redis.shell_quote(dir)))
  local r = setmetatable({ dir = dir }, Redis)
  for _ = 1, 5 do -- the free port may be taken before redis binds it
    r.port = redis.free_port()
    local f = assert(io.open(dir .. "/redis.conf", "w"))
    f:write(("port %d\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir %s\n"
      .. "daemonize no\nlogfile \"\"\nprotected-mode yes\n"):format(r.port, dir))
    f:close()
    if r:start() then return r end
  end
  error("redis-server did not start:\n" .. r.p:stdout() .. r.p:stderr())
end

function Redis:start()
  self.p = process.start({ "redis-server", self.dir .. "/redis.conf" }, 120)
  local ok = pcall(self.p.wait_for, self.p, "Ready to accept connections", 10, helpers.idle)
  if not ok then self.p:cleanup() end
  return ok
end

function Redis:url() return "redis://127.0.0.1:" .. self.port end

function Redis:stop()
  if self.p then self.p:cleanup() end
  self.p = nil
end

function Redis:cleanup()
  self:stop()
  os.execute("rm -rf " .. redis.shell_quote(self.dir))
end

return redis

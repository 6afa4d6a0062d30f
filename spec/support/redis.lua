-- spec/support/redis.lua -- a real redis-server for a spec: its own temp
-- dir and generated config (127.0.0.1, no persistence), a free port, killed
-- by PID.  new() starts one; :start() again reuses its dir and port.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"

-- Redis refuses "port 0": take a port the kernel hands out, then free it.
local function free_port()
  local srv = assert(moonws.listen { host = "127.0.0.1", port = 0 })
  local port = srv.port
  srv:close()
  return port
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local Redis = {}
Redis.__index = Redis

-- A redis-server in its own temp dir; start() again reuses dir and port.
local function new_redis()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -m 700 " .. shell_quote(dir)))
  local r = setmetatable({ dir = dir }, Redis)
  for _ = 1, 5 do -- the free port may be taken before redis binds it
    r.port = free_port()
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
  os.execute("rm -rf " .. shell_quote(self.dir))
end

return { new = new_redis, free_port = free_port }

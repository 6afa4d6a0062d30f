-- Faults a server meets in production: running out of file descriptors
-- must neither spin the CPU nor stop the server for good.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"

-- A moonws echo server in a child lua5.4 with at most `limit` descriptors.
local function limited_server(limit)
  local script = [[
    package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
    package.cpath = "./?.so;" .. package.cpath
    local moonws = require "moonws"
    moonws.onerror = function(e) io.stderr:write(e.message, "\n") end
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(ws) ws.onmessage = function(e) ws:send(e.data) end end
    print("PORT " .. srv.port)
    io.stdout:flush()
    moonws.run()
  ]]
  return process.start({ "sh", "-c", 'ulimit -n "$1" && exec lua5.4 -e "$2"', "sh",
    tostring(limit), script }, 60)
end

-- CPU seconds (user + system) a process has used so far.
local function cpu_seconds(pid)
  local f = assert(io.open("/proc/" .. pid .. "/stat"))
  local stat = f:read("a")
  f:close()
  local fields = {}
  for field in stat:match("%) (.*)"):gmatch("%S+") do fields[#fields + 1] = field end
  -- utime and stime are fields 14 and 15 of stat, 12 and 13 after "(comm) ".
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

describe("out of file descriptors (EMFILE on accept)", function()
  it("the server backs off instead of spinning, and serves everyone once descriptors free up",
    function()
      local server = limited_server(16)
      finally(function() server:cleanup() end)
      local port = server:port(helpers.idle)
      local clients, opened, echoed = {}, 0, 0
      for i = 1, 30 do
        local ws = moonws.new("ws://127.0.0.1:" .. port, { timeout = 20 })
        ws.onopen = function() opened = opened + 1; ws:send("hi " .. i) end
        ws.onmessage = function() echoed = echoed + 1; ws:close(1000) end
        clients[i] = ws
      end
      -- The server can only hold a few of them at once.
      local cpu0 = cpu_seconds(server.pid)
      helpers.idle(1.5)
      local cpu_while_full = cpu_seconds(server.pid) - cpu0
      -- Every client is served in the end: closing frees descriptors.
      helpers.run_until(function() return echoed == 30 end, 20, "all 30 echoes")
      assert.equal(30, opened)
      assert.is_true(cpu_while_full < 0.5,
        ("the server used %.2fs of CPU while out of descriptors"):format(cpu_while_full))
      assert.matches("accept failed: .*retrying", server:stderr())
      for _, ws in ipairs(clients) do ws:terminate() end
    end)
end)

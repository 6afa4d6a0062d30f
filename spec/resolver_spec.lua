-- Name resolution never stalls the loop: a DNS lookup that hangs (a name
-- server that never answers) must not delay other connections.
--
-- The stalled lookup is real: the spec runs a child Lua process in its own
-- mount namespace (unshare -m) where /etc/resolv.conf names a silent DNS
-- server on port 53 of a random 127.x.y.z address (so runs side by side do
-- not collide) that this spec starts and kills.  Only loopback addresses
-- are involved.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"

local SILENT_DNS = [[
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("PORT 53", flush=True)
while True:
    s.recvfrom(4096)   # read queries, never answer
]]

local CHILD = [[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath
local moonws = require "moonws"
local core = require "moonws.core"
local t0 = core.now()
local function at() return ("%.3f"):format(core.now() - t0) end

-- The connection whose name lookup hangs (timeout bounds it).
local stalled = moonws.new("ws://stalled.moonws-test:80/", { timeout = 1.5 })
stalled.onerror = function(e) print(at(), "stalled error", e.error) end

-- Meanwhile a local exchange must run at full speed.
local srv = assert(moonws.listen { port = 0 })
srv.onconnection = function(s) s.onmessage = function(e) s:send(e.data) end end
moonws.spawn(function()
  local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
  for i = 1, 50 do
    ws:send("n" .. i)
    assert(ws:receive(5) == "n" .. i)
  end
  print(at(), "echo done")
  ws:close()
  srv:close()
end)
moonws.run()
print(at(), "loop done")
]]

describe("the resolver", function()
  it("resolves names from /etc/hosts", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s) s.onmessage = function(e) s:send(e.data) end end
    local ws = assert(moonws.connect("ws://localhost:" .. srv.port))
    ws:send("by name")
    assert.equal("by name", ws:receive(5))
    ws:close()
    srv:close()
  end)

  it("a script that looked a name up exits cleanly (the resolver's threads outlive it)",
    function()
      local script = [[
        package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
        package.cpath = "./?.so;" .. package.cpath
        local moonws = require "moonws"
        local srv = assert(moonws.listen { port = 0 })
        srv.onconnection = function(ws) ws.onmessage = function(e) ws:send(e.data) end end
        local ws = assert(moonws.connect("ws://localhost:" .. srv.port))
        assert(ws:send("x"))
        assert(ws:receive(5) == "x")
        ws:close()
        srv:close()
      ]]
      -- Exiting right after a lookup raced idle worker threads against
      -- the module being unloaded: an occasional crash, so try often.
      for run = 1, 20 do
        local p = process.start({ "lua5.4", "-e", script }, 20)
        assert.is_true(p:wait_exit(15), "run " .. run .. " did not finish")
        local status, err = p:exit_status(), p:stderr()
        p:cleanup()
        assert.equal(0, status, ("run %d: %s"):format(run, err))
      end
    end)

  it("keeps the loop running while a lookup hangs", function()
    math.randomseed(os.time(), tonumber(tostring({}):match("0x(%x+)"), 16))
    local address = ("127.%d.%d.%d"):format(math.random(1, 254), math.random(1, 254),
      math.random(2, 254))
    local dns = process.start({ "/usr/bin/python3", "-c", SILENT_DNS, address }, 30)
    local child
    local resolv = os.tmpname()
    finally(function() -- busted keeps one finally per test
      dns:cleanup()
      if child then child:cleanup() end
      os.remove(resolv)
    end)
    dns:port()
    local f = assert(io.open(resolv, "w"))
    f:write("nameserver " .. address .. "\noptions timeout:5 attempts:1\n")
    f:close()
    child = process.start({ "unshare", "-m", "sh", "-c",
      'mount --bind "$1" /etc/resolv.conf && exec lua5.4 -e "$2"', "sh", resolv, CHILD }, 30)
    assert.is_true(child:wait_exit(20), "child did not finish")
    local out = child:stdout()
    assert.equal("", child:stderr())
    -- It exits with the lookup's worker thread still inside getaddrinfo:
    -- closing the Lua state must not pull the module's code from under it.
    assert.equal(0, child:exit_status())
    local echo_at = tonumber(out:match("([%d.]+)\techo done"))
    local err_at, err_name = out:match("([%d.]+)\tstalled error\t(%w+)")
    assert.is_number(echo_at, out)
    -- 50 round trips on loopback take milliseconds unless the lookup blocked.
    assert.is_true(echo_at < 1.0, "echo finished at " .. echo_at .. "s")
    -- The stalled lookup ended by moonws's own timeout, not by the resolver.
    assert.equal("timeout", err_name)
    assert.is_true(tonumber(err_at) >= 1.4 and tonumber(err_at) < 4.5, "error at " .. err_at)
  end)
end)

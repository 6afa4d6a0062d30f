-- examples/pool/pool.lua -- run examples/pool/server.lua on every core.
--
--   lua5.4 examples/pool/pool.lua [port [workers]]
--
-- Starts one worker per CPU (or `workers`), all on one port.  A worker that
-- dies is started again.  SIGTERM or SIGINT stops them all gracefully (each
-- closes its clients with 1001); SIGHUP replaces them one at a time, so
-- open connections drain while new ones land on new workers:
--
--   kill -HUP <pool pid>     # deploy new code without dropping anyone
--   kill -TERM <pool pid>    # stop; exit status 0 when every worker ended cleanly

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

local pool = require "moonws.pool"

local here = arg[0]:match("^(.*)/") or "."
local function say(...)
  print(...)
  io.stdout:flush()
end

say("POOL", pool.getpid())
local ok, err = pool.run {
  script = here .. "/server.lua",
  args = { tonumber(arg[1]) or 8080 },
  workers = tonumber(arg[2]),          -- nil: one per CPU
  onworker = function(e)
    if e.type == "start" then
      say("START", e.worker, e.pid)
    else
      say("EXIT", e.worker, e.pid, e.status or e.signal)
    end
  end,
}
if not ok then io.stderr:write("pool: ", err, "\n") end
os.exit(ok and 0 or 1)

-- spec/support/process.lua -- start, watch and kill the peer processes a
-- spec needs (Python websockets, Node ws, raw peers).
--
-- Every process runs under `timeout` (bounded even if a spec forgets it),
-- its stdout and stderr go to files, and it is killed by PID.  Peers that
-- listen print a line "PORT <n>" once bound to 127.0.0.1 port 0.

local process = {}
process.__index = process

local tmpdir = os.getenv("TMPDIR") or "/tmp"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- The program runs under a small shell that records its exit status (so
-- a crash at exit is seen) and passes termination on to it.
local RECORDER = 'status=$1; shift; "$@" & pid=$!; '
  .. 'trap \'kill $pid 2>/dev/null\' TERM INT; wait $pid; code=$?; '
  .. 'echo $code >"$status"; exit $code'

-- Start argv (a list) in the background; limit: seconds before `timeout`
-- kills it (default 120).  Returns a process object.
function process.start(argv, limit)
  local base = os.tmpname()
  local quoted = {}
  for i, a in ipairs(argv) do quoted[i] = shell_quote(a) end
  local cmd = ("timeout -k 2 %d sh -c %s sh %s %s >%s 2>%s </dev/null & echo $!"):format(
    limit or 120, shell_quote(RECORDER), shell_quote(base .. ".status"),
    table.concat(quoted, " "), shell_quote(base .. ".out"), shell_quote(base .. ".err"))
  local pipe = assert(io.popen(cmd))
  local pid = tonumber(pipe:read("l"))
  pipe:close()
  assert(pid, "could not start " .. argv[1])
  return setmetatable({ pid = pid, base = base, argv = argv }, process)
end

function process:stdout() return read_file(self.base .. ".out") end

-- The program's exit status once it ended (128 + N when killed by signal
-- N, as the shell says), else nil.
function process:exit_status()
  return tonumber(read_file(self.base .. ".status"):match("%d+"))
end
function process:stderr() return read_file(self.base .. ".err") end

-- An exited process stays a zombie until PID 1 reaps it, which here can
-- take a second, and `kill -0` would call it alive: ask /proc instead.
function process:alive()
  local f = io.open("/proc/" .. self.pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("a") or ""
  f:close()
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- Wait until stdout has a line matching pattern; `idle(seconds)` is called
-- between looks (default: os.execute sleep), so a moonws loop can run.
-- Returns the first capture, or raises with the peer's stderr on timeout.
function process:wait_for(pattern, timeout, idle)
  local deadline = os.time() + (timeout or 10)
  while true do
    for line in self:stdout():gmatch("[^\n]+") do
      local cap = line:match(pattern)
      if cap then return cap end
    end
    if not self:alive() or os.time() > deadline then
      error(("%s: no line matching %q\nstdout:\n%s\nstderr:\n%s"):format(
        self.argv[1], pattern, self:stdout(), self:stderr()), 2)
    end
    if idle then idle(0.02) else os.execute("sleep 0.02") end
  end
end

-- The port a listening peer printed (within timeout seconds, default 10).
function process:port(idle, timeout)
  return tonumber(self:wait_for("^PORT (%d+)", timeout or 10, idle))
end

-- Wait for the process to exit by itself (driving idle meanwhile).
function process:wait_exit(timeout, idle)
  local deadline = os.time() + (timeout or 10)
  while self:alive() do
    if os.time() > deadline then return false end
    if idle then idle(0.02) else os.execute("sleep 0.02") end
  end
  return true
end

-- Kill it (TERM, then KILL) and remove its files.
function process:kill()
  if self:alive() then
    os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
    for _ = 1, 50 do
      if not self:alive() then break end
      os.execute("sleep 0.02")
    end
    os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
  end
end

-- The JSON lines the program printed so far (a peer's observations), as
-- tables.
function process:observations()
  local json = require "dkjson"
  local list = {}
  for line in self:stdout():gmatch("[^\n]+") do
    local obs = json.decode(line)
    if type(obs) == "table" then list[#list + 1] = obs end
  end
  return list
end

-- The PIDs of every descendant of pid (from /proc), deepest last.
function process.descendants(pid)
  local children = {}
  local pipe = assert(io.popen("cat /proc/[0-9]*/stat 2>/dev/null"))
  for line in pipe:lines() do
    local child, parent = line:match("^(%d+) %b() %a (%d+)")
    if child then
      children[parent] = children[parent] or {}
      table.insert(children[parent], child)
    end
  end
  pipe:close()
  local list = {}
  local function walk(p)
    for _, c in ipairs(children[tostring(p)] or {}) do
      list[#list + 1] = c
      walk(c)
    end
  end
  walk(pid)
  return list
end

function process:cleanup()
  self:kill()
  os.remove(self.base .. ".out")
  os.remove(self.base .. ".err")
  os.remove(self.base .. ".status")
  os.remove(self.base)
end

-- A tracker: track(p) returns p and remembers it; cleanup() kills and
-- removes every process tracked since (busted keeps only one `finally`
-- per test, so a spec that starts several calls cleanup in after_each).
function process.tracker()
  local started = {}
  local function track(p)
    started[#started + 1] = p
    return p
  end
  local function cleanup()
    for i = #started, 1, -1 do
      started[i]:cleanup()
      started[i] = nil
    end
  end
  return track, cleanup
end

process.read_file = read_file
process.tmpdir = tmpdir
return process

-- bench/util.lua -- the small helpers the benchmark drivers share
-- (bench/run.lua for `make bench`, bench/instr.lua for `make bench-instr`):
-- shell quoting, files, commands, and killing servers by PID.
--   local U = dofile("bench/util.lua")
local U = {}

function U.sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function U.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function U.spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Output of a shell command (stdout, trailing space removed).
function U.capture(cmd)
  local p = io.popen(cmd)
  local s = p:read("a") or ""
  p:close()
  return (s:gsub("%s+$", ""))
end

function U.sleep(s) os.execute("sleep " .. s) end

function U.log(fmt, ...) io.stderr:write(fmt:format(...), "\n") end

-- Is key in the comma-separated list (an unset or empty list takes all)?
function U.wanted(list, key)
  if not list or list == "" then return true end
  for k in list:gmatch("[^,%s]+") do if k == key then return true end end
  return false
end

function U.alive(pid)
  local s = U.slurp("/proc/" .. pid .. "/stat")
  return s ~= nil and s:match("^%d+ %b() (%a)") ~= "Z"
end

-- TERM, then KILL what is still alive after 2 s.
function U.kill(pids)
  for _, pid in ipairs(pids) do os.execute("kill -TERM " .. pid .. " 2>/dev/null") end
  for _ = 1, 40 do
    local any = false
    for _, pid in ipairs(pids) do any = any or U.alive(pid) end
    if not any then return end
    U.sleep(0.05)
  end
  for _, pid in ipairs(pids) do os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
end

-- bench/RESULTS.md is written by two generators: `make bench` (the whole
-- file) and `make bench-instr` (one section, between these markers).
U.SECTION_BEGIN = "<!-- bench-instr: begin (written by make bench-instr; do not edit by hand) -->"
U.SECTION_END = "<!-- bench-instr: end -->"

local function find_section(text)
  local b = text:find(U.SECTION_BEGIN, 1, true)
  local e = b and select(2, text:find(U.SECTION_END, b, true))
  if e then return b, e end
end

-- text with its marked section replaced by section (a whole marked block),
-- or with section appended when text has none.
function U.put_section(text, section)
  local b, e = find_section(text)
  if b then return text:sub(1, b - 1) .. section .. text:sub(e + 1) end
  return text:gsub("\n*$", "\n\n") .. section .. "\n"
end

-- new (a whole file) with the marked section of old, if old has one.
function U.keep_section(new, old)
  local b, e = find_section(old or "")
  if not b then return new end
  return U.put_section(new, old:sub(b, e))
end

return U

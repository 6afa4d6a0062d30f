-- spec/conformance/run.lua -- run the conformance cases of
-- spec/conformance/cases.lua against moonws from this checkout, compare
-- each outcome with the expected one, write spec/conformance/README.md
-- and end with "N passed, N failed" (exit status 1 when any failed).
--
-- Run from the checkout's root:  lua5.4 spec/conformance/run.lua [options]
--   -j N         cases at once (default 16): each one a raw peer process
--                against its own moonws server or client, all driven by
--                this one moonws loop
--   --only P     only the cases whose id starts with P (e.g. 6.2 or 13.)
--   --no-readme  do not rewrite README.md (implied by --only)
--   -v           print every case, not only the failures
--
-- Each case has its own listening moonws server (server side) or its own
-- raw server (client side), so cases never share a connection and can run
-- side by side.  The moonws application in every case echoes each message
-- back (text as text, binary as binary) and records every event.
--
-- Besides its expected outcome, every case that opened must keep these
-- invariants: frames from moonws masked as its role requires (RFC 6455
-- 5.1); no RSV bit except RSV1 on the first frame of a message when
-- permessage-deflate was agreed; no data or close frame after moonws's
-- close frame (5.5.1); compressed messages that inflate; onclose exactly
-- once; a clean close whose code matches moonws's close frame; and the
-- raw peer never waited in vain (each of its reads has a timeout, and one
-- running out means moonws did not answer, close or fail in time).

package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath

if not io.open("spec/conformance/cases.lua") then
  io.stderr:write("run me from the moonws checkout's root: lua5.4 spec/conformance/run.lua\n")
  os.exit(2)
end

local moonws = require "moonws"
local core = require "moonws.core"
local rawpeer = require "spec.support.rawpeer"
local cases = require "conformance.cases"

local now = core.now

---------------------------------------------------------------- arguments

local jobs, only, write_readme, verbose = 16, nil, true, false
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "-j" then jobs = assert(tonumber(arg[i + 1]), "-j needs a number"); i = i + 1
    elseif a == "--only" then only = assert(arg[i + 1], "--only needs a prefix"); i = i + 1
      write_readme = false
    elseif a == "--no-readme" then write_readme = false
    elseif a == "-v" then verbose = true
    else
      io.stderr:write("unknown argument " .. a .. "\n")
      os.exit(2)
    end
    i = i + 1
  end
end

local CASE_LIMIT = 15     -- seconds a case may take in all
local CLOSE_GRACE = 4     -- after the peer exits, wait this long for onclose
local SETTLE = 0.1        -- then this long for anything that should not come

local ERROR_NAMES = { [1002] = "protocol", [1007] = "invalid_data", [1009] = "too_big" }

---------------------------------------------------------------- the application

local function record(r, kind, fields)
  fields = fields or {}
  fields.kind = kind
  fields.at = now()
  r.log[#r.log + 1] = fields
end

-- Handlers for the socket under test: record everything, echo messages,
-- and do what case.app asks.
local function attach(r, ws)
  r.ws = ws
  local app = r.case.app or {}
  local function opened()
    record(r, "open")
    if app.close then ws:close(app.close[1], app.close[2]) end
  end
  if r.case.side == "server" then
    opened()
  else
    ws.onopen = opened
  end
  ws.onmessage = function(e)
    record(r, "message", { data = e.data, binary = e.binary })
    ws:send(e.data, e.binary and "binary" or "text")
  end
  ws.onerror = function(e) record(r, "error", { error = e.error, code = e.code, message = e.message }) end
  ws.onclose = function(e)
    record(r, "close", { code = e.code, reason = e.reason, wasClean = e.wasClean })
  end
  ws.onping = function(e) record(r, "ping", { data = e.data }) end
  ws.onpong = function(e) record(r, "pong", { data = e.data }) end
end

local function options(case)
  local o = { timeout = 5, close_timeout = 3 }
  for k, v in pairs(case.opts or {}) do o[k] = v end
  return o
end

---------------------------------------------------------------- running a case

local function count_kind(log, kind)
  local k = 0
  for _, e in ipairs(log) do if e.kind == kind then k = k + 1 end end
  return k
end

local function start(case)
  local r = { case = case, log = {}, started = now() }
  if case.side == "server" then
    local o = options(case)
    o.host, o.port = "127.0.0.1", 0
    local srv, err = moonws.listen(o)
    if not srv then
      r.broken = "listen failed: " .. tostring(err)
      return r
    end
    r.srv = srv
    srv.onconnection = function(ws) r.opened = true; attach(r, ws) end
    r.peer = rawpeer.client(srv.port, case.steps, CASE_LIMIT + 5)
  else
    r.peer = rawpeer.server(case.steps, CASE_LIMIT + 5)
  end
  return r
end

-- One look at a running case; true when it is over.
local function poll(r)
  local t = now()
  if r.broken then return true end
  if t - r.started > CASE_LIMIT then
    r.timed_out = true
    return true
  end
  local case = r.case
  if case.side == "client" and not r.ws then
    local port = r.peer:stdout():match("PORT (%d+)")
    if port then
      local ok, ws = pcall(moonws.new, ("ws://127.0.0.1:%s/"):format(port), options(case))
      if not ok then
        r.broken = "moonws.new failed: " .. tostring(ws)
        return true
      end
      attach(r, ws)
    elseif not r.peer:alive() then
      r.broken = "the raw server never listened: " .. r.peer:stderr()
      return true
    end
    return false
  end
  if r.settle_until then return t >= r.settle_until end
  if r.peer:alive() then return false end
  r.peer_exit = r.peer_exit or t
  local closed = count_kind(r.log, "close") > 0
  local needs_close = case.side == "client" or r.opened
  if closed or not needs_close or t - r.peer_exit > CLOSE_GRACE then
    r.settle_until = t + SETTLE
  end
  return false
end

local function stop(r)
  if r.ws and r.ws.readyState ~= moonws.CLOSED then r.ws:terminate() end
  if r.srv then r.srv:close() end
  if r.peer then
    r.events = rawpeer.events(r.peer)
    r.peer_stderr = r.peer:stderr()
    r.peer:cleanup()
  end
end

---------------------------------------------------------------- what happened

local unhex = rawpeer.unhex

-- The outcome in the vocabulary of `expect`, plus notes on every broken
-- invariant.
local function observe(r)
  local case, log, events = r.case, r.log, r.events or {}
  local obs, notes = {}, {}
  obs.notes = notes
  if r.broken then notes[#notes + 1] = r.broken end
  if r.timed_out then notes[#notes + 1] = ("case did not finish in %ds"):format(CASE_LIMIT) end
  local last = events[#events]
  if not last or last.event ~= "done" then
    notes[#notes + 1] = "raw peer did not finish its script"
      .. (r.peer_stderr and r.peer_stderr ~= "" and (": " .. r.peer_stderr:gsub("%s+$", "")) or "")
  end

  for _, e in ipairs(events) do
    if e.event == "timeout" then
      notes[#notes + 1] = ("the peer waited in vain (read_frames until %s)"):format(e["until"])
    end
  end

  local first_error
  for _, e in ipairs(log) do
    if e.kind == "error" then first_error = first_error or e end
  end
  local opened = count_kind(log, "open") > 0
  obs.opened = opened

  if case.side == "server" then
    local res = rawpeer.select(events, "response")[1]
    obs.status = res and res.status
    obs.headers = res and res.headers
    if res and res.status == 101 and not res.accept_ok then
      notes[#notes + 1] = "wrong Sec-WebSocket-Accept"
    end
    if res and res.status ~= 101 and opened then notes[#notes + 1] = "refused, yet onconnection" end
  else
    if not opened and first_error then
      obs.connect_error = first_error.error
      obs.handshake_error = first_error.error == "handshake"
    end
  end
  if not opened then
    if count_kind(log, "close") > 1 then notes[#notes + 1] = "onclose fired more than once" end
    return obs
  end

  -- messages the application got, and what came back to the peer
  obs.echo = {}
  for _, e in ipairs(log) do
    if e.kind == "message" then obs.echo[#obs.echo + 1] = { data = e.data, binary = e.binary } end
  end
  obs.returned, obs.pongs = {}, {}
  local frames = rawpeer.select(events, "frame")
  local close_frame, after_close, in_message = nil, 0, false
  local negotiated = r.ws and r.ws.extensions ~= ""
  for _, f in ipairs(frames) do
    -- RFC 6455 5.5.1: no data frame (nor a second close) after the close
    -- frame; a pong may still answer a ping that came before the peer's close
    if close_frame and f.opcode ~= 9 and f.opcode ~= 10 then after_close = after_close + 1 end
    if not f.mask_ok then
      notes[#notes + 1] = ("a %s frame from moonws was %smasked"):format(
        case.side, f.masked and "" or "not ")
    end
    local rsv_ok = f.rsv == 0 or (f.rsv == 4 and negotiated and f.opcode >= 1 and f.opcode <= 2
      and not in_message)
    if not rsv_ok then notes[#notes + 1] = ("moonws sent a frame with RSV bits %d"):format(f.rsv) end
    if f.opcode == 10 then obs.pongs[#obs.pongs + 1] = f.payload_hex end
    if f.opcode == 8 and not close_frame then close_frame = f end
    if f.opcode < 3 then in_message = not f.fin end
  end
  if after_close > 0 then
    notes[#notes + 1] = after_close .. " data or close frame(s) after moonws's close frame"
  end
  for _, m in ipairs(rawpeer.select(events, "message")) do
    obs.returned[#obs.returned + 1] = { data = unhex(m.payload_hex), binary = m.opcode == 2,
      compressed = m.compressed, frames = m.frames }
  end
  if #rawpeer.select(events, "inflate_error") > 0 then
    notes[#notes + 1] = "the peer could not inflate moonws's compressed message"
  end
  obs.extensions = r.ws and r.ws.extensions
  obs.protocol = r.ws and r.ws.protocol

  local closes = {}
  for _, e in ipairs(log) do if e.kind == "close" then closes[#closes + 1] = e end end
  if #closes > 1 then notes[#notes + 1] = "onclose fired " .. #closes .. " times" end
  local onclose = closes[1]
  local sent_code = close_frame and (close_frame.close_code or 1005)
  obs.sent_close = sent_code
  if first_error then
    obs.close, obs.clean, obs.error = first_error.code, false, first_error.error
    obs.onclose = onclose
  elseif onclose then
    obs.close, obs.clean, obs.reason = onclose.code, onclose.wasClean, onclose.reason
    if onclose.wasClean and sent_code ~= onclose.code then
      notes[#notes + 1] = ("moonws's close frame carried %s, onclose got %d"):format(
        tostring(sent_code), onclose.code)
    end
  else
    notes[#notes + 1] = "no onclose"
  end
  return obs
end

---------------------------------------------------------------- comparing

local function same_messages(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i].data ~= b[i].data or (a[i].binary or false) ~= (b[i].binary or false) then return false end
  end
  return true
end

local function same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function header(headers, name)
  return rawpeer.header(headers, name)
end

-- Does obs satisfy expect?  Returns true, or false and why.
local function matches(expect, obs, side)
  if #obs.notes > 0 then return false, table.concat(obs.notes, "; ") end
  if expect.status then
    if obs.status ~= expect.status then return false, "status" end
    if obs.opened then return false, "opened" end
    for k, v in pairs(expect.headers or {}) do
      local got = header(obs.headers, k)
      if not got or got:lower() ~= v:lower() then return false, "header " .. k end
    end
    return true
  end
  if expect.handshake_error then
    if obs.opened or not obs.handshake_error then return false, "handshake" end
    return true
  end
  if not obs.opened then return false, "not opened" end
  if side == "server" and obs.status ~= 101 then return false, "status" end
  local echo = expect.echo or {}
  if not same_messages(echo, obs.echo) then return false, "messages" end
  if not same_messages(echo, obs.returned) then return false, "echo" end
  for _, m in ipairs(obs.returned) do
    if expect.compressed ~= nil and m.compressed ~= expect.compressed then return false, "compression" end
    if expect.frames and m.frames ~= expect.frames then return false, "frames" end
    if not expect.frames and m.frames ~= 1 then return false, "frames" end
  end
  if not same_list(expect.pongs or {}, obs.pongs) then return false, "pongs" end
  if (expect.extensions or "") ~= obs.extensions then return false, "extensions" end
  if (expect.protocol or "") ~= obs.protocol then return false, "protocol" end
  if expect.close ~= obs.close then return false, "close code" end
  if expect.clean then
    if not obs.clean or obs.error then return false, "not clean" end
    if expect.reason and expect.reason ~= obs.reason then return false, "reason" end
  else
    if obs.error ~= ERROR_NAMES[expect.close] then return false, "error name" end
    if obs.sent_close ~= expect.close then return false, "close frame" end
    if not obs.onclose or obs.onclose.code ~= 1006 or obs.onclose.wasClean then
      return false, "onclose"
    end
  end
  return true
end

---------------------------------------------------------------- describing

local function show_data(s)
  if #s > 24 then return ("%d B"):format(#s) end
  if s:find("[^\32-\126]") or s:find("[|`]") then
    return "0x" .. rawpeer.hex(s)
  end
  return "'" .. s .. "'"
end

local function show_messages(list)
  if #list > 3 then return ("%d messages"):format(#list) end
  local out = {}
  for i, m in ipairs(list) do
    out[i] = (m.binary and "binary " or "text ") .. (m.data == "" and "(empty)" or show_data(m.data))
  end
  return table.concat(out, ", ")
end

local function show_pongs(list)
  if #list > 3 then return ("%d pongs"):format(#list) end
  local out = {}
  for i, h in ipairs(list) do out[i] = ("pong %d B"):format(#h // 2) end
  return table.concat(out, ", ")
end

-- The open connection's part of an outcome, in words (shared by both).
local function describe_open(o, parts)
  if o.extensions and o.extensions ~= "" then parts[#parts + 1] = "ext '" .. o.extensions .. "'" end
  if o.protocol and o.protocol ~= "" then parts[#parts + 1] = "protocol '" .. o.protocol .. "'" end
  if o.echo and #o.echo > 0 then parts[#parts + 1] = "echo " .. show_messages(o.echo) end
  if o.pongs and #o.pongs > 0 then parts[#parts + 1] = show_pongs(o.pongs) end
end

-- Words for an expected outcome.
local function describe(e)
  if e.status then
    local parts = { "HTTP " .. e.status }
    local names = {}
    for k in pairs(e.headers or {}) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do parts[#parts + 1] = k .. ": " .. e.headers[k] end
    return table.concat(parts, ", ")
  end
  if e.handshake_error then return "handshake fails" end
  local parts = {}
  describe_open(e, parts)
  if e.echo and #e.echo > 0 then
    if e.frames then parts[#parts + 1] = ("in %d frames"):format(e.frames) end
    if e.compressed ~= nil then parts[#parts + 1] = e.compressed and "compressed" or "uncompressed" end
  end
  if e.clean then
    parts[#parts + 1] = ("close %d clean"):format(e.close)
      .. ((e.reason and e.reason ~= "") and (" reason " .. show_data(e.reason)) or "")
  else
    parts[#parts + 1] = ("fail %d"):format(e.close)
  end
  return table.concat(parts, ", ")
end

-- Words for an observed outcome (shown when it differs from the expected).
local function describe_observed(o)
  local parts = {}
  if not o.opened then
    if o.status then parts[#parts + 1] = "HTTP " .. o.status end
    if o.handshake_error then parts[#parts + 1] = "handshake fails"
    elseif o.connect_error then parts[#parts + 1] = "connect error '" .. o.connect_error .. "'" end
    if #parts == 0 then parts[1] = "never opened" end
  else
    describe_open(o, parts)
    if not same_messages(o.echo, o.returned) then
      parts[#parts + 1] = "peer got back " .. (#o.returned == 0 and "nothing" or show_messages(o.returned))
    end
    local counts, zipped = {}, {}
    for i, m in ipairs(o.returned) do
      counts[i] = m.frames
      zipped[i] = m.compressed and "compressed" or "uncompressed"
    end
    local shown = table.concat(counts, "+")
    if shown:find("[^1+]") then parts[#parts + 1] = "returned in " .. shown .. " frames" end
    if #zipped > 0 and (o.extensions or "") ~= "" then parts[#parts + 1] = table.concat(zipped, "+") end
    if o.close and o.error then
      parts[#parts + 1] = ("fail %d, error '%s'"):format(o.close, o.error)
      if o.sent_close ~= o.close then parts[#parts + 1] = "close frame " .. tostring(o.sent_close) end
      if o.onclose and (o.onclose.code ~= 1006 or o.onclose.wasClean) then
        parts[#parts + 1] = ("onclose %d%s"):format(o.onclose.code, o.onclose.wasClean and " clean" or "")
      end
    elseif o.close then
      parts[#parts + 1] = ("close %d %s"):format(o.close, o.clean and "clean" or "not clean")
        .. ((o.reason and o.reason ~= "") and (" reason " .. show_data(o.reason)) or "")
    end
  end
  if #o.notes > 0 then parts[#parts + 1] = table.concat(o.notes, "; ") end
  return table.concat(parts, ", ")
end

---------------------------------------------------------------- the run

local selected = {}
for _, c in ipairs(cases) do
  if not only or c.id:sub(1, #only) == only then selected[#selected + 1] = c end
end

local t0 = now()
local results = {}
local queue, running = 1, {}

local function finish_case(r)
  stop(r)
  local obs = observe(r)
  local c = r.case
  local ok, why = matches(c.expect, obs, c.side)
  local result
  if ok then
    result = { status = "PASS" }
  elseif c.justified and matches(c.justified.observed, obs, c.side) then
    result = { status = "justified", observed = describe_observed(obs) }
  else
    result = { status = "FAIL", observed = describe_observed(obs), why = why }
  end
  results[c] = result
  if verbose or result.status ~= "PASS" then
    io.write(("%-8s %-9s %s: %s\n"):format(c.id, result.status, c.side, c.desc))
    if result.status ~= "PASS" then
      io.write(("         expected: %s\n         observed: %s%s\n"):format(describe(c.expect),
        result.observed, result.why and (" [" .. result.why .. "]") or ""))
    end
    io.flush()
  end
end

while queue <= #selected or #running > 0 do
  while #running < jobs and queue <= #selected do
    running[#running + 1] = start(selected[queue])
    queue = queue + 1
  end
  moonws.step(0.01)
  local i = 1
  while i <= #running do
    if poll(running[i]) then
      finish_case(table.remove(running, i))
    else
      i = i + 1
    end
  end
end
-- let lingering connections end before the process does
local stop_at = now() + 0.2
while now() < stop_at do moonws.step(0.02) end
local elapsed = now() - t0

---------------------------------------------------------------- the report

local AREAS = {
  { 1, "Framing" }, { 2, "Ping and pong" }, { 3, "Reserved bits" }, { 4, "Opcodes" },
  { 5, "Fragmentation" }, { 6, "UTF-8" }, { 7, "Close codes and reasons" }, { 9, "Limits" },
  { 12, "Compression (permessage-deflate)" }, { 13, "Opening handshake" },
}

local passed, failed, justified = 0, 0, 0
local per_area = {}
for _, c in ipairs(selected) do
  local a = tonumber(c.id:match("^(%d+)"))
  per_area[a] = per_area[a] or { n = 0, fail = 0, just = 0 }
  per_area[a].n = per_area[a].n + 1
  local s = results[c].status
  if s == "PASS" then passed = passed + 1
  elseif s == "justified" then justified = justified + 1; per_area[a].just = per_area[a].just + 1
  else failed = failed + 1; per_area[a].fail = per_area[a].fail + 1 end
end

local function cell(s) return (tostring(s):gsub("|", "\\|"):gsub("\n", " ")) end

if write_readme then
  local out = {}
  local function w(s) out[#out + 1] = s end
  w("# moonws conformance cases")
  w("")
  w("A data-driven protocol suite in the spirit of the Autobahn TestSuite: each case sends what")
  w("a raw peer (`spec/peers/raw_peer.py`, its own framing and HTTP, standard library only)")
  w("scripts, byte by byte, and checks what moonws did against the RFC's rule. \"server\" cases")
  w("run a moonws server against the raw client; \"client\" cases a moonws client against the raw")
  w("server. The moonws application echoes every message; besides the expected outcome, every")
  w("case checks that moonws masked as its role requires, set no RSV bit outside a compressed")
  w("message, sent no data or close frame after its own close frame (a pong may still answer")
  w("a ping, RFC 6455 5.5.2) and fired `onclose` exactly once.")
  w("")
  w("The cases are data in [cases.lua](cases.lua) (RFC section, description, side, the peer's")
  w("steps, the expected outcome); [run.lua](run.lua) runs them and writes this file. To")
  w("regenerate it: `make conformance` (or `lua5.4 spec/conformance/run.lua` from the checkout).")
  w("")
  w("Expected outcomes: `echo ...` the messages the application received and sent back;")
  w("`pong N B` the pongs the peer got; `close N clean` a completed closing handshake with code N;")
  w("`fail N` moonws failed the connection with close code N (then `onerror` with its name and")
  w("`onclose` 1006, not clean); `HTTP N` the handshake was refused with that status; `handshake")
  w("fails` the client reported a handshake error. \"justified\" marks an RFC SHOULD or MAY where")
  w("moonws chose otherwise, with the reason given in the case.")
  w("")
  w(("**%d cases: %d passed, %d failed%s.**"):format(#selected, passed + justified, failed,
    justified > 0 and (" (of the passed, " .. justified .. " justified)") or ""))
  w("")
  w("| area | cases | failed |")
  w("|---|---|---|")
  for _, a in ipairs(AREAS) do
    local s = per_area[a[1]]
    if s then w(("| %d %s | %d | %d |"):format(a[1], a[2], s.n, s.fail)) end
  end
  for _, a in ipairs(AREAS) do
    if per_area[a[1]] then
      w("")
      w(("## %d %s"):format(a[1], a[2]))
      w("")
      w("| id | RFC section | case | expected | result |")
      w("|---|---|---|---|---|")
      for _, c in ipairs(selected) do
        if tonumber(c.id:match("^(%d+)")) == a[1] then
          local r = results[c]
          local res = r.status
          if r.status == "justified" then
            res = "justified: " .. c.justified.reason .. " (observed: " .. r.observed .. ")"
          elseif r.status == "FAIL" then
            res = "**FAIL** (observed: " .. r.observed .. ")"
          end
          w(("| %s | %s | %s | %s | %s |"):format(c.id, cell(c.rfc), cell(c.side .. ": " .. c.desc),
            cell(describe(c.expect)), cell(res)))
        end
      end
    end
  end
  local f = assert(io.open("spec/conformance/README.md", "w"))
  f:write(table.concat(out, "\n"), "\n")
  f:close()
end

io.write(("%d cases in %.1f s%s\n"):format(#selected, elapsed,
  justified > 0 and (", " .. justified .. " justified (counted as passed)") or ""))
io.write(("%d passed, %d failed\n"):format(passed + justified, failed))
os.exit(failed == 0 and 0 or 1)

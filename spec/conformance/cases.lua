-- spec/conformance/cases.lua -- the conformance cases (issue 5), in the
-- spirit of the Autobahn TestSuite: numbered by area (1 framing, 2
-- ping/pong, 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close
-- codes and reasons, 9 limits, 12 permessage-deflate, 13 handshake), each
-- one a plain table that spec/conformance/run.lua runs and reports.
--
-- A case:
--   id        "5.3.2": area.group.number
--   rfc       the rule it checks ("RFC 6455 5.2", "RFC 7692 6.1")
--   desc      one line
--   side      "server": a moonws server against a raw client;
--             "client": a moonws client against a raw server
--             (the raw side is spec/peers/raw_peer.py; steps are its script)
--   opts      moonws options for the side under test (listen / new)
--   steps     the raw peer's script (see raw_peer.py's header)
--   app       what the moonws application does besides echoing every
--             message back: { close = { code, reason } } closes as soon as
--             the connection is open
--   expect    the outcome, as data:
--     status = n           server side: the handshake is refused with HTTP
--                          status n (headers = { name = value } in it too)
--     handshake_error = true   client side: connecting fails ("handshake")
--     otherwise the connection opens, and:
--     echo = { {data=, binary=}, ... }  exactly these messages reach the
--                          application (default none), and come back to the
--                          peer (the application echoes each)
--     frames = n           each echoed message came back in n frames
--                          (default 1)
--     compressed = bool    echoed messages came back with RSV1 (or not)
--     pongs = { hex, ... } exactly these pong payloads reach the peer
--     close = code, clean = true   a completed closing handshake: moonws's
--                          close frame carried code (none for 1005), onclose
--                          got code and wasClean = true (reason = "...": and
--                          that reason)
--     close = code (no clean)   moonws failed the connection: its close
--                          frame carried code, onerror fired with the error
--                          name for it (1002 protocol, 1007 invalid_data,
--                          1009 too_big), then onclose(1006, wasClean=false)
--     extensions, protocol     ws.extensions / ws.protocol (default "")
--   justified { reason = "...", observed = {...} }: an RFC SHOULD or MAY
--             where moonws chose otherwise; reported as "justified" when
--             the outcome is `observed` instead of `expect`.
-- Every case also checks the invariants listed in run.lua's header.
-- The builders below (S for server cases, CL for client cases) write the
-- peer's steps: the handshake, the frames, and an ending that fits the
-- expected outcome (send a close and read the echo, or read until the
-- connection ends).

local cases = {}

---------------------------------------------------------------- numbering

local area, group_no, n = 0, 0, 0
local function group(a, g) area, group_no, n = a, g, 0 end
local function add(c)
  n = n + 1
  c.id = ("%d.%d.%d"):format(area, group_no, n)
  cases[#cases + 1] = c
end

---------------------------------------------------------------- helpers

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
local function unhex(h)
  return (h:gsub("%x%x", function(c) return string.char(tonumber(c, 16)) end))
end

local function merge(a, b)
  local out = {}
  for k, v in pairs(a or {}) do out[k] = v end
  for k, v in pairs(b or {}) do out[k] = v end
  return out
end

local function append(list, more)
  for _, v in ipairs(more or {}) do list[#list + 1] = v end
  return list
end

-- A frame step.  Shorthand: data = Lua string (sent as payload_hex),
-- size = payload_size; everything else as raw_peer.py's send_frame.
local function frame_spec(t)
  local f = {}
  for k, v in pairs(t) do
    if k == "data" then f.payload_hex = hex(v)
    elseif k == "size" then f.payload_size = v
    else f[k] = v end
  end
  if f.opcode == nil then f.opcode = 1 end
  return f
end
local function F(t) return { send_frame = frame_spec(t) } end
-- Several frames in ONE write.
local function FS(list)
  local out = {}
  for i, t in ipairs(list) do out[i] = frame_spec(t) end
  return { send_frames = out }
end
local function text(s, t) return F(merge({ opcode = 1, data = s }, t)) end
local function binary(s, t) return F(merge({ opcode = 2, data = s }, t)) end
-- A message cut into pieces (a list of strings), one frame each.
local function pieces(opcode, list, t)
  local out = {}
  for i, s in ipairs(list) do
    out[i] = F(merge({ opcode = i == 1 and opcode or 0, fin = i == #list, data = s }, t))
  end
  return out
end

local function read(what, timeout)
  return { read_frames = { ["until"] = what, timeout = timeout or 4, messages = true } }
end
local function close_frame(code, reason)
  return { opcode = 8, close_code = code, close_reason_hex = reason and hex(reason) or nil }
end

-- Expected messages.
local function T(s) return { data = s } end
local function B(s) return { data = s, binary = true } end

local function ok(echo, more) return merge({ echo = echo or {}, close = 1000, clean = true }, more) end
local function fail(code, echo, more) return merge({ close = code, echo = echo or {} }, more) end

local function rep(s, k) return s:rep(k) end

-- n pseudo-random letters (the same every run): text that only compresses
-- by reaching back over its own length when repeated.
local function letters(n, seed)
  local x, out = seed or 12345, {}
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    out[i] = string.char(97 + (x >> 16) % 26)
  end
  return table.concat(out)
end

---------------------------------------------------------------- case builders

-- The raw client's ending, from what the case expects of the server.
local function server_tail(t)
  local e = t.expect
  if t.tail then return t.tail end
  if e.status then return { read("eof", 3) } end
  if t.app and t.app.close then
    local code, reason = t.app.close[1], t.app.close[2]
    return { read("close"), F(code and close_frame(code, reason) or { opcode = 8 }), read("eof") }
  end
  if e.close and not e.clean then return { read("eof", 4) } end
  local tail = {}
  if t.close_frame ~= false then tail[1] = F(t.close_frame or close_frame(1000)) end
  return append(tail, { read("close"), read("eof") })
end

-- t.read_opts go into every read_frames step (inflate_bits, ...).
local function with_read_opts(steps, opts)
  if not opts then return steps end
  for i, step in ipairs(steps) do
    if step.read_frames then steps[i] = { read_frames = merge(step.read_frames, opts) } end
  end
  return steps
end

-- A server-side case: handshake (t.handshake), t.send, the ending.
local function S(t)
  local steps = { { handshake = t.handshake or {} } }
  append(steps, t.send)
  append(steps, server_tail(t))
  with_read_opts(steps, t.read_opts)
  add { side = "server", rfc = t.rfc, desc = t.desc, opts = t.opts, steps = steps,
    expect = t.expect, app = t.app, justified = t.justified }
end

-- The raw server's ending, from what the case expects of the client.
local function client_tail(t)
  local e = t.expect
  if t.tail then return t.tail end
  if e.handshake_error then return { read("eof", 4) } end
  if t.app and t.app.close then
    local code, reason = t.app.close[1], t.app.close[2]
    return { read("close"), F(code and close_frame(code, reason) or { opcode = 8 }),
      { close = true } }
  end
  if e.close and not e.clean then return { read("close"), read("eof") } end
  local tail = {}
  if t.close_frame ~= false then tail[1] = F(t.close_frame or close_frame(1000)) end
  return append(tail, { read("close"), { close = true } })
end

-- A client-side case: the raw server answers with t.answer, then t.send,
-- then the ending.
local function CL(t)
  local steps = { { handshake = t.answer or {} } }
  append(steps, t.send)
  append(steps, client_tail(t))
  with_read_opts(steps, t.read_opts)
  add { side = "client", rfc = t.rfc, desc = t.desc, opts = t.opts, steps = steps,
    expect = t.expect, app = t.app, justified = t.justified }
end

---------------------------------------------------------------- 1 framing

local LENGTHS = { 0, 1, 125, 126, 127, 128, 65535, 65536, 65537 }
local function form(len) return len < 126 and "7-bit" or len < 65536 and "16-bit" or "64-bit" end

group(1, 1)
for _, len in ipairs(LENGTHS) do
  S { rfc = "RFC 6455 5.2", desc = ("%d-byte text message (%s length)"):format(len, form(len)),
    send = { F { opcode = 1, size = len } }, expect = ok { T(rep("a", len)) } }
end

group(1, 2)
for _, len in ipairs(LENGTHS) do
  S { rfc = "RFC 6455 5.2", desc = ("%d-byte binary message (%s length)"):format(len, form(len)),
    send = { F { opcode = 2, size = len } }, expect = ok { B(rep("a", len)) } }
end

group(1, 3)
for _, c in ipairs { { 1, 0 }, { 1, 125 }, { 1, 126 }, { 1, 65535 }, { 1, 65536 }, { 2, 125 },
  { 2, 126 }, { 2, 65536 } } do
  local op, len = c[1], c[2]
  CL { rfc = "RFC 6455 5.2",
    desc = ("%d-byte %s message (%s length) from the server"):format(
      len, op == 1 and "text" or "binary", form(len)),
    send = { F { opcode = op, size = len } },
    expect = ok { (op == 1 and T or B)(rep("a", len)) } }
end

group(1, 4) -- RFC 6455 5.2: "the minimal number of bytes MUST be used to encode the length"
for _, c in ipairs { { 0, "16" }, { 125, "16" }, { 126, "64" }, { 65535, "64" } } do
  S { rfc = "RFC 6455 5.2", desc = ("length %d in the %s-bit form (not minimal)"):format(c[1], c[2]),
    send = { F { opcode = 2, size = c[1], length_form = c[2] } }, expect = fail(1002) }
end
S { rfc = "RFC 6455 5.2", desc = "64-bit length with the most significant bit set",
  send = { { send_raw_hex = "82ff" .. "8000000000000005" .. "00000000" .. "6869686968" } },
  expect = fail(1002) }
for _, c in ipairs { { 125, "16" }, { 65535, "64" } } do
  CL { rfc = "RFC 6455 5.2",
    desc = ("length %d in the %s-bit form (not minimal) from the server"):format(c[1], c[2]),
    send = { F { opcode = 2, size = c[1], length_form = c[2] } }, expect = fail(1002) }
end

group(1, 5) -- frames arriving in pieces
for _, c in ipairs { { 10, 6 }, { 200, 8 }, { 70000, 14 } } do
  local cuts = {}
  for i = 1, c[2] do cuts[i] = i end
  S { rfc = "RFC 6455 5.2",
    desc = ("%d-byte frame, its %d header bytes written one at a time"):format(c[1], c[2]),
    send = { F { opcode = 2, size = c[1], split_at = cuts, split_sleep = 0.002 } },
    expect = ok { B(rep("a", c[1])) } }
end
S { rfc = "RFC 6455 5.2", desc = "a 40-byte text frame written one byte at a time",
  send = { F { opcode = 1, size = 40, split = 1, split_sleep = 0.002 } },
  expect = ok { T(rep("a", 40)) } }
S { rfc = "RFC 6455 5.2", desc = "a 100000-byte frame written in 3 pieces (cut in the payload)",
  send = { F { opcode = 2, size = 100000, split_at = { 7, 5000, 60000 }, split_sleep = 0.01 } },
  expect = ok { B(rep("a", 100000)) } }
CL { rfc = "RFC 6455 5.2", desc = "a 300-byte frame from the server, header bytes one at a time",
  send = { F { opcode = 1, size = 300, split_at = { 1, 2, 3, 4 }, split_sleep = 0.002 } },
  expect = ok { T(rep("a", 300)) } }
CL { rfc = "RFC 6455 5.2", desc = "a 30-byte frame from the server, one byte at a time",
  send = { F { opcode = 2, size = 30, split = 1, split_sleep = 0.002 } },
  expect = ok { B(rep("a", 30)) } }

group(1, 6) -- masking
for _, c in ipairs { { 1, "text" }, { 2, "binary" }, { 9, "ping" }, { 8, "close" } } do
  local f = { opcode = c[1], data = "x", mask = false }
  if c[1] == 8 then f = merge(close_frame(1000), { mask = false }) end
  S { rfc = "RFC 6455 5.1", desc = "unmasked " .. c[2] .. " frame from the client", send = { F(f) },
    expect = fail(1002) }
end
S { rfc = "RFC 6455 5.3", desc = "masking key 00000000 is a valid key",
  send = { text("zero key", { mask_key_hex = "00000000" }) }, expect = ok { T "zero key" } }
S { rfc = "RFC 6455 5.3", desc = "masking key ffffffff over 7 bytes (key wraps around)",
  send = { text("wrapped", { mask_key_hex = "ffffffff" }) }, expect = ok { T "wrapped" } }
for _, c in ipairs { { 1, "text" }, { 9, "ping" } } do
  CL { rfc = "RFC 6455 5.1", desc = "masked " .. c[2] .. " frame from the server",
    send = { F { opcode = c[1], data = "x", mask = true } }, expect = fail(1002) }
end

group(1, 7) -- several frames in one TCP write
S { rfc = "RFC 6455 5.2", desc = "text, binary, empty text and a ping in one write",
  send = { FS { { opcode = 1, data = "one" }, { opcode = 2, data = "\0\1" }, { opcode = 1, data = "" },
    { opcode = 9, data = "p" } } },
  expect = ok({ T "one", B "\0\1", T "" }, { pongs = { hex "p" } }) }
do
  local list, echo = {}, {}
  for i = 1, 50 do list[i] = { opcode = 1, data = "m" .. i }; echo[i] = T("m" .. i) end
  S { rfc = "RFC 6455 5.2", desc = "50 text messages in one write, order kept",
    send = { FS(list) }, expect = ok(echo) }
  CL { rfc = "RFC 6455 5.2", desc = "50 text messages from the server in one write, order kept",
    send = { FS(list) }, expect = ok(echo) }
end
S { rfc = "RFC 6455 5.2", desc = "a message and the close frame in one write",
  send = { FS { { opcode = 1, data = "last" }, close_frame(1000) } }, close_frame = false,
  expect = ok { T "last" } }

group(1, 8) -- frames right behind the 101
CL { rfc = "RFC 6455 4.1", desc = "a text frame in the same write as the 101 response",
  answer = { frames = { { opcode = 1, payload_hex = hex "early" } } }, expect = ok { T "early" } }
CL { rfc = "RFC 6455 4.1", desc = "101, a message and a close frame in one write",
  answer = { frames = { { opcode = 2, payload_hex = "cafe" }, close_frame(1000) } },
  close_frame = false, expect = ok { B "\202\254" } }
S { rfc = "RFC 6455 4.2.1", desc = "a text frame in the same write as the upgrade request",
  handshake = { frames = { { opcode = 1, payload_hex = hex "hi" } } }, send = {},
  expect = ok { T "hi" } }

---------------------------------------------------------------- 2 ping/pong

group(2, 1)
for _, len in ipairs { 0, 1, 2, 64, 124, 125 } do
  S { rfc = "RFC 6455 5.5.2", desc = ("ping with %d bytes of payload -> pong with the same"):format(len),
    send = { F { opcode = 9, size = len } }, expect = ok({}, { pongs = { rep("61", len) } }) }
end
do
  local all = {}
  for i = 0, 124 do all[#all + 1] = string.char(i) end
  all = table.concat(all)
  S { rfc = "RFC 6455 5.5.3", desc = "ping with binary payload 00..7c (125 bytes)",
    send = { F { opcode = 9, data = all } }, expect = ok({}, { pongs = { hex(all) } }) }
  CL { rfc = "RFC 6455 5.5.3", desc = "ping from the server with binary payload 00..7c",
    send = { F { opcode = 9, data = all } }, expect = ok({}, { pongs = { hex(all) } }) }
end
for _, len in ipairs { 0, 125 } do
  CL { rfc = "RFC 6455 5.5.2",
    desc = ("ping from the server with %d bytes -> masked pong with the same"):format(len),
    send = { F { opcode = 9, size = len } }, expect = ok({}, { pongs = { rep("61", len) } }) }
end

group(2, 2) -- RFC 6455 5.5: control frames carry at most 125 bytes and are not fragmented
S { rfc = "RFC 6455 5.5", desc = "ping with 126 bytes", send = { F { opcode = 9, size = 126 } },
  expect = fail(1002) }
S { rfc = "RFC 6455 5.5", desc = "pong with 126 bytes", send = { F { opcode = 10, size = 126 } },
  expect = fail(1002) }
S { rfc = "RFC 6455 5.5", desc = "ping announcing 65536 bytes (64-bit form)",
  send = { F { opcode = 9, size = 65536 } }, expect = fail(1002) }
S { rfc = "RFC 6455 5.5", desc = "fragmented ping (FIN=0)", send = { F { opcode = 9, fin = false, data = "p" } },
  expect = fail(1002) }
S { rfc = "RFC 6455 5.5", desc = "fragmented pong (FIN=0)", send = { F { opcode = 10, fin = false, data = "p" } },
  expect = fail(1002) }
CL { rfc = "RFC 6455 5.5", desc = "ping with 126 bytes from the server", send = { F { opcode = 9, size = 126 } },
  expect = fail(1002) }
CL { rfc = "RFC 6455 5.5", desc = "fragmented ping (FIN=0) from the server",
  send = { F { opcode = 9, fin = false, data = "p" } }, expect = fail(1002) }

group(2, 3) -- RFC 6455 5.5.3: an unsolicited pong is not answered
for _, c in ipairs { { "", "empty" }, { "unsolicited", "11-byte" }, { rep("z", 125), "125-byte" } } do
  S { rfc = "RFC 6455 5.5.3", desc = "unsolicited " .. c[2] .. " pong is ignored, then a message",
    send = { F { opcode = 10, data = c[1] }, text "after pong" }, expect = ok { T "after pong" } }
end
CL { rfc = "RFC 6455 5.5.3", desc = "unsolicited pong from the server is ignored, then a message",
  send = { F { opcode = 10, data = "u" }, text "after pong" }, expect = ok { T "after pong" } }

group(2, 4) -- RFC 6455 5.4: control frames MAY be injected in the middle of a fragmented message
S { rfc = "RFC 6455 5.4", desc = "ping between the fragments of a text message",
  send = append(pieces(1, { "frag" }, { fin = false }),
    { F { opcode = 9, data = "mid" }, F { opcode = 0, data = "mented" } }),
  expect = ok({ T "fragmented" }, { pongs = { hex "mid" } }) }
S { rfc = "RFC 6455 5.4", desc = "pong between the fragments of a binary message",
  send = { F { opcode = 2, fin = false, data = "ab" }, F { opcode = 10, data = "x" },
    F { opcode = 0, data = "cd" } },
  expect = ok { B "abcd" } }
CL { rfc = "RFC 6455 5.4", desc = "ping from the server between fragments",
  send = { F { opcode = 1, fin = false, data = "frag" }, F { opcode = 9, data = "mid" },
    F { opcode = 0, data = "mented" } },
  expect = ok({ T "fragmented" }, { pongs = { hex "mid" } }) }

group(2, 5) -- many pings
do
  local list, pongs = {}, {}
  for i = 1, 10 do list[i] = { opcode = 9, data = "ping " .. i }; pongs[i] = hex("ping " .. i) end
  S { rfc = "RFC 6455 5.5.3", desc = "10 pings in one write -> 10 pongs in order",
    send = { FS(list) }, expect = ok({}, { pongs = pongs }) }
  CL { rfc = "RFC 6455 5.5.3", desc = "10 pings from the server in one write -> 10 pongs in order",
    send = { FS(list) }, expect = ok({}, { pongs = pongs }) }
end

---------------------------------------------------------------- 3 reserved bits

group(3, 1) -- RFC 6455 5.2: a nonzero RSV bit with no extension defining it -> fail
local RSV = { { 4, "RSV1" }, { 2, "RSV2" }, { 1, "RSV3" } }
local KINDS = {
  { "text", function(rsv) return { text("x", { rsv = rsv }) } end },
  { "binary", function(rsv) return { binary("x", { rsv = rsv }) } end },
  { "continuation", function(rsv)
    return { text("a", { fin = false }), F { opcode = 0, data = "b", rsv = rsv } } end },
  { "ping", function(rsv) return { F { opcode = 9, data = "p", rsv = rsv } } end },
  { "pong", function(rsv) return { F { opcode = 10, data = "p", rsv = rsv } } end },
  { "close", function(rsv) return { F(merge(close_frame(1000), { rsv = rsv })) } end },
}
for _, r in ipairs(RSV) do
  for _, k in ipairs(KINDS) do
    S { rfc = "RFC 6455 5.2", desc = r[2] .. " set on a " .. k[1] .. " frame", send = k[2](r[1]),
      expect = fail(1002) }
  end
end

group(3, 2)
for _, r in ipairs { 3, 5, 6, 7 } do
  S { rfc = "RFC 6455 5.2", desc = ("RSV bits %d%d%d set on a text frame"):format(r >> 2, (r >> 1) & 1, r & 1),
    send = { text("x", { rsv = r }) }, expect = fail(1002) }
end
S { rfc = "RFC 6455 5.2", desc = "a good message is echoed, then an RSV2 frame fails",
  send = { text "good", text("bad", { rsv = 2 }) }, expect = fail(1002, { T "good" }) }
S { rfc = "RFC 6455 5.2", desc = "a good message and an RSV3 frame in one write",
  send = { FS { { opcode = 1, data = "good" }, { opcode = 1, data = "bad", rsv = 1 } } },
  expect = fail(1002, { T "good" }) }

group(3, 3)
for _, r in ipairs(RSV) do
  CL { rfc = "RFC 6455 5.2", desc = r[2] .. " set on a text frame from the server",
    send = { text("x", { rsv = r[1] }) }, expect = fail(1002) }
end
CL { rfc = "RFC 6455 5.2", desc = "RSV1 set on a binary frame from the server",
  send = { binary("x", { rsv = 4 }) }, expect = fail(1002) }
CL { rfc = "RFC 6455 5.2", desc = "RSV2 set on a ping from the server",
  send = { F { opcode = 9, data = "p", rsv = 2 } }, expect = fail(1002) }
CL { rfc = "RFC 6455 5.2", desc = "RSV3 set on a close frame from the server",
  send = { F(merge(close_frame(1000), { rsv = 1 })) }, expect = fail(1002) }

---------------------------------------------------------------- 4 opcodes

local DATA_OPS, CONTROL_OPS = { 3, 4, 5, 6, 7 }, { 11, 12, 13, 14, 15 }

group(4, 1) -- RFC 6455 5.2: reserved opcodes -> fail
for _, op in ipairs(DATA_OPS) do
  S { rfc = "RFC 6455 5.2", desc = ("a message is echoed, then reserved data opcode %d"):format(op),
    send = { text "before", F { opcode = op, data = "x" } }, expect = fail(1002, { T "before" }) }
end
for _, op in ipairs(CONTROL_OPS) do
  S { rfc = "RFC 6455 5.2", desc = ("a message is echoed, then reserved control opcode %d"):format(op),
    send = { text "before", F { opcode = op, data = "x" } }, expect = fail(1002, { T "before" }) }
end

group(4, 2) -- the same opcodes where a control frame may legally appear
for _, op in ipairs(append(append({}, DATA_OPS), CONTROL_OPS)) do
  S { rfc = "RFC 6455 5.2", desc = ("reserved opcode %d between the fragments of a message"):format(op),
    send = { text("one ", { fin = false }), F { opcode = op, data = "x" }, F { opcode = 0, data = "two" } },
    expect = fail(1002) }
end

group(4, 3)
for _, op in ipairs { 3, 7, 11, 15 } do
  S { rfc = "RFC 6455 5.2", desc = ("reserved opcode %d with FIN=0 and an empty payload"):format(op),
    send = { F { opcode = op, fin = false } }, expect = fail(1002) }
end

group(4, 4)
for _, op in ipairs(append(append({}, DATA_OPS), CONTROL_OPS)) do
  CL { rfc = "RFC 6455 5.2", desc = ("reserved opcode %d from the server"):format(op),
    send = { F { opcode = op, data = "x" } }, expect = fail(1002) }
end

---------------------------------------------------------------- 5 fragmentation

group(5, 1) -- RFC 6455 5.4: fragmented messages are delivered whole
S { rfc = "RFC 6455 5.4", desc = "text message in 2 fragments", send = pieces(1, { "Hello, ", "world" }),
  expect = ok { T "Hello, world" } }
S { rfc = "RFC 6455 5.4", desc = "text message in 3 fragments", send = pieces(1, { "a", "b", "c" }),
  expect = ok { T "abc" } }
S { rfc = "RFC 6455 5.4", desc = "binary message in 2 fragments", send = pieces(2, { "\0\255", "\128" }),
  expect = ok { B "\0\255\128" } }
do
  local bytes = {}
  for i = 1, 30 do bytes[i] = string.char(96 + (i % 26) + 1) end
  S { rfc = "RFC 6455 5.4", desc = "30-byte text message, one byte per fragment",
    send = pieces(1, bytes), expect = ok { T(table.concat(bytes)) } }
  local list = {}
  for i = 1, 1000 do list[i] = { opcode = i == 1 and 2 or 0, fin = i == 1000, data = "x" } end
  S { rfc = "RFC 6455 5.4", desc = "1000 one-byte fragments in one write", send = { FS(list) },
    expect = ok { B(rep("x", 1000)) } }
  local big = {}
  for i = 1, 4 do big[i] = { opcode = i == 1 and 1 or 0, fin = i == 4, size = 20000 } end
  S { rfc = "RFC 6455 5.4", desc = "4 fragments of 20000 bytes", send = { FS(big) },
    expect = ok { T(rep("a", 80000)) } }
end

group(5, 2) -- empty fragments
S { rfc = "RFC 6455 5.4", desc = "empty first fragment", send = pieces(1, { "", "abc" }), expect = ok { T "abc" } }
S { rfc = "RFC 6455 5.4", desc = "empty middle fragment", send = pieces(1, { "ab", "", "c" }), expect = ok { T "abc" } }
S { rfc = "RFC 6455 5.4", desc = "empty final fragment", send = pieces(1, { "abc", "" }), expect = ok { T "abc" } }
S { rfc = "RFC 6455 5.4", desc = "text message of 3 empty fragments", send = pieces(1, { "", "", "" }),
  expect = ok { T "" } }
S { rfc = "RFC 6455 5.4", desc = "binary message of 2 empty fragments", send = pieces(2, { "", "" }),
  expect = ok { B "" } }

group(5, 3) -- continuation rules
S { rfc = "RFC 6455 5.4", desc = "continuation frame (FIN=1) with nothing to continue",
  send = { F { opcode = 0, data = "orphan" } }, expect = fail(1002) }
S { rfc = "RFC 6455 5.4", desc = "continuation frame (FIN=0) with nothing to continue",
  send = { F { opcode = 0, fin = false, data = "orphan" } }, expect = fail(1002) }
S { rfc = "RFC 6455 5.4", desc = "continuation frame after a complete message",
  send = { text "done", F { opcode = 0, data = "more" } }, expect = fail(1002, { T "done" }) }
for _, c in ipairs { { 1, 1, "text inside text" }, { 1, 2, "binary inside text" },
  { 2, 1, "text inside binary" }, { 2, 2, "binary inside binary" } } do
  S { rfc = "RFC 6455 5.4", desc = "new data frame in a fragmented message: " .. c[3],
    send = { F { opcode = c[1], fin = false, data = "a" }, F { opcode = c[2], data = "b" } },
    expect = fail(1002) }
end
S { rfc = "RFC 6455 5.4", desc = "new data frame with FIN=0 in a fragmented message",
  send = { F { opcode = 1, fin = false, data = "a" }, F { opcode = 1, fin = false, data = "b" } },
  expect = fail(1002) }

group(5, 4) -- control frames in the middle
do
  local list, pongs = {}, {}
  for i = 1, 5 do
    list[#list + 1] = F { opcode = i == 1 and 1 or 0, fin = i == 5, data = tostring(i) }
    if i < 5 then
      list[#list + 1] = F { opcode = 9, data = "p" .. i }
      pongs[i] = hex("p" .. i)
    end
  end
  S { rfc = "RFC 6455 5.4", desc = "a ping after every fragment of a 5-fragment message", send = list,
    expect = ok({ T "12345" }, { pongs = pongs }) }
end
S { rfc = "RFC 6455 5.4", desc = "ping and pong between fragments, in one write",
  send = { FS { { opcode = 1, fin = false, data = "x" }, { opcode = 9, data = "a" },
    { opcode = 10, data = "b" }, { opcode = 0, data = "y" } } },
  expect = ok({ T "xy" }, { pongs = { hex "a" } }) }
S { rfc = "RFC 6455 5.5.1", desc = "close between fragments: the closing handshake, no message",
  send = { text("unfinished", { fin = false }) }, expect = ok {} }
CL { rfc = "RFC 6455 5.5.1", desc = "close from the server between fragments: no message",
  send = { text("unfinished", { fin = false }) }, expect = ok {} }

group(5, 5)
CL { rfc = "RFC 6455 5.4", desc = "text message in 3 fragments from the server",
  send = pieces(1, { "x", "y", "z" }), expect = ok { T "xyz" } }
CL { rfc = "RFC 6455 5.4", desc = "empty fragments from the server", send = pieces(2, { "", "q", "" }),
  expect = ok { B "q" } }
CL { rfc = "RFC 6455 5.4", desc = "continuation with nothing to continue from the server",
  send = { F { opcode = 0, data = "orphan" } }, expect = fail(1002) }
CL { rfc = "RFC 6455 5.4", desc = "text inside a fragmented text message from the server",
  send = { F { opcode = 1, fin = false, data = "a" }, F { opcode = 1, data = "b" } }, expect = fail(1002) }

group(5, 6) -- moonws fragmenting what it sends (option fragment_size)
S { rfc = "RFC 6455 5.4", desc = "server with fragment_size 10 echoes 25 bytes in 3 frames",
  opts = { fragment_size = 10 }, send = { text(rep("f", 25)) },
  expect = ok({ T(rep("f", 25)) }, { frames = 3 }) }
S { rfc = "RFC 6455 5.4", desc = "server with fragment_size 4 echoes 2-byte UTF-8 text cut mid-character",
  opts = { fragment_size = 4 }, send = { text "\u{e9}\u{e9}\u{e9}" },
  expect = ok({ T "\u{e9}\u{e9}\u{e9}" }, { frames = 2 }) }
CL { rfc = "RFC 6455 5.4", desc = "client with fragment_size 100 echoes 1000 bytes in 10 frames",
  opts = { fragment_size = 100 }, send = { binary(rep("c", 1000)) },
  expect = ok({ B(rep("c", 1000)) }, { frames = 10 }) }

---------------------------------------------------------------- 6 UTF-8

-- Markus Kuhn's UTF-8 decoder stress test, by category.
local VALID = {
  { "ASCII and Latin-1 'Hello-\u{b5}@\u{df}\u{f6}\u{e4}\u{fc}'", hex "Hello-\u{b5}@\u{df}\u{f6}\u{e4}\u{fc}\u{e0}\u{e1}-UTF-8!!" },
  { "Greek 'kosme'", "cebae1bdb9cf83cebcceb5" },
  { "first 1-byte sequence U+0000", "00" },
  { "first 2-byte sequence U+0080", "c280" },
  { "first 3-byte sequence U+0800", "e0a080" },
  { "first 4-byte sequence U+10000", "f0908080" },
  { "last 1-byte sequence U+007F", "7f" },
  { "last 2-byte sequence U+07FF", "dfbf" },
  { "last 3-byte sequence U+FFFF", "efbfbf" },
  { "last code point U+10FFFF", "f48fbfbf" },
  { "U+D7FF (below the surrogates)", "ed9fbf" },
  { "U+E000 (above the surrogates)", "ee8080" },
  { "U+FFFD", "efbfbd" },
  { "noncharacter U+FFFE", "efbfbe" },
  { "noncharacter U+FDD0", "efb790" },
  { "noncharacter U+1FFFF", "f09fbfbf" },
  { "BOM U+FEFF", "efbbbf" },
  { "emoji U+1F600", "f09f9880" },
  { "mixed scripts", hex "Gr\u{fc}\u{df}e, \u{4e16}\u{754c} \u{1f30d}" },
}
local INVALID = {
  { "lone continuation byte 80", "80" },
  { "lone continuation byte bf", "bf" },
  { "2 continuation bytes", "80bf" },
  { "3 continuation bytes", "80bf80" },
  { "all 64 continuation bytes", (function()
    local t = {}
    for b = 0x80, 0xbf do t[#t + 1] = ("%02x"):format(b) end
    return table.concat(t)
  end)() },
  { "start byte c0 then space", "c020" },
  { "start byte df then space", "df20" },
  { "start byte e0 then space", "e020" },
  { "start byte ef then space", "ef20" },
  { "start byte f0 then space", "f020" },
  { "start byte f7 then space", "f720" },
  { "start byte f8 then space", "f820" },
  { "start byte fc then space", "fc20" },
  { "2-byte sequence missing its last byte, at the end", "41c2" },
  { "3-byte sequence missing its last byte, at the end", "41e0a0" },
  { "4-byte sequence missing its last byte, at the end", "41f09080" },
  { "3-byte sequence missing its last byte, mid-text", "e0a041" },
  { "4-byte sequence missing its last byte, mid-text", "f0908041" },
  { "impossible byte fe", "fe" },
  { "impossible byte ff", "ff" },
  { "impossible bytes fefeffff", "fefeffff" },
  { "overlong '/' in 2 bytes", "c0af" },
  { "overlong '/' in 3 bytes", "e080af" },
  { "overlong '/' in 4 bytes", "f08080af" },
  { "overlong '/' in 5 bytes", "f8808080af" },
  { "overlong '/' in 6 bytes", "fc80808080af" },
  { "maximum overlong 2-byte c1bf", "c1bf" },
  { "maximum overlong 3-byte e09fbf", "e09fbf" },
  { "maximum overlong 4-byte f08fbfbf", "f08fbfbf" },
  { "overlong NUL in 2 bytes", "c080" },
  { "overlong NUL in 3 bytes", "e08080" },
  { "overlong NUL in 4 bytes", "f0808080" },
  { "surrogate U+D800", "eda080" },
  { "surrogate U+DB7F", "edadbf" },
  { "surrogate U+DB80", "edae80" },
  { "surrogate U+DBFF", "edafbf" },
  { "surrogate U+DC00", "edb080" },
  { "surrogate U+DF80", "edbe80" },
  { "surrogate U+DFFF", "edbfbf" },
  { "surrogate pair U+D800 U+DC00", "eda080edb080" },
  { "surrogate pair U+DBFF U+DFFF", "edafbfedbfbf" },
  { "code point U+110000", "f4908080" },
  { "start byte f5", "f5808080" },
  { "code point 1FFFFF (f7bfbfbf)", "f7bfbfbf" },
  { "valid text, then a surrogate, then text", "cebae1bdb9cf83cebcceb5eda080656469746564" },
}

group(6, 1)
for _, v in ipairs(VALID) do
  S { rfc = "RFC 6455 8.1", desc = "valid UTF-8, one frame: " .. v[1],
    send = { F { opcode = 1, payload_hex = v[2] } }, expect = ok { T(unhex(v[2])) } }
end
S { rfc = "RFC 6455 8.1", desc = "valid UTF-8, one frame: all 128 ASCII bytes",
  send = { F { opcode = 1, payload_hex = (function()
    local t = {}
    for b = 0, 127 do t[#t + 1] = ("%02x"):format(b) end
    return table.concat(t)
  end)() } },
  expect = ok { T((function()
    local t = {}
    for b = 0, 127 do t[#t + 1] = string.char(b) end
    return table.concat(t)
  end)()) } }

group(6, 2)
for _, v in ipairs(INVALID) do
  S { rfc = "RFC 6455 8.1", desc = "invalid UTF-8, one frame: " .. v[1],
    send = { F { opcode = 1, payload_hex = v[2] } }, expect = fail(1007) }
end

-- A message cut into one-byte fragments.
local function per_byte(h)
  local out = {}
  local k = #h // 2
  for i = 1, k do
    out[i] = F { opcode = i == 1 and 1 or 0, fin = i == k, payload_hex = h:sub(2 * i - 1, 2 * i) }
  end
  return out
end

group(6, 3)
for _, i in ipairs { 2, 6, 10, 13, 18, 19 } do
  local v = VALID[i]
  S { rfc = "RFC 6455 8.1", desc = "valid UTF-8, one byte per fragment: " .. v[1],
    send = per_byte(v[2]), expect = ok { T(unhex(v[2])) } }
end

group(6, 4)
for _, i in ipairs { 1, 6, 15, 16, 22, 23, 30, 33, 39, 42, 45 } do
  local v = INVALID[i]
  S { rfc = "RFC 6455 8.1", desc = "invalid UTF-8, one byte per fragment: " .. v[1],
    send = per_byte(v[2]), expect = fail(1007) }
end

group(6, 5) -- a valid text split at every byte position into two fragments
for _, v in ipairs { { "'kosme'", "cebae1bdb9cf83cebcceb5" }, { "'a' U+1F600 'b'", "61f09f988062" } } do
  for cut = 1, #v[2] // 2 - 1 do
    S { rfc = "RFC 6455 8.1", desc = ("%s split into 2 fragments after byte %d"):format(v[1], cut),
      send = { F { opcode = 1, fin = false, payload_hex = v[2]:sub(1, 2 * cut) },
        F { opcode = 0, payload_hex = v[2]:sub(2 * cut + 1) } },
      expect = ok { T(unhex(v[2])) } }
  end
end

group(6, 6) -- invalid only when the fragments are joined, or at the very end
for _, c in ipairs {
  { "4-byte sequence broken by the next fragment", { "41f090", "4142" } },
  { "surrogate formed across 3 fragments", { "41ed", "a0", "80" } },
  { "sequence truncated by the end of the message", { "41", "e282" } },
  { "overlong sequence across a fragment boundary", { "c0", "af" } },
} do
  local list = {}
  for i, h in ipairs(c[2]) do
    list[i] = F { opcode = i == 1 and 1 or 0, fin = i == #c[2], payload_hex = h }
  end
  S { rfc = "RFC 6455 8.1", desc = "invalid UTF-8: " .. c[1], send = list, expect = fail(1007) }
end

S { rfc = "RFC 6455 5.4", desc = "a 4-byte character cut by a fragment boundary with a ping in between",
  send = { F { opcode = 1, fin = false, payload_hex = "61f09f" }, F { opcode = 9, data = "p" },
    F { opcode = 0, payload_hex = "988062" } },
  expect = ok({ T "a\u{1f600}b" }, { pongs = { hex "p" } }) }
CL { rfc = "RFC 6455 5.4", desc = "a 3-byte character cut by a fragment boundary with a ping in between (from the server)",
  send = { F { opcode = 1, fin = false, payload_hex = "61e2" }, F { opcode = 9, data = "p" },
    F { opcode = 0, payload_hex = "82ac62" } },
  expect = ok({ T "a\u{20ac}b" }, { pongs = { hex "p" } }) }

group(6, 7) -- fail fast: the rest of the message never comes
for _, c in ipairs {
  { "surrogate in the first fragment", "cebae1bdb9cf83cebcceb5eda080" },
  { "byte ff in the first fragment", "41ff" },
  { "overlong sequence in the first fragment", "41c0af" },
} do
  S { rfc = "RFC 6455 8.1", desc = "fail fast: " .. c[1] .. ", message never finished",
    send = { F { opcode = 1, fin = false, payload_hex = c[2] } }, expect = fail(1007) }
end
S { rfc = "RFC 6455 8.1", desc = "fail fast: a 104-byte frame whose first 4 bytes hold a surrogate, the rest withheld",
  -- FIN+text, MASK+104, key 00000000 (payload in clear): 41 eda080, then 100 x 41
  send = { { send_raw_hex = "81e8" .. "00000000" .. "41eda080" }, read("close", 2),
    { send_raw_hex = rep("41", 100) } },
  expect = fail(1007) }

group(6, 8)
S { rfc = "RFC 6455 5.6", desc = "invalid UTF-8 in a binary message is fine",
  send = { binary(unhex "c0afeda080ff") }, expect = ok { B(unhex "c0afeda080ff") } }
for _, i in ipairs { 2, 10, 14 } do
  local v = VALID[i]
  CL { rfc = "RFC 6455 8.1", desc = "valid UTF-8 from the server: " .. v[1],
    send = { F { opcode = 1, payload_hex = v[2] } }, expect = ok { T(unhex(v[2])) } }
end
for _, i in ipairs { 1, 16, 19, 22, 33, 42 } do
  local v = INVALID[i]
  CL { rfc = "RFC 6455 8.1", desc = "invalid UTF-8 from the server: " .. v[1],
    send = { F { opcode = 1, payload_hex = v[2] } }, expect = fail(1007) }
end
CL { rfc = "RFC 6455 8.1", desc = "valid UTF-8 from the server, one byte per fragment",
  send = per_byte "cebae1bdb9cf83cebcceb5", expect = ok { T(unhex "cebae1bdb9cf83cebcceb5") } }
CL { rfc = "RFC 6455 8.1", desc = "surrogate from the server, one byte per fragment",
  send = per_byte "41eda08041", expect = fail(1007) }

group(6, 9) -- close reasons are UTF-8 too (RFC 6455 5.5.1)
for _, c in ipairs { { "'kosme'", "cebae1bdb9cf83cebcceb5" }, { "U+1F600", "f09f9880" },
  { "U+FFFD", "efbfbd" } } do
  S { rfc = "RFC 6455 5.5.1", desc = "close reason in valid UTF-8: " .. c[1],
    send = { F { opcode = 8, close_code = 1000, close_reason_hex = c[2] } }, close_frame = false,
    expect = ok({}, { reason = unhex(c[2]) }) }
end
for _, c in ipairs { { "c0af (overlong)", "c0af" }, { "surrogate", "6f6beda080" }, { "byte ff", "6f6bff" },
  { "truncated 4-byte sequence", "f09f98" }, { "lone continuation byte", "80" } } do
  S { rfc = "RFC 6455 8.1", desc = "close reason in invalid UTF-8: " .. c[1],
    send = { F { opcode = 8, close_code = 1000, close_reason_hex = c[2] } }, expect = fail(1007) }
end
CL { rfc = "RFC 6455 5.5.1", desc = "close reason in valid UTF-8 from the server",
  send = { F { opcode = 8, close_code = 1000, close_reason_hex = "cebae1bdb9cf83cebcceb5" } },
  close_frame = false, expect = ok({}, { reason = unhex "cebae1bdb9cf83cebcceb5" }) }
for _, c in ipairs { { "surrogate", "eda080" }, { "byte ff", "ff" } } do
  CL { rfc = "RFC 6455 8.1", desc = "close reason in invalid UTF-8 from the server: " .. c[1],
    send = { F { opcode = 8, close_code = 1000, close_reason_hex = c[2] } }, expect = fail(1007) }
end

---------------------------------------------------------------- 7 close

local VALID_CODES = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
  3000, 3999, 4000, 4999 }
local BAD_CODES = { 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535 }

group(7, 1) -- RFC 6455 7.4.1, 7.4.2: codes a peer may send are echoed
for _, code in ipairs(VALID_CODES) do
  S { rfc = "RFC 6455 7.4", desc = ("close code %d is echoed; onclose sees it, clean"):format(code),
    send = { F(close_frame(code, "bye")) }, close_frame = false,
    expect = { echo = {}, close = code, clean = true, reason = "bye" } }
end

group(7, 2) -- codes that must never be on the wire
for _, code in ipairs(BAD_CODES) do
  S { rfc = "RFC 6455 7.4.1", desc = ("close code %d (not allowed on the wire)"):format(code),
    send = { F(close_frame(code)) }, expect = fail(1002) }
end

group(7, 3) -- payload and reason lengths (RFC 6455 5.5, 5.5.1)
S { rfc = "RFC 6455 5.5.1", desc = "empty close frame: echoed empty, onclose 1005",
  send = { F { opcode = 8 } }, close_frame = false, expect = { echo = {}, close = 1005, clean = true } }
S { rfc = "RFC 6455 5.5.1", desc = "close payload of 1 byte", send = { F { opcode = 8, payload_hex = "03" } },
  expect = fail(1002) }
for _, len in ipairs { 0, 1, 123 } do
  S { rfc = "RFC 6455 5.5", desc = ("close 1000 with a %d-byte reason"):format(len),
    send = { F(close_frame(1000, rep("r", len))) }, close_frame = false,
    expect = ok({}, { reason = rep("r", len) }) }
end
S { rfc = "RFC 6455 5.5", desc = "close 1000 with a reason of 41 three-byte characters (123 bytes)",
  send = { F(close_frame(1000, rep("\u{20ac}", 41))) }, close_frame = false,
  expect = ok({}, { reason = rep("\u{20ac}", 41) }) }
S { rfc = "RFC 6455 5.5", desc = "close 1000 with a 124-byte reason (payload 126)",
  send = { F(close_frame(1000, rep("r", 124))) }, expect = fail(1002) }
S { rfc = "RFC 6455 5.5", desc = "close frame with FIN=0", send = { F(merge(close_frame(1000), { fin = false })) },
  expect = fail(1002) }
S { rfc = "RFC 6455 5.2", desc = "close frame with a 16-bit length form (not minimal)",
  send = { F(merge(close_frame(1000), { length_form = "16" })) }, expect = fail(1002) }

group(7, 4) -- RFC 6455 5.5.1: after a close frame, nothing more is processed
S { rfc = "RFC 6455 5.5.1", desc = "a message after the close frame (one write) is ignored",
  send = { FS { close_frame(1000), { opcode = 1, data = "late" } } }, close_frame = false, expect = ok {} }
S { rfc = "RFC 6455 5.5.1", desc = "a ping after the close frame (one write) is not answered",
  send = { FS { close_frame(1000), { opcode = 9, data = "late" } } }, close_frame = false, expect = ok {} }
S { rfc = "RFC 6455 5.5.1", desc = "a second close frame (one write) is ignored",
  send = { FS { close_frame(1000), close_frame(3000) } }, close_frame = false, expect = ok {} }
S { rfc = "RFC 6455 5.5.1", desc = "a bad frame after the close frame (one write) is ignored",
  send = { FS { close_frame(1000), { opcode = 1, data = "x", rsv = 2 } } }, close_frame = false,
  expect = ok {} }

group(7, 5) -- moonws starts the closing handshake (ws:close in the application)
for _, c in ipairs { { 1000, "" }, { 1000, "bye" }, { 3000, "app" }, { 4999, rep("r", 123) } } do
  S { rfc = "RFC 6455 7.1.2", desc = ("the server application closes with %d and a %d-byte reason"):format(c[1], #c[2]),
    app = { close = c }, send = {}, expect = { echo = {}, close = c[1], clean = true, reason = c[2] } }
end
S { rfc = "RFC 6455 7.1.2", desc = "the server application closes with no code: empty close frame, onclose 1005",
  app = { close = {} }, send = {}, expect = { echo = {}, close = 1005, clean = true } }

S { rfc = "RFC 6455 5.5.2", desc = "a ping after the server's close frame, before the client's: still answered",
  app = { close = { 1000 } }, send = {},
  tail = { read("close"), F { opcode = 9, data = "still there?" }, F(close_frame(1000)), read("eof") },
  expect = { echo = {}, close = 1000, clean = true, pongs = { hex "still there?" } } }
S { rfc = "RFC 6455 7.1.1", desc = "the client sends close and half-closes TCP: echo sent, clean",
  send = { F(close_frame(1000)), { shutdown_write = true } }, close_frame = false, expect = ok {} }
CL { rfc = "RFC 6455 5.5.2", desc = "a ping after the client's close frame, before the server's: still answered",
  app = { close = { 1000 } }, send = {},
  tail = { read("close"), F { opcode = 9, data = "still there?" }, F(close_frame(1000)), read("opcode"),
    { close = true } },
  expect = { echo = {}, close = 1000, clean = true, pongs = { hex "still there?" } } }
CL { rfc = "RFC 6455 7.1.1", desc = "the server sends close and half-closes TCP: echo sent, clean",
  send = { F(close_frame(1000)), { shutdown_write = true } }, close_frame = false,
  tail = { read("close"), { close = true } }, expect = ok {} }

group(7, 6)
for _, code in ipairs { 1000, 1001, 1003, 1011, 1014, 3000, 4999 } do
  CL { rfc = "RFC 6455 7.4", desc = ("close code %d from the server is echoed, clean"):format(code),
    send = { F(close_frame(code, "srv")) }, close_frame = false,
    expect = { echo = {}, close = code, clean = true, reason = "srv" } }
end
for _, code in ipairs { 0, 1005, 1006, 1015, 1016, 2999, 5000 } do
  CL { rfc = "RFC 6455 7.4.1", desc = ("close code %d from the server"):format(code),
    send = { F(close_frame(code)) }, expect = fail(1002) }
end
CL { rfc = "RFC 6455 5.5.1", desc = "empty close frame from the server: onclose 1005",
  send = { F { opcode = 8 } }, close_frame = false, expect = { echo = {}, close = 1005, clean = true } }
CL { rfc = "RFC 6455 5.5.1", desc = "close payload of 1 byte from the server",
  send = { F { opcode = 8, payload_hex = "03" } }, expect = fail(1002) }
CL { rfc = "RFC 6455 5.5", desc = "close with a 123-byte reason from the server",
  send = { F(close_frame(1000, rep("r", 123))) }, close_frame = false,
  expect = ok({}, { reason = rep("r", 123) }) }
CL { rfc = "RFC 6455 5.5", desc = "close with a 124-byte reason from the server",
  send = { F(close_frame(1000, rep("r", 124))) }, expect = fail(1002) }
CL { rfc = "RFC 6455 5.5.1", desc = "a message after the server's close frame (one write) is ignored",
  send = { FS { close_frame(1000), { opcode = 1, data = "late" } } }, close_frame = false, expect = ok {} }
for _, c in ipairs { { 1000, "bye" }, { 4000, "app" } } do
  CL { rfc = "RFC 6455 7.1.2", desc = ("the client application closes with %d; masked close frame"):format(c[1]),
    app = { close = c }, send = {}, expect = { echo = {}, close = c[1], clean = true, reason = c[2] } }
end

---------------------------------------------------------------- 9 limits

group(9, 1) -- max_payload (RFC 6455 10.4: implementations SHOULD limit sizes; 7.4.1: 1009)
for _, side in ipairs { "server", "client" } do
  local make = side == "server" and S or CL
  local from = side == "server" and "" or " (from the server)"
  make { rfc = "RFC 6455 10.4", desc = "max_payload 1000: a 1000-byte message" .. from,
    opts = { max_payload = 1000 }, send = { F { opcode = 2, size = 1000 } }, expect = ok { B(rep("a", 1000)) } }
  make { rfc = "RFC 6455 7.4.1", desc = "max_payload 1000: a 1001-byte message" .. from,
    opts = { max_payload = 1000 }, send = { F { opcode = 2, size = 1001 } }, expect = fail(1009) }
  make { rfc = "RFC 6455 10.4", desc = "max_payload 1000: fragments 600+400" .. from,
    opts = { max_payload = 1000 },
    send = { F { opcode = 1, fin = false, size = 600 }, F { opcode = 0, size = 400 } },
    expect = ok { T(rep("a", 1000)) } }
  make { rfc = "RFC 6455 7.4.1", desc = "max_payload 1000: fragments 600+300+101" .. from,
    opts = { max_payload = 1000 },
    send = { F { opcode = 1, fin = false, size = 600 }, F { opcode = 0, fin = false, size = 300 },
      F { opcode = 0, size = 101 } },
    expect = fail(1009) }
  make { rfc = "RFC 6455 10.4", desc = "max_frame 500: a 500-byte frame" .. from,
    opts = { max_frame = 500 }, send = { F { opcode = 2, size = 500 } }, expect = ok { B(rep("a", 500)) } }
  make { rfc = "RFC 6455 7.4.1", desc = "max_frame 500: a 501-byte frame" .. from,
    opts = { max_frame = 500 }, send = { F { opcode = 2, size = 501 } }, expect = fail(1009) }
end
S { rfc = "RFC 6455 10.4", desc = "max_frame 500: three 500-byte fragments make a 1500-byte message",
  opts = { max_frame = 500 },
  send = { F { opcode = 2, fin = false, size = 500 }, F { opcode = 0, fin = false, size = 500 },
    F { opcode = 0, size = 500 } },
  expect = ok { B(rep("a", 1500)) } }
S { rfc = "RFC 6455 7.4.1", desc = "a header announcing 2^40 bytes fails at once (default limits)",
  send = { F { opcode = 2, len_override = 1 << 40, length_form = "64" } }, expect = fail(1009) }
S { rfc = "RFC 6455 7.4.1", desc = "a header announcing 2^63-1 bytes fails at once",
  send = { F { opcode = 2, len_override = math.maxinteger, length_form = "64" } }, expect = fail(1009) }
CL { rfc = "RFC 6455 7.4.1", desc = "a header announcing 2^40 bytes from the server",
  send = { F { opcode = 2, len_override = 1 << 40, length_form = "64" } }, expect = fail(1009) }

group(9, 2) -- max_handshake: the whole head, blank line included
local KEY = "dGhlIHNhbXBsZSBub25jZQ=="
for _, c in ipairs { { 1024, 1024, 101 }, { 1024, 1025, 431 }, { nil, 16384, 101 }, { nil, 16385, 431 } } do
  local limit, size, status = c[1], c[2], c[3]
  S { rfc = "RFC 6585 5",
    desc = ("request head of %d bytes, max_handshake %s"):format(size, limit or "default (16384)"),
    opts = limit and { max_handshake = limit } or nil, handshake = { key = KEY, pad_to = size },
    send = {}, expect = status == 101 and ok {} or { status = 431 } }
end
for _, c in ipairs { { 1024, true }, { 1025, false } } do
  CL { rfc = "RFC 6455 4.1", desc = ("response head of %d bytes, max_handshake 1024"):format(c[1]),
    opts = { max_handshake = 1024 }, answer = { pad_to = c[1] },
    expect = c[2] and ok {} or { handshake_error = true } }
end

for _, c in ipairs { { 16384, true }, { 16385, false } } do
  CL { rfc = "RFC 6455 4.1", desc = ("response head of %d bytes, default max_handshake (16384)"):format(c[1]),
    answer = { pad_to = c[1] }, expect = c[2] and ok {} or { handshake_error = true } }
end

group(9, 3) -- header field count (RFC 6585 5: 431 Request Header Fields Too Large)
for _, c in ipairs { { 100, 101 }, { 101, 431 } } do
  local extra = {}
  for i = 1, c[1] - 5 do extra[i] = { "X-H" .. i, "v" } end -- the request has 5 of its own
  S { rfc = "RFC 6585 5", desc = ("a request with %d header fields (moonws allows 100)"):format(c[1]),
    handshake = { headers = extra }, send = {}, expect = c[2] == 101 and ok {} or { status = 431 } }
end

group(9, 4) -- control frames are not messages: max_payload does not apply to them
S { rfc = "RFC 6455 5.5", desc = "max_payload 100: a 125-byte ping is still answered",
  opts = { max_payload = 100 }, send = { F { opcode = 9, size = 125 } },
  expect = ok({}, { pongs = { rep("61", 125) } }) }
S { rfc = "RFC 6455 5.5.1", desc = "max_payload 100: a close with a 123-byte reason is still clean",
  opts = { max_payload = 100 }, send = { F(close_frame(1000, rep("r", 123))) }, close_frame = false,
  expect = ok({}, { reason = rep("r", 123) }) }

---------------------------------------------------------------- 12 permessage-deflate

local PMD = "permessage-deflate"
local function offer(value) return { headers = { { "Sec-WebSocket-Extensions", value } } } end
local DEFLATE = { compression = true }

group(12, 1) -- the server's answer to offers (RFC 7692 5, 7.1)
for _, c in ipairs {
  { PMD, PMD },
  { PMD .. "; client_max_window_bits", PMD },
  { PMD .. "; server_no_context_takeover", PMD .. "; server_no_context_takeover" },
  { PMD .. "; client_no_context_takeover", PMD .. "; client_no_context_takeover" },
  { PMD .. "; server_max_window_bits=10", PMD .. "; server_max_window_bits=10" },
  { PMD .. "; client_max_window_bits=9", PMD .. "; client_max_window_bits=9" },
  { PMD .. "; server_max_window_bits=\"12\"", PMD .. "; server_max_window_bits=12" },
  { "x-webkit-deflate-frame", "" },
  { PMD .. "; unknown_param", "" },
  { PMD .. "; unknown_param, " .. PMD, PMD },
  { PMD .. "; server_max_window_bits=7", "" },
  { PMD .. "; server_max_window_bits=16", "" },
  { PMD .. "; server_max_window_bits", "" },
  { PMD .. "; server_max_window_bits=010", "" },
  { PMD .. "; server_no_context_takeover; server_no_context_takeover", "" },
  { PMD .. "; server_no_context_takeover=1", "" },
} do
  S { rfc = c[2] == "" and "RFC 7692 7.1" or "RFC 7692 5",
    desc = ("offer '%s' -> %s"):format(c[1], c[2] == "" and "declined" or "'" .. c[2] .. "'"),
    opts = DEFLATE, handshake = offer(c[1]), send = { text "hi" },
    expect = ok({ T "hi" }, { extensions = c[2] }) }
end
S { rfc = "RFC 7692 5", desc = "offer to a server with compression off -> no extension",
  handshake = offer(PMD), send = { text "hi" }, expect = ok { T "hi" } }

local HS = offer(PMD)
-- "hello world" as raw deflate, split after "hello " by a sync flush (tail removed)
local PART1, PART2 = "ca48cdc9c95700000000ffff", "2acf2fca490100"

group(12, 2) -- compressed messages to the server (RFC 7692 6, 7.2)
S { rfc = "RFC 7692 7.2.2", desc = "a compressed text message", opts = DEFLATE, handshake = HS,
  send = { { send_deflated = { opcode = 1, payload_text = "Hello, deflate" } } },
  expect = ok({ T "Hello, deflate" }, { extensions = PMD, compressed = false }) }
S { rfc = "RFC 7692 7.2.2", desc = "3 compressed messages sharing the context (takeover)", opts = DEFLATE,
  handshake = HS,
  send = { { send_deflated = { payload_text = "repeat repeat" } }, { send_deflated = { payload_text = "repeat repeat" } },
    { send_deflated = { opcode = 2, payload_text = "repeat repeat" } } },
  expect = ok({ T "repeat repeat", T "repeat repeat", B "repeat repeat" }, { extensions = PMD }) }
S { rfc = "RFC 7692 6.1", desc = "a compressed message in 3 fragments, RSV1 on the first only", opts = DEFLATE,
  handshake = HS, send = { { send_deflated = { payload_size = 3000, fragments = 3 } } },
  expect = ok({ T(rep("a", 3000)) }, { extensions = PMD, compressed = true }) }
S { rfc = "RFC 7692 6.1", desc = "hand-made 2-fragment compressed message", opts = DEFLATE, handshake = HS,
  send = { F { opcode = 1, fin = false, rsv = 4, payload_hex = PART1 }, F { opcode = 0, payload_hex = PART2 } },
  expect = ok({ T "hello world" }, { extensions = PMD }) }
S { rfc = "RFC 7692 6", desc = "an uncompressed message (RSV1 clear) after negotiation", opts = DEFLATE,
  handshake = HS, send = { text "plain" }, expect = ok({ T "plain" }, { extensions = PMD }) }
S { rfc = "RFC 7692 7.2.3.6", desc = "an empty compressed message", opts = DEFLATE, handshake = HS,
  send = { { send_deflated = { payload_text = "" } } }, expect = ok({ T "" }, { extensions = PMD }) }
S { rfc = "RFC 7692 6", desc = "the server compresses its 5000-byte echo (over the threshold)",
  opts = DEFLATE, handshake = HS, send = { binary(rep("z", 5000)) },
  expect = ok({ B(rep("z", 5000)) }, { extensions = PMD, compressed = true }) }
S { rfc = "RFC 7692 7.1.1.1",
  desc = "server_no_context_takeover: 3 compressed echoes, each inflated with a fresh context",
  opts = DEFLATE, handshake = offer(PMD .. "; server_no_context_takeover"),
  send = { binary(rep("y", 2000)), binary(rep("y", 2000)), binary(rep("y", 2000)) },
  read_opts = { inflate_reset = true },
  expect = ok({ B(rep("y", 2000)), B(rep("y", 2000)), B(rep("y", 2000)) },
    { extensions = PMD .. "; server_no_context_takeover", compressed = true }) }
do
  local block = letters(700)
  S { rfc = "RFC 7692 7.1.2.1",
    desc = "server_max_window_bits=9: the echo inflates with a 512-byte window (text repeats every 700 bytes)",
    opts = DEFLATE, handshake = offer(PMD .. "; server_max_window_bits=9"),
    send = { text(block:rep(3)) }, read_opts = { inflate_bits = 9 },
    expect = ok({ T(block:rep(3)) }, { extensions = PMD .. "; server_max_window_bits=9",
      compressed = true }) }
end
S { rfc = "RFC 7692 6", desc = "compression and fragment_size 1000: a 5000-byte echo, compressed and fragmented",
  opts = { compression = true, fragment_size = 1000 }, handshake = HS, send = { text(letters(5000)) },
  expect = ok({ T(letters(5000)) }, { extensions = PMD, compressed = true, frames = 5 }) }

group(12, 3) -- bad compressed frames
S { rfc = "RFC 7692 6.1", desc = "RSV1 on a continuation frame", opts = DEFLATE, handshake = HS,
  send = { F { opcode = 1, fin = false, rsv = 4, payload_hex = PART1 }, F { opcode = 0, rsv = 4, payload_hex = PART2 } },
  expect = fail(1002, {}, { extensions = PMD }) }
S { rfc = "RFC 7692 6.1", desc = "RSV1 on every fragment", opts = DEFLATE, handshake = HS,
  send = { { send_deflated = { payload_size = 100, fragments = 2, rsv = "all" } } },
  expect = fail(1002, {}, { extensions = PMD }) }
S { rfc = "RFC 7692 6.1", desc = "RSV1 on a ping", opts = DEFLATE, handshake = HS,
  send = { F { opcode = 9, rsv = 4, data = "p" } }, expect = fail(1002, {}, { extensions = PMD }) }
S { rfc = "RFC 7692 6.1", desc = "RSV1 on a close frame", opts = DEFLATE, handshake = HS,
  send = { F(merge(close_frame(1000), { rsv = 4 })) }, expect = fail(1002, {}, { extensions = PMD }) }
S { rfc = "RFC 6455 5.2", desc = "RSV2 on a message when only permessage-deflate was agreed", opts = DEFLATE,
  handshake = HS, send = { text("x", { rsv = 2 }) }, expect = fail(1002, {}, { extensions = PMD }) }
S { rfc = "RFC 7692 6.1", desc = "RSV1 when permessage-deflate was not agreed",
  send = { F { opcode = 1, rsv = 4, payload_hex = "ca48cdc9c95728cf2fca490100" } }, expect = fail(1002) }
S { rfc = "RFC 7692 7.2.2", desc = "corrupt compressed data (reserved block type)", opts = DEFLATE, handshake = HS,
  send = { F { opcode = 1, rsv = 4, payload_hex = "ffffffffffffffff" } }, expect = fail(1007, {}, { extensions = PMD }) }
S { rfc = "RFC 7692 7.2.2", desc = "compressed data cut short (message ends mid-block)", opts = DEFLATE,
  handshake = HS, send = { F { opcode = 2, rsv = 4, payload_hex = "ca48cdc9" } },
  expect = fail(1007, {}, { extensions = PMD }) }
S { rfc = "RFC 6455 8.1", desc = "compressed text that inflates to invalid UTF-8", opts = DEFLATE,
  handshake = HS, send = { { send_deflated = { payload_hex = "41eda08041" } } },
  expect = fail(1007, {}, { extensions = PMD }) }

group(12, 4) -- small deflate bombs against max_payload (after inflating)
do
  local limit = 100000
  S { rfc = "RFC 6455 10.4", desc = "inflates to exactly max_payload (100000 zeros)",
    opts = { compression = true, max_payload = limit }, handshake = HS,
    send = { { send_deflated_zeros = { zeros = limit } } },
    expect = ok({ B(("\0"):rep(limit)) }, { extensions = PMD, compressed = true }) }
  S { rfc = "RFC 6455 10.4", desc = "inflates to max_payload + 1",
    opts = { compression = true, max_payload = limit }, handshake = HS,
    send = { { send_deflated_zeros = { zeros = limit + 1 } } },
    expect = fail(1009, {}, { extensions = PMD }) }
  S { rfc = "RFC 6455 10.4", desc = "16 MiB of zeros in a ~16 KB frame, max_payload 1 MiB",
    opts = { compression = true, max_payload = 1 << 20 }, handshake = HS,
    send = { { send_deflated_zeros = { zeros = 16 << 20 } } },
    expect = fail(1009, {}, { extensions = PMD }) }
  CL { rfc = "RFC 6455 10.4", desc = "a bomb from the server: max_payload + 1 after inflating",
    opts = { max_payload = limit }, answer = { extensions = PMD },
    send = { { send_deflated_zeros = { zeros = limit + 1 } } },
    expect = fail(1009, {}, { extensions = PMD }) }
end

group(12, 5) -- the client's side of negotiation (RFC 7692 5, 7.1)
for _, c in ipairs {
  { PMD, true },
  { PMD .. "; client_max_window_bits=10", true },
  { PMD .. "; server_no_context_takeover", true },
  { PMD .. "; client_no_context_takeover", true },
  { PMD .. "; server_max_window_bits=10", true },
  { PMD .. "; client_max_window_bits", false },
  { PMD .. "; client_max_window_bits=16", false },
  { PMD .. "; server_max_window_bits=16", false },
  { PMD .. "; unknown_param", false },
  { "x-unknown-extension", false },
  { PMD .. ", " .. PMD, false },
} do
  CL { rfc = c[2] and "RFC 7692 5" or "RFC 7692 7.1",
    desc = ("the server answers '%s' -> %s"):format(c[1], c[2] and "accepted" or "handshake fails"),
    answer = { extensions = c[1] },
    expect = c[2] and ok({}, { extensions = c[1] }) or { handshake_error = true } }
end

group(12, 6) -- compressed messages to the client
local CHS = { extensions = PMD }
CL { rfc = "RFC 7692 7.2.2", desc = "a compressed text message from the server", answer = CHS,
  send = { { send_deflated = { payload_text = "Hello, client" } } },
  expect = ok({ T "Hello, client" }, { extensions = PMD, compressed = false }) }
CL { rfc = "RFC 7692 6.1", desc = "a compressed message in 4 fragments from the server", answer = CHS,
  send = { { send_deflated = { opcode = 2, payload_size = 4000, fragments = 4 } } },
  expect = ok({ B(rep("a", 4000)) }, { extensions = PMD, compressed = true }) }
CL { rfc = "RFC 7692 6.1", desc = "RSV1 on a continuation frame from the server", answer = CHS,
  send = { F { opcode = 1, fin = false, rsv = 4, payload_hex = PART1 }, F { opcode = 0, rsv = 4, payload_hex = PART2 } },
  expect = fail(1002, {}, { extensions = PMD }) }
CL { rfc = "RFC 7692 6.1", desc = "RSV1 on a ping from the server", answer = CHS,
  send = { F { opcode = 9, rsv = 4, data = "p" } }, expect = fail(1002, {}, { extensions = PMD }) }
CL { rfc = "RFC 7692 7.2.2", desc = "corrupt compressed data from the server", answer = CHS,
  send = { F { opcode = 1, rsv = 4, payload_hex = "ffffffffffffffff" } },
  expect = fail(1007, {}, { extensions = PMD }) }
do
  local block = letters(1500, 777)
  CL { rfc = "RFC 7692 7.1.2.2",
    desc = "client_max_window_bits=10: the client's echo inflates with a 1024-byte window",
    answer = { extensions = PMD .. "; client_max_window_bits=10" }, send = { text(block:rep(2)) },
    read_opts = { inflate_bits = 10 },
    expect = ok({ T(block:rep(2)) }, { extensions = PMD .. "; client_max_window_bits=10",
      compressed = true }) }
end
CL { rfc = "RFC 7692 7.1.1.2",
  desc = "client_no_context_takeover: the client's 3 echoes inflate with a fresh context each",
  answer = { extensions = PMD .. "; client_no_context_takeover" },
  send = { binary(rep("w", 3000)), binary(rep("w", 3000)), binary(rep("w", 3000)) },
  read_opts = { inflate_reset = true },
  expect = ok({ B(rep("w", 3000)), B(rep("w", 3000)), B(rep("w", 3000)) },
    { extensions = PMD .. "; client_no_context_takeover", compressed = true }) }
CL { rfc = "RFC 7692 6.1", desc = "RSV1 from the server when nothing was agreed",
  send = { F { opcode = 1, rsv = 4, payload_hex = "ca48cdc9c95728cf2fca490100" } }, expect = fail(1002) }

group(12, 7) -- the payloads of RFC 7692 7.2.3's examples, each "Hello"
local EXAMPLES = {
  { "7.2.3.1", "one compressed DEFLATE block", { "f248cdc9c90700" } },
  { "7.2.3.2", "two messages sharing the LZ77 window", { "f248cdc9c90700", "f200110000" } },
  { "7.2.3.3", "a DEFLATE block with no compression", { "000500faff48656c6c6f00" } },
  { "7.2.3.4", "a DEFLATE block with BFINAL set", { "f348cdc9c9070000" } },
  { "7.2.3.4", "a BFINAL message, then a message in a fresh window", { "f348cdc9c9070000", "f248cdc9c90700" } },
  { "7.2.3.5", "two DEFLATE blocks in one message", { "f24805000000ffffcac9c90700" } },
}
for _, c in ipairs(EXAMPLES) do
  local frames, echo = {}, {}
  for i, h in ipairs(c[3]) do
    frames[i] = F { opcode = 1, rsv = 4, payload_hex = h }
    echo[i] = T "Hello"
  end
  S { rfc = "RFC 7692 " .. c[1], desc = "RFC example: " .. c[2], opts = DEFLATE, handshake = HS,
    send = frames, expect = ok(echo, { extensions = PMD, compressed = false }) }
  CL { rfc = "RFC 7692 " .. c[1], desc = "RFC example from the server: " .. c[2], answer = CHS,
    send = frames, expect = ok(echo, { extensions = PMD, compressed = false }) }
end
S { rfc = "RFC 7692 7.2.3.6", desc = "RFC example: an empty final fragment (payload 00), the first keeping its tail",
  opts = DEFLATE, handshake = HS,
  send = { F { opcode = 1, fin = false, rsv = 4, payload_hex = "f248cdc9c907000000ffff" }, F { opcode = 0, payload_hex = "00" } },
  expect = ok({ T "Hello" }, { extensions = PMD }) }
CL { rfc = "RFC 7692 7.2.3.6", desc = "RFC example from the server: an empty final fragment (payload 00)",
  answer = CHS,
  send = { F { opcode = 1, fin = false, rsv = 4, payload_hex = "f248cdc9c907000000ffff" }, F { opcode = 0, payload_hex = "00" } },
  expect = ok({ T "Hello" }, { extensions = PMD }) }
S { rfc = "RFC 7692 7.2.2", desc = "a compressed message in 2 fragments, the second with no payload at all",
  opts = DEFLATE, handshake = HS,
  send = { F { opcode = 1, fin = false, rsv = 4, payload_hex = "f248cdc9c90700" }, F { opcode = 0, payload_hex = "" } },
  expect = ok({ T "Hello" }, { extensions = PMD }) }
S { rfc = "RFC 7692 6.1", desc = "a ping between the fragments of a compressed message",
  opts = DEFLATE, handshake = HS,
  send = { F { opcode = 1, fin = false, rsv = 4, payload_hex = PART1 }, F { opcode = 9, data = "p" },
    F { opcode = 0, payload_hex = PART2 } },
  expect = ok({ T "hello world" }, { extensions = PMD, pongs = { hex "p" } }) }
S { rfc = "RFC 7692 6", desc = "compressed, uncompressed, compressed: the window survives the plain message",
  opts = DEFLATE, handshake = HS,
  send = { { send_deflated = { payload_text = "context context" } }, text "plain",
    { send_deflated = { payload_text = "context context" } } },
  expect = ok({ T "context context", T "plain", T "context context" }, { extensions = PMD }) }

---------------------------------------------------------------- 13 handshake

group(13, 1) -- requests a server accepts (RFC 6455 4.2.1)
local function raw_request(lines)
  return "GET / HTTP/1.1\r\n" .. table.concat(lines, "\r\n") .. "\r\n\r\n"
end
for _, c in ipairs {
  { "a plain request", {} },
  { "header names in mixed case, Upgrade: WebSocket", { key = KEY, raw = raw_request {
    "hOsT: 127.0.0.1", "uPgRaDe: WebSocket", "CONNECTION: Upgrade",
    "sec-websocket-key: " .. KEY, "SEC-WEBSOCKET-VERSION: 13" } } },
  { "Connection: keep-alive, Upgrade", { headers = { Connection = "keep-alive, Upgrade" } } },
  { "Connection: upgrade (lower case)", { headers = { Connection = "upgrade" } } },
  { "unknown extra headers", { headers = { { "X-Custom", "1" }, { "Cookie", "a=b" } } } },
  { "an Origin header", { origin = "http://example.com" } },
  { "a path with a query", { path = "/chat/room?id=7&x=%20" } },
  { "the request written one byte at a time", { split = 1, split_sleep = 0.001 } },
  { "RFC 6455 1.3's sample key", { key = KEY } },
  { "Sec-WebSocket-Extensions the server does not know", { headers = { { "Sec-WebSocket-Extensions", "x-foo" } } } },
  { "an absolute http URI as the Request-URI", { path = "http://127.0.0.1/chat" } },
  { "HTTP/1.2 (\"HTTP/1.1 or higher\"; RFC 7230 2.6: processed as 1.1)", { http = "HTTP/1.2" } },
  { "whitespace around header values", { headers = { Upgrade = "  websocket  ", Connection = " Upgrade " } } },
} do
  S { rfc = "RFC 6455 4.2.1", desc = "accepted: " .. c[1], handshake = c[2], send = { text "hi" },
    expect = ok { T "hi" } }
end
S { rfc = "RFC 6455 4.2.2", desc = "subprotocol: offer 'superchat, chat', server has 'chat'",
  opts = { protocols = { "chat" } }, handshake = { protocol = "superchat, chat" }, send = {},
  expect = ok({}, { protocol = "chat" }) }
S { rfc = "RFC 6455 4.2.2", desc = "subprotocol: no common one -> none selected",
  opts = { protocols = { "chat" } }, handshake = { protocol = "v2.chat" }, send = {}, expect = ok {} }
S { rfc = "RFC 6455 4.2.2", desc = "subprotocol: offered in two header fields",
  opts = { protocols = { "b" } },
  handshake = { headers = { { "Sec-WebSocket-Protocol", "a" }, { "Sec-WebSocket-Protocol", "b" } } },
  send = {}, expect = ok({}, { protocol = "b" }) }

group(13, 2) -- requests a server refuses (RFC 6455 4.2.1, 4.2.2, 4.4)
for _, c in ipairs {
  { "Sec-WebSocket-Version 12", { version = "12" }, 426, { ["Sec-WebSocket-Version"] = "13" } },
  { "Sec-WebSocket-Version 8", { version = "8" }, 426, { ["Sec-WebSocket-Version"] = "13" } },
  { "no Sec-WebSocket-Version", { omit = { "Sec-WebSocket-Version" } }, 426,
    { ["Sec-WebSocket-Version"] = "13" } },
  { "POST", { method = "POST" }, 405, { Allow = "GET" } },
  { "HTTP/1.0", { http = "HTTP/1.0" }, 400 },
  { "no Host", { omit = { "Host" } }, 400 },
  { "no Sec-WebSocket-Key", { omit = { "Sec-WebSocket-Key" } }, 400 },
  { "a key of 15 bytes", { key = "AAAAAAAAAAAAAAAAAAAA" }, 400 },
  { "a key of 17 bytes", { key = "AAAAAAAAAAAAAAAAAAAAAAA=" }, 400 },
  { "a key without padding", { key = "dGhlIHNhbXBsZSBub25jZQ" }, 400 },
  { "a key that is not base64", { key = "not*base64*at*all!!!!!==" }, 400 },
  { "no Upgrade", { omit = { "Upgrade" } }, 426, { Upgrade = "websocket" } },
  { "Upgrade: h2c", { headers = { Upgrade = "h2c" } }, 400 },
  { "no Connection", { omit = { "Connection" } }, 400 },
  { "Connection: close", { headers = { Connection = "close" } }, 400 },
  { "a garbage request line", { raw = "HELLO\r\nHost: x\r\n\r\n" }, 400 },
  { "a header line without a colon", { raw = raw_request {
    "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " .. KEY,
    "Sec-WebSocket-Version: 13", "NoColonHere" } }, 400 },
  { "obsolete line folding", { raw = raw_request {
    "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " .. KEY,
    "Sec-WebSocket-Version: 13", "X-Folded: a", " b" } }, 400 },
  { "two Sec-WebSocket-Key fields", { key = KEY, headers = { { "Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==" } } }, 400,
    nil, "RFC 6455 11.3.1" },
  { "a handshake callback that refuses with 403", { path = "/forbidden" }, 403 },
} do
  S { rfc = c[5] or c[3] == 403 and "RFC 6455 4.2.2" or "RFC 6455 4.2.1", desc = "refused: " .. c[1],
    opts = c[3] == 403 and { handshake = function(req)
      if req.path == "/forbidden" then return false, 403, "forbidden" end
      return true
    end } or nil,
    handshake = c[2], send = {}, expect = { status = c[3], headers = c[4] } }
end

group(13, 3) -- responses a client accepts (RFC 6455 4.1)
for _, c in ipairs {
  { "a plain 101", {} },
  { "Upgrade: WebSocket, Connection: upgrade", { headers = { Upgrade = "WebSocket", Connection = "upgrade" } } },
  { "Connection: keep-alive, Upgrade", { headers = { Connection = "keep-alive, Upgrade" } } },
  { "unknown extra headers", { headers = { { "X-Server", "raw" }, { "Set-Cookie", "a=b" } } } },
  { "the reason phrase 'OK'", { reason = "OK" } },
  { "an empty reason phrase", { reason = "" } },
  { "an HTTP/1.2 101 (a later HTTP/1.x, processed as 1.1: RFC 7230 2.6)", { http = "HTTP/1.2" } },
  { "header names in other cases", { omit = { "Upgrade", "Connection" },
    headers = { { "UPGRADE", "websocket" }, { "connection", "UPGRADE" } } } },
} do
  CL { rfc = "RFC 6455 4.1", desc = "accepted: " .. c[1], answer = c[2], send = { text "hi" },
    expect = ok { T "hi" } }
end
CL { rfc = "RFC 6455 4.1", desc = "the server selects 'superchat' of 'chat, superchat'",
  opts = { protocols = { "chat", "superchat" } }, answer = { protocol = "superchat" },
  expect = ok({}, { protocol = "superchat" }) }

group(13, 4) -- responses a client must fail (RFC 6455 4.1)
for _, c in ipairs {
  { "a wrong Sec-WebSocket-Accept", { accept = "wrong" } },
  { "no Sec-WebSocket-Accept", { accept = nil, omit = { "Sec-WebSocket-Accept" } } },
  { "Sec-WebSocket-Accept of the RFC's sample key", { accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" } },
  { "200 OK", { status = 200, reason = "OK", body = "hello" } },
  { "401 Unauthorized", { status = 401, reason = "Unauthorized", body = "no" } },
  { "302 Found with a Location", { status = 302, reason = "Found", headers = { { "Location", "/elsewhere" } } } },
  { "404 Not Found", { status = 404, reason = "Not Found", body = "" } },
  { "no Upgrade", { omit = { "Upgrade" } } },
  { "Upgrade: h2c", { headers = { Upgrade = "h2c" } } },
  { "no Connection", { omit = { "Connection" } } },
  { "Connection: close", { headers = { Connection = "close" } } },
  { "a subprotocol the client did not offer", { protocol = "superchat" }, { protocols = { "chat" } } },
  { "a subprotocol when none was offered", { protocol = "chat" } },
  { "an extension when none was offered", { extensions = PMD }, { compression = false } },
  { "two Sec-WebSocket-Protocol fields (RFC 6455 11.3.4: at most one in a response)", { protocol = "chat", headers = { { "Sec-WebSocket-Protocol", "superchat" } } },
    { protocols = { "chat", "superchat" } } },
  { "a list of subprotocols in the answer", { protocol = "chat, superchat" }, { protocols = { "chat", "superchat" } } },
  { "an HTTP/1.0 101", { raw = "HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" } },
  { "a garbage status line", { raw = "HELLO WORLD\r\n\r\n" } },
  { "the connection closed instead of a response", { answer = false }, nil, { { close = true } } },
} do
  CL { rfc = "RFC 6455 4.1", desc = "handshake fails: " .. c[1], answer = c[2], opts = c[3], tail = c[4],
    expect = { handshake_error = true } }
end

return cases

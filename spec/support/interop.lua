-- spec/support/interop.lua -- the interoperability cases, one list for every
-- real peer (Python websockets 10.4, Node ws 8.18.0): each peer's spec files
-- call interop.run(_ENV, peer [, variant]) and interop.run_deflate(_ENV,
-- peer) and get the same cases, in both directions (moonws client -> peer
-- server, peer client -> moonws server).  Variants: interop.PLAIN (ws://,
-- every case) and interop.tls() (wss:// with spec.support.certs: echo,
-- fragments, ping/pong, closing handshake; one 16 MiB case per direction).
--
-- The command protocol (one source of truth; the peers under spec/peers/
-- and the moonws server below implement it):
--   Server side.  Every message is echoed with its own type, except text
--   messages starting with "cmd:":
--     cmd:close:CODE:REASON      close with that code and reason
--     cmd:ping:P                 ping with payload P; when the pong comes,
--                                send the text "pong:P" (a moonws server
--                                sends "pong:P" for every pong it gets)
--     cmd:fragments:N:SIZE:TYPE  send gen(TYPE, N*SIZE) as N frames of SIZE
--                                bytes (websockets adds an empty final
--                                frame; a moonws server listens with
--                                fragment_size = SIZE for this)
--     cmd:frames                 (peers) "frames:K": the frame count of the
--                                last message echoed
--     cmd:drop                   (peers) write a frame header announcing 1000
--                                bytes and 10 of them, then drop TCP
--     cmd:terminate              (moonws server) ws:terminate()
--   On the path "/seed" the server takes the first message and closes with
--   4000 "bye".  A peer server prints one JSON line per observation:
--   {"ev":"hello",...} (the /seed message) and {"ev":"closed","path",
--   "code","reason"} when a connection ends.
--   The server's "closed" record also has "ext" (the Sec-WebSocket-Extensions
--   value it answered, "" for none), "received" (per message: type, len,
--   frames, compressed = RSV1 on its first frame, wire = payload bytes as
--   they crossed the wire) and "sent" (per message: compressed, wire).
--   `peer server --tls=CERT,KEY` serves wss:// instead.  A path with the
--   query ?pmd=SPEC configures permessage-deflate for that connection:
--   "off", "on" (no parameters) or RFC 7692 parameters, "name" or
--   "name:value" joined by commas (server_no_context_takeover,
--   client_max_window_bits:10); without it each peer's default applies
--   (websockets: on, window bits 12; ws: off).
--   Client side: `peer client URL [--ca=FILE] [--pmd=SPEC] STEP...` (trust
--   FILE for wss://; offer permessage-deflate as SPEC, default: the peer's
--   default) runs the steps and prints one JSON line per observation, then
--   {"ev":"done","sent"}, or {"ev":"fail","step","reason"} and exits
--   non-zero.  {"ev":"open"} has "ext", the server's answer:
--     echo:TYPE:N                send gen(TYPE, N), expect it back: {"ev":"echo"}
--     fragecho:TYPE:N:SIZE       the same, sent as N frames of SIZE bytes
--     send:TEXT                  send a text message (e.g. send:cmd:ping:xyz)
--     recv                       {"ev":"recv"} for the next message
--     ping:P                     ping, wait for the pong: {"ev":"pong","data"}
--     close:CODE:REASON          close, wait: {"ev":"closed","code","reason"}
--     waitclose                  wait for the server to end it: {"ev":"closed"}
--     drop                       like cmd:drop (masked), then end the scenario
--   Received messages are described as {type, len, frames (data frames it
--   came in), compressed, wire, gen (== gen(type, len)), text (text up to 1
--   KiB)}; an echo also tells how the peer sent its message (sent_compressed,
--   sent_wire).  A scenario left open is closed with 1000 "" after "done".
--
-- gen(kind, n): n bytes; binary: byte i is i % 256; text: "aé€😀" (1+2+3+4
-- bytes of UTF-8) repeated, the last n % 10 bytes "x" (both compress
-- well).  The peers also know random (binary noise), randtext (random code
-- points of 1-4 bytes) and repeat (binary: a random block of n/2 bytes
-- twice: deflate only finds the repetition with a window above n/2).  Each
-- side seeds its own generator with n, so on one side the same kind and n
-- always give the same bytes (the sides' generators differ: an echo is
-- compared with what its sender sent).

local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local certs = require "spec.support.certs"
local json = require "dkjson"
local assert = require "luassert"

local interop = {}

local MiB = 1024 * 1024
interop.SIZES = { 0, 1, 125, 126, 65535, 65536, 16 * MiB }
local KINDS = { "text", "binary" }
local CONNECT = { timeout = 10, close_timeout = 5 }

---------------------------------------------------------------- payloads

local TEXT_UNIT = "a\u{E9}\u{20AC}\u{1F600}"
local BINARY_UNIT do
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  BINARY_UNIT = table.concat(t)
end

-- xorshift32 seeded by seed: the random kinds' numbers.
local function rng(seed)
  local x = (seed ~ 0x9e3779b9) & 0xffffffff
  if x == 0 then x = 1 end
  return function()
    x = x ~ ((x << 13) & 0xffffffff)
    x = x ~ (x >> 17)
    x = x ~ ((x << 5) & 0xffffffff)
    return x
  end
end

local BYTE = {}
for i = 0, 255 do BYTE[i] = string.char(i) end

local function random_bytes(n, seed)
  local next_number, t = rng(seed), {}
  for i = 1, n do t[i] = BYTE[next_number() & 0xff] end
  return table.concat(t)
end

-- Random code points of 1-4 bytes of UTF-8, exactly n bytes.
local UTF8_RANGES = { { 0x20, 0x7E }, { 0x80, 0x7FF }, { 0xE000, 0xFFFF }, { 0x10000, 0x10FFFF } }
local function random_text(n)
  local next_number, t, left = rng(n), {}, n
  while left > 0 do
    local width = 1 + next_number() % math.min(4, left)
    local lo, hi = table.unpack(UTF8_RANGES[width])
    t[#t + 1] = utf8.char(lo + next_number() % (hi - lo + 1))
    left = left - width
  end
  return table.concat(t)
end

local generated = {}
function interop.gen(kind, n)
  local key = kind .. n
  local s = generated[key]
  if not s then
    if kind == "text" then
      s = TEXT_UNIT:rep(n // 10) .. ("x"):rep(n % 10)
    elseif kind == "binary" then
      s = BINARY_UNIT:rep(n // 256 + 1):sub(1, n)
    elseif kind == "random" then
      s = random_bytes(n, n)
    elseif kind == "randtext" then
      s = random_text(n)
    elseif kind == "repeat" then
      s = random_bytes(n // 2, n):rep(2) .. ("x"):rep(n % 2)
    else
      error("unknown payload kind " .. kind)
    end
    generated[key] = s
  end
  return s
end
local gen = interop.gen

-- The message type a payload kind is sent as.
local function type_of(kind)
  return (kind == "text" or kind == "randtext") and "text" or "binary"
end

-- Exact byte equality with a readable failure (never dumps 16 MiB).
local function assert_bytes(expected, actual, what)
  assert.are.equal("string", type(actual), what .. ": a string")
  if expected == actual then return end
  assert.are.equal(#expected, #actual, what .. ": length")
  local i = 1
  while expected:sub(i, i + 4095) == actual:sub(i, i + 4095) do i = i + 4096 end
  while expected:byte(i) == actual:byte(i) do i = i + 1 end
  assert.are.equal(expected:byte(i), actual:byte(i), ("%s: byte at offset %d"):format(what, i - 1))
end

---------------------------------------------------------------- peers

local tags = 0
local function tag(name)
  tags = tags + 1
  return ("/%s-%d"):format(name, tags)
end

-- The JSON lines a peer printed so far.
local function observations(p) return p:observations() end

local function transcript(p)
  return ("peer stdout:\n%s\npeer stderr:\n%s"):format(p:stdout(), p:stderr())
end

-- Wait (running moonws) for the peer server's record ev for path.
local function peer_record(p, ev, path)
  local found
  local ok = pcall(helpers.run_until, function()
    for _, obs in ipairs(observations(p)) do
      if obs.ev == ev and obs.path == path then found = obs return true end
    end
    return false
  end, 10)
  assert.is_true(ok, ("the peer server reported no %q for %s\n%s"):format(ev, path, transcript(p)))
  return found
end

-- Compare observations with expected ones, field by field (only the
-- fields an expected entry names; extra observations show up as such).
local function assert_script(expected, observed, context)
  local projected = {}
  for i, obs in ipairs(observed) do
    local exp = expected[i]
    if exp then
      local p = {}
      for k in pairs(exp) do p[k] = obs[k] end
      projected[i] = p
    else
      projected[i] = obs
    end
  end
  assert.are.same(expected, projected, context)
end

-- Run a peer client against url with options (a list of "--name=value")
-- and steps; moonws runs while it does.
local function run_peer_client(peer, url, steps, options)
  local argv = { table.unpack(peer.argv) }
  argv[#argv + 1] = "client"
  argv[#argv + 1] = url
  for _, o in ipairs(options or {}) do argv[#argv + 1] = o end
  for _, s in ipairs(steps) do argv[#argv + 1] = s end
  local p = process.start(argv, 60)
  local exited = p:wait_exit(40, helpers.idle)
  local obs, text = observations(p), transcript(p)
  p:cleanup()
  assert.is_true(exited, "the peer client did not finish\n" .. text)
  return obs, text
end

---------------------------------------------------------------- moonws side

local function note(t, what) t.events[#t.events + 1] = what end

-- A new table with the fields of each argument in turn (later ones win).
local function merge(...)
  local t = {}
  for i = 1, select("#", ...) do
    for k, v in pairs(select(i, ...) or {}) do t[k] = v end
  end
  return t
end

local function ensure_closed(ws)
  if ws and ws.readyState ~= moonws.CLOSED then ws:terminate() end
end

-- An event-style moonws client: t.events lists every event in order
-- ("open", "message", "ping:P", "pong:P", "error:NAME", "close").
local function event_client(url, opts, on)
  on = on or {}
  local ws = moonws.new(url, opts or CONNECT)
  local t = { ws = ws, events = {}, messages = {} }
  ws.onopen = function()
    note(t, "open")
    if on.open then on.open(ws) end
  end
  ws.onmessage = function(e)
    note(t, "message")
    t.messages[#t.messages + 1] = e
  end
  ws.onping = function(e) note(t, "ping:" .. e.data) end
  ws.onpong = function(e) note(t, "pong:" .. e.data) end
  ws.onerror = function(e)
    note(t, "error:" .. tostring(e.error))
    t.error = e
  end
  ws.onclose = function(e)
    note(t, "close")
    t.close = { code = e.code, reason = e.reason, wasClean = e.wasClean }
  end
  return t
end

-- Run fn in a moonws coroutine and step the loop until it returns;
-- returns what it returned, or fails with its error.
local function in_coroutine(fn, timeout)
  local done, ok, result
  moonws.spawn(function()
    ok, result = pcall(fn)
    done = true
  end)
  helpers.run_until(function() return done end, timeout or 20, "the coroutine")
  assert.is_true(ok, tostring(result))
  return result
end

local function describe_message(data, kind)
  return { type = kind, len = #data, gen = data == gen(kind, #data),
    text = kind == "text" and #data <= 1024 and data or nil }
end

-- The moonws server side of the command protocol, for one message.
local function serve_message(ws, c, data, kind)
  note(c, "message")
  c.messages[#c.messages + 1] = describe_message(data, kind)
  if c.path == "/seed" then
    ws:close(4000, "bye")
    return
  end
  local name, rest = data:match("^cmd:([^:]*):?(.*)$")
  if kind ~= "text" or not name then
    ws:send(data, kind)
  elseif name == "close" then
    local code, reason = rest:match("^(%d+):?(.*)$")
    ws:close(math.tointeger(tonumber(code)), reason)
  elseif name == "ping" then
    ws:ping(rest)
  elseif name == "fragments" then
    local n, size, fkind = rest:match("^(%d+):(%d+):(%a+)$")
    n, size = tonumber(n), tonumber(size)
    if size ~= c.fragment_size then
      ws:send("error:this server's fragment_size is " .. tostring(c.fragment_size))
    else
      ws:send(gen(fkind, n * size), fkind)
    end
  elseif name == "terminate" then
    ws:terminate()
  else
    ws:send("error:unknown command " .. data)
  end
end

-- A moonws server speaking the command protocol; style "events" (listen +
-- onconnection + handlers) or "coroutine" (serve + receive loop).
-- Returns the server and the list of connection records.
local function moonws_server(style, opts)
  local o = { host = "127.0.0.1", port = 0 }
  for k, v in pairs(opts or {}) do o[k] = v end
  local conns = {}
  local function track(ws, request)
    local c = { path = request.path, events = {}, messages = {}, fragment_size = o.fragment_size,
      extensions = ws.extensions, url = ws.url }
    conns[#conns + 1] = c
    ws.onping = function(e) note(c, "ping:" .. e.data) end
    ws.onpong = function(e)
      note(c, "pong:" .. e.data)
      ws:send("pong:" .. e.data)
    end
    ws.onerror = function(e) note(c, "error:" .. tostring(e.error)) end
    ws.onclose = function(e)
      note(c, "close")
      c.close = { code = e.code, reason = e.reason, wasClean = e.wasClean }
    end
    return c
  end
  local srv
  if style == "events" then
    srv = assert(moonws.listen(o))
    srv.onconnection = function(ws, request)
      local c = track(ws, request)
      ws.onmessage = function(e) serve_message(ws, c, e.data, e.binary and "binary" or "text") end
    end
  else
    srv = assert(moonws.serve(o, function(ws, request)
      local c = track(ws, request)
      while true do
        local data, kind, name = ws:receive(30)
        if not data then
          c.ended = { message = kind, name = name }
          break
        end
        serve_message(ws, c, data, kind)
      end
    end))
  end
  return srv, conns
end

---------------------------------------------------------------- peers and variants

-- What a peer is: its command line, which window bits its zlib can
-- compress with (it inflates every window 8..15; Python's zlib refuses a
-- raw 8-bit window, and websockets then fails the handshake; Node's zlib
-- takes 8 and compresses within 9 bits, which RFC 7692 readers such as
-- moonws accept), and what its server answers a moonws client's default
-- offer when not configured (nil: it declines).
interop.peers = {
  python = {
    name = "Python websockets 10.4",
    argv = { "/usr/bin/python3", "spec/peers/python_peer.py" },
    compress_bits = { 9, 10, 11, 12, 13, 14, 15 },
    default_answer = { server_max_window_bits = "12", client_max_window_bits = "12" },
  },
  node = {
    name = "Node ws 8.18.0",
    argv = { "node", "spec/peers/node_peer.js" },
    compress_bits = { 8, 9, 10, 11, 12, 13, 14, 15 },
  },
}

-- A variant: how interop.run reaches the peer and which cases it runs.
-- prepare() fills in the peer's server and client arguments and moonws's
-- options, at setup time.
interop.PLAIN = {
  label = "", scheme = "ws", sizes = interop.SIZES, abnormal = true,
  prepare = function() end,
}

-- wss:// both ways, with the throwaway certificates of spec.support.certs
-- (the spec file calls certs.cleanup() in a teardown).  The 16 MiB echo
-- runs once per direction: text from a moonws client, binary from a peer
-- client.  Abnormal closure (a TCP drop mid-frame) stays a ws:// matter.
function interop.tls()
  local v = { label = " over TLS", scheme = "wss", sizes = { 0, 125, 65536 },
    big = { client = "text", server = "binary" }, abnormal = false }
  function v.prepare()
    local c = certs.get()
    v.server_args = { "--tls=" .. c.server_cert .. "," .. c.server_key }
    v.client_args = { "--ca=" .. c.ca }
    v.client_opts = { tls = { cafile = c.ca } }
    v.server_opts = { tls = { cert = c.server_cert, key = c.server_key } }
  end
  return v
end

-- The echo sizes of variant v for kind, in direction "client" (moonws
-- client) or "server" (moonws server).
local function sizes_of(v, kind, direction)
  local list = { table.unpack(v.sizes) }
  if v.big and v.big[direction] == kind then list[#list + 1] = 16 * MiB end
  return list
end

-- Start a peer server with extra arguments; returns it and its base URL.
local function start_peer_server(peer, scheme, args)
  local argv = { table.unpack(peer.argv) }
  argv[#argv + 1] = "server"
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local server = process.start(argv, 180)
  return server, ("%s://127.0.0.1:%d"):format(scheme, server:port(helpers.idle))
end

---------------------------------------------------------------- the cases

-- E: the spec file's environment (describe, it, setup, finally ...);
-- peer: one of interop.peers; variant: interop.PLAIN (default) or
-- interop.tls().
function interop.run(E, peer, variant)
  local describe, it, setup, teardown = E.describe, E.it, E.setup, E.teardown
  local function finally(fn) return E.finally(fn) end -- exists only while a case runs
  local v = variant or interop.PLAIN

  describe(peer.name .. ": moonws client -> peer server" .. v.label, function()
    local server, base

    setup(function()
      v.prepare()
      server, base = start_peer_server(peer, v.scheme, v.server_args)
    end)

    teardown(function()
      if server then server:cleanup() end
    end)

    -- moonws's client options for this variant, plus extra.
    local function options(extra)
      return merge(CONNECT, v.client_opts, extra)
    end

    -- Coroutine style straight from the main thread.
    local function connect(path, opts)
      local ws, msg, name = moonws.connect(base .. path, options(opts))
      assert.is_truthy(ws, ("connect failed: %s (%s)\n%s"):format(msg, name, transcript(server)))
      finally(function() ensure_closed(ws) end)
      return ws
    end

    local function open_events(path, opts, on)
      local t = event_client(base .. path, options(opts), on)
      finally(function() ensure_closed(t.ws) end)
      return t
    end

    local function wait_closed(t)
      helpers.run_until(function() return t.close ~= nil end, 15, "onclose")
    end

    describe("messages echo byte-exact", function()
      for _, n in ipairs(sizes_of(v, "text", "client")) do
        it(("text message of %d bytes (multi-byte UTF-8), coroutine style"):format(n), function()
          local payload = gen("text", n)
          local ws = connect(tag("text"))
          assert.is_true(ws:send(payload))
          local data, kind = ws:receive(30)
          assert.are.equal("text", kind)
          assert_bytes(payload, data, "echoed text")
          assert.is_true(ws:close())
        end)
      end

      for _, n in ipairs(sizes_of(v, "binary", "client")) do
        it(("binary message of %d bytes (all 256 byte values), event style"):format(n), function()
          local payload = gen("binary", n)
          local t = open_events(tag("binary"), nil, {
            open = function(ws) ws:send(payload, "binary") end,
          })
          helpers.run_until(function() return #t.messages > 0 end, 30, "the echo")
          assert.are.equal(1, #t.messages)
          assert.is_true(t.messages[1].binary)
          assert_bytes(payload, t.messages[1].data, "echoed binary")
          t.ws:close()
          wait_closed(t)
          assert.are.same({ "open", "message", "close" }, t.events)
        end)
      end
    end)

    describe("fragmented messages", function()
      it("peer's fragmented text message (4 x 1000 bytes) arrives whole in one onmessage", function()
        local t = open_events(tag("frag"), nil, {
          open = function(ws) ws:send("cmd:fragments:4:1000:text") end,
        })
        helpers.run_until(function() return #t.messages > 0 end, 10, "the fragmented message")
        t.ws:send("after")
        helpers.run_until(function() return #t.messages > 1 end, 10, "the echo of 'after'")
        assert.is_false(t.messages[1].binary)
        assert_bytes(gen("text", 4000), t.messages[1].data, "reassembled text")
        assert.are.equal("after", t.messages[2].data)
        t.ws:close()
        wait_closed(t)
        assert.are.same({ "open", "message", "message", "close" }, t.events)
      end)

      it("peer's fragmented binary message (4 x 1000 bytes) arrives whole in one receive (spawn)", function()
        local result = in_coroutine(function()
          local ws = assert(moonws.connect(base .. tag("frag"), options()))
          ws:send("cmd:fragments:4:1000:binary")
          local d1, k1 = ws:receive(10)
          ws:send("after")
          local d2, k2 = ws:receive(10)
          return { d1 = d1, k1 = k1, d2 = d2, k2 = k2, closed = ws:close() }
        end)
        assert.are.equal("binary", result.k1)
        assert_bytes(gen("binary", 4000), result.d1, "reassembled binary")
        assert.are.same({ "after", "text" }, { result.d2, result.k2 })
        assert.is_true(result.closed)
      end)

      for _, kind in ipairs(KINDS) do
        local name = "fragment_size = 777: a 65536-byte %s message reaches the peer as 85 frames"
        it(name:format(kind), function()
          local ws = connect(tag("fragsize"), { fragment_size = 777 })
          local payload = gen(kind, 65536)
          assert.is_true(ws:send(payload, kind))
          local data, got_kind = ws:receive(30)
          assert.are.equal(kind, got_kind)
          assert_bytes(payload, data, "echo of the fragmented message")
          ws:send("cmd:frames")
          assert.are.same({ "frames:85", "text" }, { ws:receive(10) })
          assert.is_true(ws:close())
        end)
      end
    end)

    describe("ping/pong", function()
      it("peer's ping is answered while the app only steps the loop (no receive, no handlers)", function()
        local ws = connect(tag("ping"))
        assert.is_true(ws:send("cmd:ping:abc"))
        local data, kind
        helpers.run_until(function()
          data, kind = ws:receive(0) -- returns at once: only what already arrived
          return data ~= nil
        end, 10, "the peer's pong:abc")
        assert.are.same({ "pong:abc", "text" }, { data, kind })
        assert.is_true(ws:close())
      end)

      it("peer's ping fires onping with its payload, the peer gets the pong", function()
        local t = open_events(tag("ping"), nil, {
          open = function(ws) ws:send("cmd:ping:hello ping") end,
        })
        helpers.run_until(function() return #t.messages > 0 end, 10, "pong:hello ping")
        assert.are.equal("pong:hello ping", t.messages[1].data)
        t.ws:close()
        wait_closed(t)
        assert.are.same({ "open", "ping:hello ping", "message", "close" }, t.events)
      end)

      it("moonws ping -> the peer's pong fires onpong with the same payload", function()
        local t = open_events(tag("pong"), nil, {
          open = function(ws) assert(ws:ping("xyz")) end,
        })
        helpers.run_until(function() return t.events[2] ~= nil end, 10, "onpong")
        t.ws:close()
        wait_closed(t)
        assert.are.same({ "open", "pong:xyz", "close" }, t.events)
      end)
    end)

    describe("closing handshake", function()
      it("seed: onopen sends 'Hello Server!', server closes 4000 'bye' (moonws.run)", function()
        local path = "/seed"
        local t = event_client(base .. path, options(), {
          open = function(ws) ws:send("Hello Server!") end,
        })
        -- A watchdog bounds moonws.run() if the close never comes.
        moonws.spawn(function()
          local deadline = os.time() + 15
          while t.ws.readyState ~= moonws.CLOSED and os.time() < deadline do moonws.sleep(0.05) end
          if t.ws.readyState ~= moonws.CLOSED then t.ws:terminate(); moonws.stop() end
        end)
        moonws.run()
        assert.are.same({ code = 4000, reason = "bye", wasClean = true }, t.close)
        assert.are.same({ "open", "close" }, t.events)
        local hello = peer_record(server, "hello", path)
        assert.are.same({ "text", "Hello Server!" }, { hello.type, hello.text })
      end)

      it("moonws close(4000, 'bye') -> the peer sees 4000 'bye'; onclose 4000 'bye' clean", function()
        local path = tag("close")
        local t = open_events(path, nil, { open = function(ws) ws:close(4000, "bye") end })
        wait_closed(t)
        assert.are.same({ code = 4000, reason = "bye", wasClean = true }, t.close)
        local rec = peer_record(server, "closed", path)
        assert.are.same({ 4000, "bye" }, { rec.code, rec.reason })
      end)

      it("moonws close(1000, 'done') in a coroutine -> the peer sees 1000 'done'", function()
        local path = tag("close")
        local result = in_coroutine(function()
          local ws = assert(moonws.connect(base .. path, options()))
          local ok, msg, name = ws:close(1000, "done")
          return { ok = ok, msg = msg, name = name, code = ws.closeCode,
            reason = ws.closeReason, state = ws.readyState }
        end)
        assert.are.same({ ok = true, code = 1000, reason = "done", state = moonws.CLOSED }, result)
        local rec = peer_record(server, "closed", path)
        assert.are.same({ 1000, "done" }, { rec.code, rec.reason })
      end)

      it("peer closes 4001 'peer done' -> onclose 4001 'peer done', wasClean true", function()
        local t = open_events(tag("peerclose"), nil, {
          open = function(ws) ws:send("cmd:close:4001:peer done") end,
        })
        wait_closed(t)
        assert.are.same({ code = 4001, reason = "peer done", wasClean = true }, t.close)
        assert.are.same({ "open", "close" }, t.events)
      end)

      it("peer closes 4001 'peer done' -> receive returns nil, msg, 'closed'", function()
        local ws = connect(tag("peerclose"))
        ws:send("cmd:close:4001:peer done")
        local data, msg, name = ws:receive(10)
        assert.is_nil(data)
        assert.are.equal("string", type(msg))
        assert.are.equal("closed", name)
        assert.are.same({ moonws.CLOSED, 4001, "peer done" },
          { ws.readyState, ws.closeCode, ws.closeReason })
      end)
    end)

    if v.abnormal then describe("abnormal closure", function()
      it("terminate() -> onclose 1006 not clean; the peer sees 1006", function()
        local path = tag("terminate")
        local t = open_events(path, nil, { open = function(ws) ws:terminate() end })
        wait_closed(t)
        assert.are.same({ code = 1006, reason = "", wasClean = false }, t.close)
        assert.are.same({ "open", "close" }, t.events)
        local rec = peer_record(server, "closed", path)
        assert.are.equal(1006, rec.code)
      end)

      it("peer drops TCP mid-frame -> onerror, then onclose 1006 not clean, no message", function()
        local t = open_events(tag("drop"), nil, { open = function(ws) ws:send("cmd:drop") end })
        wait_closed(t)
        assert.are.same({ "open", "error:io", "close" }, t.events)
        assert.are.equal("string", type(t.error.message))
        assert.are.same({ code = 1006, reason = "", wasClean = false }, t.close)
      end)
    end) end

    if v.scheme == "wss" then describe("certificates", function()
      it("the peer's certificate verifies against tls.cafile: ws.url is wss://", function()
        local ws = connect(tag("url"))
        assert.are.equal(base .. "/url-", ws.url:sub(1, #base + 5))
        assert.is_true(ws:close())
      end)

      it("without the test CA the peer's certificate fails: nil, 'certificate verify failed...', 'tls'",
        function()
        local ws, msg, name = moonws.connect(base .. tag("noca"), CONNECT)
        if ws then ws:terminate() end
        assert.are.same({ false, "tls" }, { ws ~= nil, name })
        assert.is_truthy(tostring(msg):find("certificate verify failed", 1, true), msg)
      end)

      it("permessage-deflate over TLS: a 65536-byte random message goes compressed both ways", function()
        local path = tag("tlspmd") .. "?pmd=on"
        local ws = connect(path)
        local payload = gen("random", 65536)
        assert.is_true(ws:send(payload, "binary"))
        assert_bytes(payload, ws:receive(30), "the echo")
        assert.are.equal("permessage-deflate", ws.extensions)
        assert.is_true(ws:close())
        local rec = peer_record(server, "closed", path)
        assert.are.same({ "permessage-deflate", true, true },
          { rec.ext, rec.received[1].compressed, rec.sent[1].compressed })
      end)
    end) end
  end)

  describe(peer.name .. ": peer client -> moonws server" .. v.label, function()
    setup(function() v.prepare() end)

    -- Start a moonws server, run the peer client's steps against it, wait
    -- until the server saw the connection end; returns the peer's
    -- observations, the server's record of the connection and a transcript.
    local function scenario(style, opts, path, steps)
      local srv, conns = moonws_server(style, merge(v.server_opts, opts))
      finally(function() srv:close() end)
      local url = ("%s://127.0.0.1:%d%s"):format(v.scheme, srv.port, path)
      local obs, text = run_peer_client(peer, url, steps, v.client_args)
      local ok = pcall(helpers.run_until, function()
        local c = conns[1]
        return c and c.close and (style ~= "coroutine" or c.ended)
      end, 10)
      assert.is_true(ok, "the moonws server saw no end of the connection\n" .. text)
      assert.are.equal(1, #conns, "connections")
      assert.are.equal(v.scheme .. "://", conns[1].url:match("^%a+://"), "the server socket's url")
      return obs, conns[1], text
    end

    local CLEAN_1000 = { code = 1000, reason = "", wasClean = true }

    if v.scheme == "wss" then
      it("a peer client without the test CA refuses moonws's certificate: no connection", function()
        local srv, conns = moonws_server("events", v.server_opts)
        finally(function() srv:close() end)
        local url = ("wss://127.0.0.1:%d/noca"):format(srv.port)
        local obs, text = run_peer_client(peer, url, { "echo:text:1" })
        assert_script({ { ev = "fail", step = "connect" } }, obs, text)
        helpers.idle(0.1)
        assert.are.equal(0, #conns)
      end)

      it("permessage-deflate over TLS: a 65536-byte random message goes compressed both ways", function()
        local obs, c, text = scenario("events", { compression = true }, "/tlspmd",
          { "echo:random:65536" })
        assert_script({
          { ev = "open", ext = "permessage-deflate" },
          { ev = "echo", len = 65536, equal = true, compressed = true, sent_compressed = true },
          { ev = "done" },
        }, obs, text)
        assert.are.equal("permessage-deflate", c.extensions)
      end)
    end

    describe("messages echo byte-exact", function()
      for _, kind in ipairs(KINDS) do
        local style = kind == "text" and "coroutine" or "events"
        for _, n in ipairs(sizes_of(v, kind, "server")) do
          it(("%s message of %d bytes (%s server)"):format(kind, n, style), function()
            local obs, c, text = scenario(style, nil, "/echo",
              { ("echo:%s:%d"):format(kind, n) })
            assert_script({
              { ev = "open" },
              { ev = "echo", type = kind, len = n, equal = true, gen = true, frames = 1 },
              { ev = "done" },
            }, obs, text)
            assert.are.same({ { type = kind, len = n, gen = true,
              text = kind == "text" and n <= 1024 and gen(kind, n) or nil } }, c.messages)
            assert.are.same(CLEAN_1000, c.close)
          end)
        end
      end
    end)

    describe("fragmented messages", function()
      for _, kind in ipairs(KINDS) do
        it(("peer's 4 x 1000-byte %s fragments reach the moonws server whole"):format(kind), function()
          local obs, c, text = scenario("events", nil, "/frag", { ("fragecho:%s:4:1000"):format(kind) })
          assert_script({
            { ev = "open" },
            { ev = "echo", type = kind, len = 4000, equal = true, gen = true, frames = 1 },
            { ev = "done" },
          }, obs, text)
          assert.are.equal(1, #c.messages)
          assert.are.same({ type = kind, len = 4000, gen = true }, { type = c.messages[1].type,
            len = c.messages[1].len, gen = c.messages[1].gen })
        end)

        local name = "moonws server with fragment_size = 777 sends %s as frames the peer joins"
        it(name:format(kind), function()
          local obs, _, text = scenario("coroutine", { fragment_size = 777 }, "/fragsize", {
            ("send:cmd:fragments:4:777:%s"):format(kind), "recv", ("echo:%s:65536"):format(kind),
          })
          assert_script({
            { ev = "open" },
            { ev = "recv", type = kind, len = 3108, frames = 4, gen = true },
            { ev = "echo", type = kind, len = 65536, frames = 85, gen = true, equal = true },
            { ev = "done" },
          }, obs, text)
        end)
      end
    end)

    describe("ping/pong", function()
      it("peer's ping -> moonws server pongs the same payload, onping fires", function()
        local obs, c, text = scenario("events", nil, "/ping", { "ping:abc" })
        assert_script({ { ev = "open" }, { ev = "pong", data = "abc" }, { ev = "done" } }, obs, text)
        assert.are.same({ "ping:abc", "close" }, c.events)
      end)

      it("moonws server's ping -> the peer pongs, onpong fires with the payload", function()
        local obs, c, text = scenario("coroutine", nil, "/pong", { "send:cmd:ping:xyz", "recv" })
        assert_script({
          { ev = "open" }, { ev = "recv", type = "text", text = "pong:xyz" }, { ev = "done" },
        }, obs, text)
        assert.are.same({ "message", "pong:xyz", "close" }, c.events)
      end)
    end)

    describe("closing handshake", function()
      -- RFC 6455 5.5.1: the answering close frame "typically echos the
      -- status code"; echoing the reason is optional, so only the code is checked.
      it("peer closes 4000 'bye' -> server onclose 4000 'bye' clean; the echo carries 4000", function()
        local obs, c, text = scenario("events", nil, "/close", { "close:4000:bye" })
        assert_script({ { ev = "open" }, { ev = "closed", code = 4000 }, { ev = "done" } }, obs, text)
        assert.are.same({ code = 4000, reason = "bye", wasClean = true }, c.close)
        assert.are.same({ "close" }, c.events)
      end)

      it("seed: 'Hello Server!' -> the moonws server closes 4000 'bye', the peer sees it", function()
        local obs, c, text = scenario("events", nil, "/seed", { "send:Hello Server!", "waitclose" })
        assert_script({
          { ev = "open" }, { ev = "closed", code = 4000, reason = "bye" }, { ev = "done" },
        }, obs, text)
        assert.are.same({ type = "text", len = 13, gen = false, text = "Hello Server!" }, c.messages[1])
        assert.are.same({ code = 4000, reason = "bye", wasClean = true }, c.close)
      end)

      it("peer closes 1000 'done' -> coroutine server: onclose 1000 'done', receive -> 'closed'", function()
        local obs, c, text = scenario("coroutine", nil, "/close", { "close:1000:done" })
        assert_script({ { ev = "open" }, { ev = "closed", code = 1000 }, { ev = "done" } }, obs, text)
        assert.are.same({ code = 1000, reason = "done", wasClean = true }, c.close)
        assert.are.equal("closed", c.ended.name)
      end)

      it("moonws server closes 4001 'peer done' -> the peer sees 4001 'peer done'", function()
        local obs, c, text = scenario("coroutine", nil, "/srvclose",
          { "send:cmd:close:4001:peer done", "waitclose" })
        assert_script({
          { ev = "open" }, { ev = "closed", code = 4001, reason = "peer done" }, { ev = "done" },
        }, obs, text)
        assert.are.same({ code = 4001, reason = "peer done", wasClean = true }, c.close)
        assert.are.equal("closed", c.ended.name)
      end)
    end)

    if v.abnormal then describe("abnormal closure", function()
      it("moonws server terminate() -> the peer sees 1006; server onclose 1006 not clean", function()
        local obs, c, text = scenario("events", nil, "/terminate", { "send:cmd:terminate", "waitclose" })
        assert_script({ { ev = "open" }, { ev = "closed", code = 1006 }, { ev = "done" } }, obs, text)
        assert.are.same({ code = 1006, reason = "", wasClean = false }, c.close)
        assert.are.same({ "message", "close" }, c.events)
      end)

      it("peer drops TCP mid-frame -> server onerror, then onclose 1006, no message", function()
        local obs, c, text = scenario("events", nil, "/drop", { "drop" })
        assert_script({ { ev = "open" }, { ev = "dropped" }, { ev = "done" } }, obs, text)
        assert.are.same({ "error:io", "close" }, c.events)
        assert.are.same({ code = 1006, reason = "", wasClean = false }, c.close)
        assert.are.same({}, c.messages)
      end)
    end) end
  end)
end

---------------------------------------------------------------- compression

-- An extension header value as a table: "permessage-deflate; a; b=10" ->
-- { ["permessage-deflate"] = { a = true, b = "10" } }; "" -> {}.  Order
-- and spacing do not matter, names and values do.
local function extension_params(value)
  local t = {}
  for element in (value or ""):gmatch("[^,]+") do
    local name, params = nil, {}
    for part in element:gmatch("[^;]+") do
      part = part:match("^%s*(.-)%s*$")
      local k, val = part:match("^(.-)%s*=%s*\"?(.-)\"?$")
      if not name then
        name = part
      elseif k then
        params[k] = val
      else
        params[part] = true
      end
    end
    t[name] = params
  end
  return t
end

-- Both ends agreed on permessage-deflate with exactly params (nil: no
-- extension at all): moonws's ws.extensions and the peer's header.
local function assert_agreed(params, moonws_value, peer_value, context)
  local expected = params and { ["permessage-deflate"] = params } or {}
  context = context and "\n" .. context or ""
  assert.are.same(expected, extension_params(moonws_value),
    ("moonws ws.extensions %q%s"):format(moonws_value, context))
  assert.are.same(expected, extension_params(peer_value),
    ("the peer's extension header %q%s"):format(tostring(peer_value), context))
end

-- Field `name` of each record of list.
local function column(list, name)
  local t = {}
  for i, r in ipairs(list) do t[i] = r[name] end
  return t
end

-- The named fields of record r, to compare several at once.
local function pick(r, ...)
  local t = {}
  for _, k in ipairs({ ... }) do t[k] = r[k] end
  return t
end

-- Every kind is echoed at these sizes in a row, around moonws's default
-- threshold (1024: shorter messages go plain); the peers compress all.
local DEFLATE_SIZES = { 0, 1, 125, 1023, 1024, 65536 }
local DEFLATE_KINDS = { "text", "binary", "random", "randtext" }
local THRESHOLD = 1024
local CONTEXT_SIZE, CONTEXT_COUNT = 1500, 3
local WINDOW_SIZE = 40000 -- gen("repeat", 40000): a 20000-byte block twice

-- Compressed sizes of CONTEXT_COUNT equal random messages: a compressor
-- that keeps its context (RFC 7692 7.1.1) sends the first in full and the
-- next ones as a back-reference; one that resets sends each alike.
local function assert_context(wires, resets, who)
  local what = ("%s's compressed sizes %s"):format(who, table.concat(wires, ", "))
  assert.are.equal(CONTEXT_COUNT, #wires, what)
  assert.is_true(wires[1] > CONTEXT_SIZE, what .. ": the first in full")
  for i = 2, CONTEXT_COUNT do
    if resets then
      assert.are.equal(wires[1], wires[i], what .. ": each compressed alone")
    else
      assert.is_true(wires[i] < 100, what .. ": later ones refer to the first")
    end
  end
end

-- Compressed size of gen("repeat", WINDOW_SIZE) within a window of bits:
-- only 15 bits (32 KiB) reach back 20000 bytes to the block's first copy.
-- A compressor using a larger window than agreed fails differently: the
-- other side's inflater refuses the distance.
local function assert_window(wire, bits, who)
  local what = ("%s compressed %d bytes into %d with window bits %d"):format(
    who, WINDOW_SIZE, wire, bits)
  if bits == 15 then
    assert.is_true(wire < WINDOW_SIZE // 2 + 1000, what .. ": the repetition was found")
  else
    assert.is_true(wire > WINDOW_SIZE - 1000, what .. ": the repetition is out of reach")
  end
end

local ALL_BITS = { 8, 9, 10, 11, 12, 13, 14, 15 }

-- Context takeover cases (RFC 7692 7.1.1): what the client offers, what
-- the server imposes unasked.  The agreement holds the union, and the side
-- named in a *_no_context_takeover resets its compressor per message.
local CONTEXT_CASES = {
  {},
  { client = { "server_no_context_takeover" } },
  { client = { "client_no_context_takeover" } },
  { client = { "server_no_context_takeover", "client_no_context_takeover" } },
  { server = "server_no_context_takeover" },
  { server = "client_no_context_takeover" },
}

-- A context case's name (client, server: who plays them), the agreed
-- parameters, and the moonws option or peer spec for each side.
local function context_case(case, client, server)
  local params, name = {}, "neither side asks: both keep their context"
  for _, k in ipairs(case.client or {}) do params[k] = true end
  if case.client then
    name = ("the client (%s) offers %s"):format(client, table.concat(case.client, " and "))
  elseif case.server then
    params[case.server] = true
    name = ("the server (%s) imposes %s unasked"):format(server, case.server)
  end
  return {
    name = name, params = params,
    client_option = case.client and params or true,
    client_spec = case.client and table.concat(case.client, ","),
    server_option = case.server and { [case.server] = true } or true,
    server_spec = case.server or "on",
    server_resets = params.server_no_context_takeover == true,
    client_resets = params.client_no_context_takeover == true,
  }
end

-- E: as for interop.run; peer: one of interop.peers.  Over ws:// (the TLS
-- cases of a moonws client against Python run compressed already: that is
-- websockets' default).
function interop.run_deflate(E, peer)
  local describe, it, setup, teardown = E.describe, E.it, E.setup, E.teardown
  local function finally(fn) return E.finally(fn) end

  describe(peer.name .. ": moonws client -> peer server, permessage-deflate", function()
    local server, base

    setup(function() server, base = start_peer_server(peer, "ws") end)
    teardown(function() if server then server:cleanup() end end)

    -- Connect to the peer server, configured for this connection by spec
    -- (see ?pmd= above; nil: the peer's default), with moonws's option
    -- compression (nil: the default, true) and extra options.
    local function connect(spec, compression, extra)
      local path = tag("pmd") .. (spec and "?pmd=" .. spec or "")
      local ws, msg, name = moonws.connect(base .. path,
        merge(CONNECT, { compression = compression }, extra))
      assert.is_truthy(ws, ("connect failed: %s (%s)\n%s"):format(msg, name, transcript(server)))
      finally(function() ensure_closed(ws) end)
      return ws, path
    end

    -- Echo each { kind, n } byte-exact in turn, close, and return the peer
    -- server's record of the connection.
    local function echo_all(ws, path, payloads)
      for i, p in ipairs(payloads) do
        local kind, n = p[1], p[2]
        local data = gen(kind, n)
        assert.is_true(ws:send(data, type_of(kind)))
        local got, got_type = ws:receive(30)
        assert.are.equal(type_of(kind), got_type, "type of echo " .. i)
        assert_bytes(data, got, ("echo %d (%s, %d bytes)"):format(i, kind, n))
      end
      assert.is_true(ws:close())
      return peer_record(server, "closed", path)
    end

    describe("negotiation", function()
      local name = "compression = true (default): the peer accepts, both ends report "
        .. "permessage-deflate, RSV1 both ways"
      it(name, function()
        local ws, path = connect("on")
        local rec = echo_all(ws, path, { { "text", 2000 } })
        assert_agreed({}, ws.extensions, rec.ext)
        assert.are.same({ true }, column(rec.received, "compressed"))
        assert.are.same({ true }, column(rec.sent, "compressed"))
      end)

      local answer = peer.default_answer
      local name = answer and "answers its own window limits: moonws agrees and keeps to them"
        or "declines the offer: nothing goes compressed"
      it("the peer server's default configuration " .. name, function()
        local ws, path = connect(nil)
        local rec = echo_all(ws, path, { { "repeat", WINDOW_SIZE } })
        assert_agreed(answer, ws.extensions, rec.ext)
        assert.are.same({ answer ~= nil }, column(rec.received, "compressed"))
        assert.are.same({ answer ~= nil }, column(rec.sent, "compressed"))
        if answer then
          assert_window(rec.received[1].wire, tonumber(answer.client_max_window_bits), "moonws")
        end
      end)

      it("compression = false: no offer, no extension on either end, no RSV1", function()
        local ws, path = connect("on", false)
        local rec = echo_all(ws, path, { { "text", 2000 } })
        assert_agreed(nil, ws.extensions, rec.ext)
        assert.are.same({ false }, column(rec.received, "compressed"))
        assert.are.same({ false }, column(rec.sent, "compressed"))
      end)

      it("the peer declines the offer: ws.extensions is '' and nothing goes compressed", function()
        local ws, path = connect("off")
        local rec = echo_all(ws, path, { { "binary", 2000 } })
        assert_agreed(nil, ws.extensions, rec.ext)
        assert.are.same({ false }, column(rec.received, "compressed"))
        assert.are.same({ false }, column(rec.sent, "compressed"))
      end)
    end)

    describe("messages echo byte-exact, compressed from the threshold (1024) up", function()
      for _, kind in ipairs(DEFLATE_KINDS) do
        local name = ("%s messages of %s bytes in a row: moonws sets RSV1 iff >= 1024, "
          .. "the peer on all"):format(kind, table.concat(DEFLATE_SIZES, ", "))
        it(name, function()
          local ws, path = connect("on")
          local payloads, compressed, all = {}, {}, {}
          for i, n in ipairs(DEFLATE_SIZES) do
            payloads[i], compressed[i], all[i] = { kind, n }, n >= THRESHOLD, true
          end
          local rec = echo_all(ws, path, payloads)
          assert_agreed({}, ws.extensions, rec.ext)
          assert.are.same(compressed, column(rec.received, "compressed"), "RSV1 of moonws's messages")
          assert.are.same(column(payloads, 2), column(rec.received, "len"))
          assert.are.same(all, column(rec.sent, "compressed"), "RSV1 of the peer's messages")
          if kind == "text" or kind == "binary" then -- a short unit repeated: shrinks a lot
            local wire = rec.received[#DEFLATE_SIZES].wire
            assert.is_true(wire < 65536 // 20, "moonws compressed 65536 bytes into " .. wire)
          end
        end)
      end

      it("a 16 MiB text message goes compressed both ways and comes back byte-exact", function()
        local ws, path = connect("on")
        local rec = echo_all(ws, path, { { "text", 16 * MiB } })
        local got = rec.received[1]
        -- Deflated max_step_bytes (256 KiB) a round, so sent as 64 fragments.
        assert.are.same({ compressed = true, frames = 64, len = 16 * MiB },
          pick(got, "compressed", "frames", "len"))
        assert.is_true(got.wire < 16 * MiB // 100, "moonws's compressed size " .. got.wire)
        assert.are.same({ true }, column(rec.sent, "compressed"))
      end)
    end)

    describe("threshold", function()
      it("threshold = 0: a 1-byte message goes compressed, an empty one plain", function()
        local ws, path = connect("on", { threshold = 0 })
        local rec = echo_all(ws, path, { { "text", 1 }, { "binary", 0 } })
        assert.are.same({ true, false }, column(rec.received, "compressed"))
      end)

      it("threshold = 100: 99 bytes go plain, 100 bytes compressed", function()
        local ws, path = connect("on", { threshold = 100 })
        local rec = echo_all(ws, path, { { "text", 99 }, { "text", 100 } })
        assert.are.same({ false, true }, column(rec.received, "compressed"))
      end)

      local name = "a message under the threshold between compressed ones goes plain, "
        .. "arrives intact, keeps the context"
      it(name, function()
        local ws, path = connect("on")
        local rec = echo_all(ws, path, { { "random", 4096 }, { "text", 10 }, { "random", 4096 } })
        assert.are.same({ true, false, true }, column(rec.received, "compressed"))
        assert.are.same({ 4096, 10, 4096 }, column(rec.received, "len"))
        assert.is_true(rec.received[1].wire > 4096, "the first random message in full")
        assert.is_true(rec.received[3].wire < 100,
          "the third refers to the first: " .. rec.received[3].wire)
      end)
    end)

    describe("fragmented compressed messages", function()
      for _, kind in ipairs({ "random", "text" }) do
        local name = "fragment_size = 777: a 65536-byte %s message goes as 85 frames, RSV1 on the first"
        it(name:format(kind), function()
          local ws, path = connect("on", nil, { fragment_size = 777 })
          local payload = gen(kind, 65536)
          assert.is_true(ws:send(payload, type_of(kind)))
          local data = ws:receive(30)
          assert_bytes(payload, data, "echo of the fragmented compressed message")
          ws:send("cmd:frames")
          assert.are.same({ "frames:85", "text" }, { ws:receive(10) })
          assert.is_true(ws:close())
          local got = peer_record(server, "closed", path).received[1]
          assert.are.same({ frames = 85, compressed = true, len = 65536 },
            pick(got, "frames", "compressed", "len"))
          if kind == "text" then
            assert.is_true(got.wire < 65536 // 4, "compressed size " .. got.wire)
          end
        end)
      end

      for _, kind in ipairs(KINDS) do
        local name = "the peer's compressed %s message in 4 x 1000-byte frames arrives whole"
        it(name:format(kind), function()
          local ws, path = connect("on")
          assert.is_true(ws:send("cmd:fragments:4:1000:" .. kind))
          local data, got_kind = ws:receive(10)
          assert.are.equal(kind, got_kind)
          assert_bytes(gen(kind, 4000), data, "the reassembled, inflated message")
          assert.is_true(ws:close())
          local rec = peer_record(server, "closed", path)
          assert.are.same({ true }, column(rec.sent, "compressed"))
        end)
      end
    end)

    describe(("context takeover, %d equal random messages in a row"):format(CONTEXT_COUNT), function()
      for _, cc in ipairs(CONTEXT_CASES) do
        local case = context_case(cc, "moonws", "the peer")
        it(case.name, function()
          local ws, path = connect(case.server_spec, case.client_option)
          local payloads = {}
          for i = 1, CONTEXT_COUNT do payloads[i] = { "random", CONTEXT_SIZE } end
          local rec = echo_all(ws, path, payloads)
          assert_agreed(case.params, ws.extensions, rec.ext)
          assert_context(column(rec.received, "wire"), case.client_resets, "moonws (client)")
          assert_context(column(rec.sent, "wire"), case.server_resets, "the peer (server)")
        end)
      end
    end)

    describe("window bits, a random 20000-byte block twice (40000 bytes)", function()
      for _, bits in ipairs(ALL_BITS) do
        local name = "moonws asks client_max_window_bits = %d: moonws compresses within it, "
          .. "the peer inflates"
        it(name:format(bits), function()
          local ws, path = connect("on", { client_max_window_bits = bits })
          local rec = echo_all(ws, path, { { "repeat", WINDOW_SIZE } })
          assert_agreed({ client_max_window_bits = tostring(bits) }, ws.extensions, rec.ext)
          assert.are.same({ true }, column(rec.received, "compressed"))
          assert_window(rec.received[1].wire, bits, "moonws")
        end)
      end

      for _, bits in ipairs(peer.compress_bits) do
        local name = "moonws asks server_max_window_bits = %d: the peer compresses within it, "
          .. "moonws inflates"
        it(name:format(bits), function()
          local ws, path = connect("on", { server_max_window_bits = bits })
          local rec = echo_all(ws, path, { { "repeat", WINDOW_SIZE } })
          assert_agreed({ server_max_window_bits = tostring(bits) }, ws.extensions, rec.ext)
          assert.are.same({ true }, column(rec.sent, "compressed"))
          assert_window(rec.sent[1].wire, bits, "the peer")
        end)
      end

      local name = "the peer server limits client_max_window_bits to 10 (offered without a value): "
        .. "moonws keeps to it"
      it(name, function()
        local ws, path = connect("client_max_window_bits:10")
        local rec = echo_all(ws, path, { { "repeat", WINDOW_SIZE } })
        assert_agreed({ client_max_window_bits = "10" }, ws.extensions, rec.ext)
        assert_window(rec.received[1].wire, 10, "moonws")
      end)
    end)
  end)

  describe(peer.name .. ": peer client -> moonws server, permessage-deflate", function()
    -- Run the peer client (offering as spec; nil: its default offer)
    -- against a moonws server with the compression option compression and
    -- extra options.  Returns the peer's echo and recv observations (the
    -- run must end with "done"), the "open" observation, the server's
    -- record of the connection (closed cleanly) and a transcript.
    local function scenario(compression, spec, steps, extra)
      local srv, conns = moonws_server("events", merge({ compression = compression }, extra))
      finally(function() srv:close() end)
      local url = ("ws://127.0.0.1:%d%s"):format(srv.port, tag("pmd"))
      local obs, text = run_peer_client(peer, url, steps, spec and { "--pmd=" .. spec })
      local echoes = {}
      for _, o in ipairs(obs) do
        assert.are_not.equal("fail", o.ev, text)
        if o.ev == "echo" or o.ev == "recv" then echoes[#echoes + 1] = o end
      end
      assert.are.same({ "open", "done" }, { (obs[1] or {}).ev, (obs[#obs] or {}).ev }, text)
      assert.is_true(pcall(helpers.run_until, function() return conns[1] and conns[1].close end, 10),
        "the moonws server saw no end of the connection\n" .. text)
      assert.are.same({ code = 1000, reason = "", wasClean = true }, conns[1].close, text)
      return echoes, obs[1], conns[1], text
    end

    local function echo_steps(kind, sizes)
      local steps = {}
      for i, n in ipairs(sizes) do steps[i] = ("echo:%s:%d"):format(kind, n) end
      return steps
    end

    describe("negotiation", function()
      local name = "the peer offers, compression = true accepts: both ends report permessage-deflate, "
        .. "RSV1 both ways"
      it(name, function()
        local e, open, c, text = scenario(true, nil, { "echo:text:2000" })
        assert_agreed({}, c.extensions, open.ext, text)
        assert.are.same({ equal = true, compressed = true, sent_compressed = true },
          pick(e[1], "equal", "compressed", "sent_compressed"))
      end)

      local declining = { { "without the compression option" }, { "with compression = false", false } }
      for _, case in ipairs(declining) do
        it(("a server %s declines: no extension on either end, no RSV1"):format(case[1]), function()
          local e, open, c, text = scenario(case[2], nil, { "echo:text:2000" })
          assert_agreed(nil, c.extensions, open.ext, text)
          assert.are.same({ equal = true, compressed = false, sent_compressed = false },
            pick(e[1], "equal", "compressed", "sent_compressed"))
        end)
      end
    end)

    describe("messages echo byte-exact, compressed from the threshold (1024) up", function()
      for _, kind in ipairs(DEFLATE_KINDS) do
        local name = ("%s messages of %s bytes in a row: moonws sets RSV1 iff >= 1024, "
          .. "the peer on all"):format(kind, table.concat(DEFLATE_SIZES, ", "))
        it(name, function()
          local e, open, c, text = scenario(true, nil, echo_steps(kind, DEFLATE_SIZES))
          assert_agreed({}, c.extensions, open.ext, text)
          assert.are.equal(#DEFLATE_SIZES, #e, text)
          for i, n in ipairs(DEFLATE_SIZES) do
            assert.are.same({ equal = true, len = n, type = type_of(kind), frames = 1,
              compressed = n >= THRESHOLD, sent_compressed = true },
              pick(e[i], "equal", "len", "type", "frames", "compressed", "sent_compressed"),
              ("echo of %d bytes\n%s"):format(n, text))
            assert.are.equal(n, c.messages[i].len)
          end
          if kind == "text" or kind == "binary" then
            assert.is_true(e[#e].wire < 65536 // 20, "moonws compressed 65536 bytes into " .. e[#e].wire)
          end
        end)
      end

      it("a 16 MiB random binary message goes compressed both ways and comes back byte-exact", function()
        local e, _, c, text = scenario(true, nil, { "echo:random:" .. 16 * MiB })
        assert.are.same({ equal = true, len = 16 * MiB, compressed = true, sent_compressed = true },
          pick(e[1], "equal", "len", "compressed", "sent_compressed"), text)
        assert.are.equal(16 * MiB, c.messages[1].len)
      end)
    end)

    describe("threshold", function()
      it("threshold = 0: a 1-byte message goes compressed, an empty one plain", function()
        local e = scenario({ threshold = 0 }, nil, { "echo:text:1", "echo:binary:0" })
        assert.are.same({ true, false }, column(e, "compressed"))
      end)

      it("threshold = 100: 99 bytes go plain, 100 bytes compressed", function()
        local e = scenario({ threshold = 100 }, nil, { "echo:text:99", "echo:text:100" })
        assert.are.same({ false, true }, column(e, "compressed"))
      end)

      local name = "a message under the threshold between compressed ones goes plain, "
        .. "arrives intact, keeps the context"
      it(name, function()
        local e, _, c = scenario(true, nil, { "echo:random:4096", "echo:text:10", "echo:random:4096" })
        assert.are.same({ true, false, true }, column(e, "compressed"))
        assert.are.same({ true, true, true }, column(e, "equal"))
        assert.are.same({ 4096, 10, 4096 }, column(c.messages, "len"))
        assert.is_true(e[1].wire > 4096, "the first random message in full")
        assert.is_true(e[3].wire < 100, "the third refers to the first: " .. e[3].wire)
      end)
    end)

    describe("fragmented compressed messages", function()
      for _, kind in ipairs(KINDS) do
        local name = "the peer's compressed %s message in 4 x 1000-byte frames reaches the server whole"
        it(name:format(kind), function()
          local e, _, c, text = scenario(true, nil, { ("fragecho:%s:4:1000"):format(kind) })
          assert.are.same({ equal = true, sent_compressed = true, compressed = true },
            pick(e[1], "equal", "sent_compressed", "compressed"), text)
          assert.are.same({ type = kind, len = 4000, gen = true },
            pick(c.messages[1], "type", "len", "gen"))
        end)

        name = "server fragment_size = 777: %s 4 x 777 and a 65536-byte echo arrive as 4 and 85 "
          .. "compressed frames"
        it(name:format(kind), function()
          local e, _, _, text = scenario(true, nil, {
            ("send:cmd:fragments:4:777:%s"):format(kind), "recv", ("echo:%s:65536"):format(kind),
          }, { fragment_size = 777 })
          assert_script({
            { ev = "recv", type = kind, len = 3108, frames = 4, compressed = true, gen = true },
            { ev = "echo", type = kind, len = 65536, frames = 85, compressed = true, equal = true },
          }, e, text)
        end)
      end
    end)

    describe(("context takeover, %d equal random messages in a row"):format(CONTEXT_COUNT), function()
      for _, cc in ipairs(CONTEXT_CASES) do
        local case = context_case(cc, "the peer", "moonws")
        it(case.name, function()
          local e, open, c, text = scenario(case.server_option, case.client_spec,
            echo_steps("random", { CONTEXT_SIZE, CONTEXT_SIZE, CONTEXT_SIZE }))
          assert_agreed(case.params, c.extensions, open.ext, text)
          assert.are.same({ true, true, true }, column(e, "equal"))
          assert_context(column(e, "wire"), case.server_resets, "moonws (server)")
          assert_context(column(e, "sent_wire"), case.client_resets, "the peer (client)")
        end)
      end
    end)

    describe("window bits, a random 20000-byte block twice (40000 bytes)", function()
      local steps = { "echo:repeat:" .. WINDOW_SIZE }

      for _, bits in ipairs(ALL_BITS) do
        local name = "server_max_window_bits = %d: moonws compresses within it, the peer inflates"
        it(name:format(bits), function()
          local e, open, c, text = scenario({ server_max_window_bits = bits }, nil, steps)
          assert_agreed({ server_max_window_bits = tostring(bits) }, c.extensions, open.ext, text)
          assert.are.same({ equal = true, compressed = true }, pick(e[1], "equal", "compressed"))
          assert_window(e[1].wire, bits, "moonws")
        end)
      end

      for _, bits in ipairs(peer.compress_bits) do
        local name = "client_max_window_bits = %d: the peer compresses within it, moonws inflates"
        it(name:format(bits), function()
          local e, open, c, text = scenario({ client_max_window_bits = bits }, nil, steps)
          -- 15 is what an absent parameter means: the answer leaves it out.
          local params = bits < 15 and { client_max_window_bits = tostring(bits) } or {}
          assert_agreed(params, c.extensions, open.ext, text)
          assert.are.same({ equal = true, sent_compressed = true }, pick(e[1], "equal", "sent_compressed"))
          assert_window(e[1].sent_wire, bits, "the peer")
        end)
      end

      it("the peer asks server_max_window_bits = 10: moonws keeps to it", function()
        local e, open, c, text = scenario(true, "server_max_window_bits:10", steps)
        assert_agreed({ server_max_window_bits = "10" }, c.extensions, open.ext, text)
        assert.is_true(e[1].equal)
        assert_window(e[1].wire, 10, "moonws")
      end)

      it("the peer offers client_max_window_bits = 10: moonws agrees, the peer keeps to it", function()
        local e, open, c, text = scenario(true, "client_max_window_bits:10", steps)
        assert_agreed({ client_max_window_bits = "10" }, c.extensions, open.ext, text)
        assert.is_true(e[1].equal)
        assert_window(e[1].sent_wire, 10, "the peer")
      end)
    end)
  end)
end

return interop

-- spec/support/interop.lua -- the interoperability cases, one list for every
-- real peer (Python websockets 10.4, Node ws 8.18.0): each peer's spec file
-- calls interop.run(_ENV, peer) and gets the same cases, in both directions
-- (moonws client -> peer server, peer client -> moonws server).
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
--   Client side: `peer client URL STEP...` runs the steps and prints one JSON
--   line per observation, then {"ev":"done"}, or {"ev":"fail","step",
--   "reason"} and exits non-zero:
--     echo:TYPE:N                send gen(TYPE, N), expect it back: {"ev":"echo"}
--     fragecho:TYPE:N:SIZE       the same, sent as N frames of SIZE bytes
--     send:TEXT                  send a text message (e.g. send:cmd:ping:xyz)
--     recv                       {"ev":"recv"} for the next message
--     ping:P                     ping, wait for the pong: {"ev":"pong","data"}
--     close:CODE:REASON          close, wait: {"ev":"closed","code","reason"}
--     waitclose                  wait for the server to end it: {"ev":"closed"}
--     drop                       like cmd:drop (masked), then end the scenario
--   Received messages are described as {type, len, frames (data frames it
--   came in), gen (== gen(type, len)), text (text up to 1 KiB)}.
--   A scenario left open is closed with 1000 "" after "done".
--
-- gen(kind, n): n bytes; binary: byte i is i % 256; text: "aé€😀" (1+2+3+4
-- bytes of UTF-8) repeated, the last n % 10 bytes "x".

local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
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

local generated = {}
function interop.gen(kind, n)
  local key = kind .. n
  local s = generated[key]
  if not s then
    if kind == "text" then
      s = TEXT_UNIT:rep(n // 10) .. ("x"):rep(n % 10)
    else
      s = BINARY_UNIT:rep(n // 256 + 1):sub(1, n)
    end
    generated[key] = s
  end
  return s
end
local gen = interop.gen

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
local function observations(p)
  local list = {}
  for line in p:stdout():gmatch("[^\n]+") do
    local obs = json.decode(line)
    if type(obs) == "table" then list[#list + 1] = obs end
  end
  return list
end

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

-- Run a peer client against url; moonws runs while it does.
local function run_peer_client(peer, url, steps)
  local argv = { table.unpack(peer.argv) }
  argv[#argv + 1] = "client"
  argv[#argv + 1] = url
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
    local c = { path = request.path, events = {}, messages = {}, fragment_size = o.fragment_size }
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

---------------------------------------------------------------- the cases

-- E: the spec file's environment (describe, it, setup, finally ...);
-- peer = { name = ..., argv = { program, script } }.
function interop.run(E, peer)
  local describe, it, setup, teardown = E.describe, E.it, E.setup, E.teardown
  local function finally(fn) return E.finally(fn) end -- exists only while a case runs

  describe(peer.name .. ": moonws client -> peer server", function()
    local server, base

    setup(function()
      local argv = { table.unpack(peer.argv) }
      argv[#argv + 1] = "server"
      server = process.start(argv, 180)
      base = ("ws://127.0.0.1:%d"):format(server:port(helpers.idle))
    end)

    teardown(function()
      if server then server:cleanup() end
    end)

    -- Coroutine style straight from the main thread.
    local function connect(path, opts)
      local ws, msg, name = moonws.connect(base .. path, opts or CONNECT)
      assert.is_truthy(ws, ("connect failed: %s (%s)\n%s"):format(msg, name, transcript(server)))
      finally(function() ensure_closed(ws) end)
      return ws
    end

    local function open_events(path, opts, on)
      local t = event_client(base .. path, opts, on)
      finally(function() ensure_closed(t.ws) end)
      return t
    end

    local function wait_closed(t)
      helpers.run_until(function() return t.close ~= nil end, 15, "onclose")
    end

    describe("messages echo byte-exact", function()
      for _, n in ipairs(interop.SIZES) do
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

      for _, n in ipairs(interop.SIZES) do
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
          local ws = assert(moonws.connect(base .. tag("frag"), CONNECT))
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
          local ws = connect(tag("fragsize"), { timeout = 10, fragment_size = 777 })
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
        local t = event_client(base .. path, CONNECT, {
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
          local ws = assert(moonws.connect(base .. path, CONNECT))
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

    describe("abnormal closure", function()
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
    end)
  end)

  describe(peer.name .. ": peer client -> moonws server", function()
    -- Start a moonws server, run the peer client's steps against it, wait
    -- until the server saw the connection end; returns the peer's
    -- observations, the server's record of the connection and a transcript.
    local function scenario(style, opts, path, steps)
      local srv, conns = moonws_server(style, opts)
      finally(function() srv:close() end)
      local obs, text = run_peer_client(peer, ("ws://127.0.0.1:%d%s"):format(srv.port, path), steps)
      local ok = pcall(helpers.run_until, function()
        local c = conns[1]
        return c and c.close and (style ~= "coroutine" or c.ended)
      end, 10)
      assert.is_true(ok, "the moonws server saw no end of the connection\n" .. text)
      assert.are.equal(1, #conns, "connections")
      return obs, conns[1], text
    end

    local CLEAN_1000 = { code = 1000, reason = "", wasClean = true }

    describe("messages echo byte-exact", function()
      for _, kind in ipairs(KINDS) do
        local style = kind == "text" and "coroutine" or "events"
        for _, n in ipairs(interop.SIZES) do
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

    describe("abnormal closure", function()
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
    end)
  end)
end

return interop

-- wss:// end to end (docs/API.md "TLS"): a moonws client
-- against a moonws server, with throwaway certificates from
-- spec.support.certs.  Verification by name and by IP, every way it must
-- fail (wrong name, unknown CA, expired, self-signed), mutual TLS, bad
-- server certificates at listen, slow TLS clients that must not stall the
-- server, big messages, and both ways of ending a connection.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local rawpeer = require "spec.support.rawpeer"
local certs = require "spec.support.certs"
local core = require "moonws.core"

local MiB = 1024 * 1024

local c -- the certificates (certs.get())

-- A TLS echo server; opts.tls defaults to the CA-signed localhost
-- certificate.  Returns the server and what it saw: { handed = n, logs =
-- { event log per handed-over socket }, sockets = { ... } }.
local function echo_server(tls, opts)
  opts = opts or {}
  opts.port = 0
  opts.tls = tls or { cert = c.server_cert, key = c.server_key }
  local srv = assert(moonws.listen(opts))
  local seen = { handed = 0, logs = {}, sockets = {} }
  srv.onconnection = function(ws)
    seen.handed = seen.handed + 1
    local log = {}
    seen.logs[#seen.logs + 1], seen.sockets[#seen.sockets + 1] = log, ws
    rawpeer.record(ws, log)
    ws.onmessage = function(e)
      log[#log + 1] = { kind = "message", data = e.data, binary = e.binary }
      ws:send(e.data, e.binary and "binary" or "text")
    end
  end
  return srv, seen
end

-- Open a client to url, send "ping me", close with 1000 "done" when the
-- echo comes, and wait for the client's onclose.  Returns its event log
-- and the socket.
local function echo_once(url, tls_opts)
  local ws = moonws.new(url, { tls = tls_opts })
  local log = {}
  rawpeer.record(ws, log)
  ws.onopen = function()
    log[#log + 1] = { kind = "open" }
    ws:send("ping me")
  end
  ws.onmessage = function(e)
    log[#log + 1] = { kind = "message", data = e.data, binary = e.binary }
    ws:close(1000, "done")
  end
  helpers.run_until(function() return rawpeer.count_closes(log) > 0 end, 5, "the client's onclose")
  return log, ws
end

-- A client that must fail: the event log after its onclose.
local function failing_client(url, tls_opts)
  local ws = moonws.new(url, { tls = tls_opts })
  local log = {}
  rawpeer.record(ws, log)
  helpers.run_until(function() return rawpeer.count_closes(log) > 0 end, 5, "the client's onclose")
  helpers.idle(0.1) -- room for a second (wrong) onclose
  return log, ws
end

local function url(host, srv) return ("wss://%s:%d/"):format(host, srv.port) end

-- A verification failure: onerror "tls" with OpenSSL's reason, then one
-- onclose 1015 (reported, never sent: RFC 6455 7.4.1), nothing else.
local function assert_tls_failure(log, reason)
  assert.same({ "error", "close" }, rawpeer.kinds(log))
  assert.equal("tls", log[1].error)
  assert.equal("TLS handshake with localhost failed: certificate verify failed: " .. reason,
    log[1].message)
  assert.same({ 1015, "", false }, { log[2].code, log[2].reason, log[2].wasClean })
end

setup(function() c = certs.get() end)
teardown(function() certs.cleanup() end)

describe("wss:// verification", function()
  it("verified by host name: wss://localhost with the CA in tls.cafile", function()
    local srv, seen = echo_server()
    local log, ws = echo_once(url("localhost", srv), { cafile = c.ca })
    srv:close()
    assert.same({ "open", "message", "close" }, rawpeer.kinds(log))
    assert.equal("ping me", log[2].data)
    -- The server's reply echoes code and reason (as Node's ws does).
    assert.same({ 1000, "done", true }, { log[3].code, log[3].reason, log[3].wasClean })
    assert.equal(1, seen.handed)
    assert.equal("ping me", seen.logs[1][1].data)
    assert.same({ 1000, "done", true }, { seen.logs[1][2].code, seen.logs[1][2].reason,
      seen.logs[1][2].wasClean })
    assert.equal(("wss://localhost:%d/"):format(srv.port), seen.sockets[1].url)
    assert.equal(url("localhost", srv), ws.url)
  end)

  it("verified by IP address: wss://127.0.0.1 matches the IP subjectAltName", function()
    local srv, seen = echo_server()
    local log = echo_once(url("127.0.0.1", srv), { cafile = c.ca })
    srv:close()
    assert.same({ "open", "message", "close" }, rawpeer.kinds(log))
    assert.equal("ping me", log[2].data)
    assert.is_true(log[3].wasClean)
    assert.equal(1, seen.handed)
  end)

  it("a certificate for another name fails: hostname mismatch, 1015", function()
    local srv, seen = echo_server()
    local log, ws = failing_client(url("localhost", srv),
      { cafile = c.ca, servername = "wrong.example" })
    srv:close()
    assert_tls_failure(log, "hostname mismatch")
    assert.equal(moonws.CLOSED, ws.readyState)
    assert.equal(0, seen.handed)
  end)

  it("a CA the client does not trust fails (cafile = another CA)", function()
    local srv, seen = echo_server()
    local log = failing_client(url("localhost", srv), { cafile = c.other_ca })
    srv:close()
    assert_tls_failure(log, "unable to get local issuer certificate")
    assert.equal(0, seen.handed)
  end)

  it("the default system trust store does not trust the test CA", function()
    local srv, seen = echo_server()
    local log = failing_client(url("localhost", srv), nil)
    srv:close()
    assert_tls_failure(log, "unable to get local issuer certificate")
    assert.equal(0, seen.handed)
  end)

  it("an expired certificate fails", function()
    local srv, seen = echo_server { cert = c.expired_cert, key = c.expired_key }
    local log = failing_client(url("localhost", srv), { cafile = c.ca })
    srv:close()
    assert_tls_failure(log, "certificate has expired")
    assert.equal(0, seen.handed)
  end)

  it("a self-signed certificate fails", function()
    local srv, seen = echo_server { cert = c.self_cert, key = c.self_key }
    local log = failing_client(url("localhost", srv), { cafile = c.ca })
    srv:close()
    assert_tls_failure(log, "self-signed certificate")
    assert.equal(0, seen.handed)
  end)

  it("moonws.connect returns nil, message, 'tls' on a failed verification", function()
    local srv = echo_server { cert = c.self_cert, key = c.self_key }
    local ws, message, name = moonws.connect(url("localhost", srv), { tls = { cafile = c.ca } })
    srv:close()
    assert.is_nil(ws)
    assert.equal("tls", name)
    assert.equal("TLS handshake with localhost failed: certificate verify failed: "
      .. "self-signed certificate", message)
  end)

  it("verify = false connects to the self-signed server", function()
    local srv, seen = echo_server { cert = c.self_cert, key = c.self_key }
    local log = echo_once(url("localhost", srv), { verify = false })
    srv:close()
    assert.same({ "open", "message", "close" }, rawpeer.kinds(log))
    assert.equal("ping me", log[2].data)
    assert.equal(1, seen.handed)
  end)
end)

describe("mutual TLS (server verify_client)", function()
  local function mtls_server()
    return echo_server { cert = c.server_cert, key = c.server_key, cafile = c.ca,
      verify_client = true }
  end

  it("accepts a client certificate signed by its CA", function()
    local srv, seen = mtls_server()
    local log = echo_once(url("localhost", srv),
      { cafile = c.ca, cert = c.client_cert, key = c.client_key })
    srv:close()
    assert.same({ "open", "message", "close" }, rawpeer.kinds(log))
    assert.equal("ping me", log[2].data)
    assert.is_true(log[3].wasClean)
    assert.equal(1, seen.handed)
  end)

  -- TLS 1.3: the client's side of the handshake completes before the server
  -- checks the (missing) certificate, so the client learns of the refusal
  -- from the server's alert on its first read; it is still a failed TLS
  -- handshake: "tls" and 1015.
  it("refuses a client without a certificate; the server hands over nothing", function()
    local srv, seen = mtls_server()
    local log = failing_client(url("localhost", srv), { cafile = c.ca })
    srv:close()
    assert.same({ "error", "close" }, rawpeer.kinds(log))
    assert.equal("tls", log[1].error)
    assert.equal("read: tlsv13 alert certificate required", log[1].message)
    assert.same({ 1015, false }, { log[2].code, log[2].wasClean })
    assert.equal(0, seen.handed)
  end)

  it("refuses a client certificate from another CA", function()
    local srv, seen = mtls_server()
    local log = failing_client(url("localhost", srv),
      { cafile = c.ca, cert = c.self_cert, key = c.self_key })
    srv:close()
    assert.same({ "error", "close" }, rawpeer.kinds(log))
    assert.equal("tls", log[1].error)
    assert.equal("read: tlsv1 alert unknown ca", log[1].message)
    assert.same({ 1015, false }, { log[2].code, log[2].wasClean })
    assert.equal(0, seen.handed)
  end)
end)

describe("listen with a bad certificate", function()
  it("a missing certificate file -> nil, message, 'tls'", function()
    local srv, message, name = moonws.listen { port = 0,
      tls = { cert = c.dir .. "/missing.pem", key = c.server_key } }
    assert.is_nil(srv)
    assert.equal("tls", name)
    assert.equal("cannot load certificate " .. c.dir .. "/missing.pem: no such file", message)
  end)

  it("a missing key file -> nil, message, 'tls'", function()
    local srv, message, name = moonws.listen { port = 0,
      tls = { cert = c.server_cert, key = c.dir .. "/missing.key" } }
    assert.is_nil(srv)
    assert.equal("tls", name)
    assert.equal("cannot load private key " .. c.dir .. "/missing.key: no such file", message)
  end)

  it("a key that does not match the certificate -> nil, message, 'tls'", function()
    local srv, message, name = moonws.listen { port = 0,
      tls = { cert = c.server_cert, key = c.client_key } }
    assert.is_nil(srv)
    assert.equal("tls", name)
    assert.equal(("private key does not match the certificate (key %s, certificate %s)")
      :format(c.client_key, c.server_cert), message)
  end)
end)

describe("slow TLS clients", function()
  it("a silent client and a half ClientHello do not block an echo; both are dropped after timeout",
    function()
    local TIMEOUT = 1.5
    local srv, seen = echo_server(nil, { timeout = TIMEOUT })
    local silent = rawpeer.client(srv.port, {
      { mark = "connected" }, { read_frames = { ["until"] = "eof", timeout = 8 } } })
    local half = rawpeer.client(srv.port, {
      { send_client_hello = { fraction = 0.5 } },
      { read_frames = { ["until"] = "eof", timeout = 8 } } })
    finally(function() silent:cleanup(); half:cleanup(); srv:close() end)
    local stalled_at = {}
    rawpeer.wait_event(silent, "mark", 5, helpers.idle)
    stalled_at.silent = core.now()
    rawpeer.wait_event(half, "sent", 5, helpers.idle)
    stalled_at.half = core.now()
    local sent = rawpeer.select(rawpeer.events(half), "sent")[1]
    assert.is_true(sent.bytes > 100 and sent.bytes < sent.of, "half a ClientHello")

    -- A full exchange while both stall the server's TLS handshake.
    local t0 = core.now()
    local log = echo_once(url("localhost", srv), { cafile = c.ca })
    local took = core.now() - t0
    assert.same({ "open", "message", "close" }, rawpeer.kinds(log))
    assert.equal("ping me", log[2].data)
    assert.is_true(took < TIMEOUT / 2, ("the echo took %.3fs"):format(took))
    assert.same({}, rawpeer.select(rawpeer.events(silent), "eof"))
    assert.same({}, rawpeer.select(rawpeer.events(half), "eof"))

    -- Then the server drops both at its handshake timeout, not before.
    local dropped = {}
    helpers.run_until(function()
      for name, p in pairs { silent = silent, half = half } do
        if not dropped[name] and #rawpeer.select(rawpeer.events(p), "eof") > 0 then
          dropped[name] = core.now() - stalled_at[name]
        end
      end
      return dropped.silent and dropped.half
    end, 5, "the stalled clients to be dropped")
    for name, after in pairs(dropped) do
      assert.is_true(after > TIMEOUT - 0.2 and after < TIMEOUT + 1,
        ("%s dropped after %.2fs"):format(name, after))
    end
    for _, p in ipairs { silent, half } do
      local events = rawpeer.finish(p, 5, helpers.idle)
      assert.same({}, rawpeer.select(events, "frame")) -- nothing but the end
    end
    assert.equal(1, seen.handed)
  end)
end)

describe("wss:// data and closing", function()
  -- 16 MiB of text (valid UTF-8: "a" and a 3-byte euro sign) and of binary.
  local TEXT = string.rep("a\u{20AC}", 4 * MiB)
  local BINARY
  do
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    BINARY = string.rep(table.concat(bytes), 16 * MiB // 256)
  end

  it("echoes 16 MiB text and binary both ways; bufferedAmount rises then drains to 0", function()
    assert.equal(16 * MiB, #TEXT)
    assert.equal(16 * MiB, #BINARY)
    local srv = assert(moonws.listen { port = 0,
      tls = { cert = c.server_cert, key = c.server_key } })
    local server_ws, server_buffered = nil, {}
    srv.onconnection = function(ws)
      server_ws = ws
      ws.onmessage = function(e)
        ws:send(e.data, e.binary and "binary" or "text")
        server_buffered[#server_buffered + 1] = ws.bufferedAmount
      end
    end
    local ws = moonws.new(url("localhost", srv), { tls = { cafile = c.ca } })
    local got, client_buffered = {}, {}
    ws.onopen = function()
      ws:send(TEXT)
      client_buffered[1] = ws.bufferedAmount
      ws:send(BINARY, "binary")
      client_buffered[2] = ws.bufferedAmount
    end
    ws.onmessage = function(e) got[#got + 1] = e end
    helpers.run_until(function() return #got == 2 end, 20, "two 16 MiB echoes")
    srv:close()
    assert.is_true(got[1].data == TEXT, "the text came back changed")
    assert.is_false(got[1].binary)
    assert.is_true(got[2].data == BINARY, "the binary came back changed")
    assert.is_true(got[2].binary)
    assert.is_true(client_buffered[1] > 0, "client bufferedAmount after the first send")
    assert.is_true(client_buffered[2] > client_buffered[1], "and more after the second")
    assert.is_true(server_buffered[1] > 0, "server bufferedAmount after its first echo")
    assert.is_true(server_buffered[2] > 0, "server bufferedAmount after its second echo")
    assert.equal(moonws.OPEN, ws.readyState)
    assert.equal(0, ws.bufferedAmount)
    assert.equal(0, server_ws.bufferedAmount)
    ws:close()
  end)

  local function pair()
    local srv, seen = echo_server()
    local ws = moonws.new(url("localhost", srv), { tls = { cafile = c.ca } })
    local log = {}
    rawpeer.record(ws, log)
    helpers.run_until(function() return seen.handed == 1 and ws.readyState == moonws.OPEN end,
      5, "the connection")
    srv:close()
    return ws, log, seen.sockets[1], seen.logs[1]
  end

  local function both_closed(log, slog)
    helpers.run_until(function()
      return rawpeer.count_closes(log) > 0 and rawpeer.count_closes(slog) > 0
    end, 5, "both onclose")
    helpers.idle(0.1)
  end

  -- Each onclose reports the peer's close frame: the closing side gets the
  -- echo (the code, no reason: RFC 6455 5.5.1), the other side the reason.
  it("a client close is clean on both sides, code and reason as sent", function()
    local ws, log, sws, slog = pair()
    ws:close(4001, "client bye")
    both_closed(log, slog)
    assert.same({ "open", "close" }, rawpeer.kinds(log))
    assert.same({ 4001, "client bye", true }, { log[2].code, log[2].reason, log[2].wasClean })
    assert.same({ "close" }, rawpeer.kinds(slog))
    assert.same({ 4001, "client bye", true }, { slog[1].code, slog[1].reason, slog[1].wasClean })
    assert.same({ 4001, "client bye" }, { sws.closeCode, sws.closeReason })
  end)

  it("a server close is clean on both sides, code and reason as sent", function()
    local ws, log, sws, slog = pair()
    sws:close(4002, "server bye")
    both_closed(log, slog)
    assert.same({ "open", "close" }, rawpeer.kinds(log))
    assert.same({ 4002, "server bye", true }, { log[2].code, log[2].reason, log[2].wasClean })
    assert.same({ "close" }, rawpeer.kinds(slog))
    assert.same({ 4002, "server bye", true }, { slog[1].code, slog[1].reason, slog[1].wasClean })
    assert.same({ 4002, "server bye" }, { ws.closeCode, ws.closeReason })
  end)

  it("terminate() by the client: 1006 unclean at once; the server sees the TCP drop", function()
    local ws, log, _, slog = pair()
    ws:terminate()
    assert.same({ "open", "close" }, rawpeer.kinds(log)) -- at once, no onerror
    assert.same({ 1006, "", false }, { log[2].code, log[2].reason, log[2].wasClean })
    both_closed(log, slog)
    assert.same({ "error", "close" }, rawpeer.kinds(slog))
    assert.equal("io", slog[1].error)
    assert.same({ 1006, false }, { slog[2].code, slog[2].wasClean })
    assert.equal(1, rawpeer.count_closes(log))
  end)

  it("terminate() by the server: 1006 unclean; the client sees the TCP drop", function()
    local ws, log, sws, slog = pair()
    sws:terminate()
    assert.same({ "close" }, rawpeer.kinds(slog))
    assert.same({ 1006, "", false }, { slog[1].code, slog[1].reason, slog[1].wasClean })
    both_closed(log, slog)
    assert.same({ "open", "error", "close" }, rawpeer.kinds(log))
    assert.equal("io", log[2].error)
    assert.same({ 1006, false }, { log[3].code, log[3].wasClean })
    assert.equal(moonws.CLOSED, ws.readyState)
  end)
end)

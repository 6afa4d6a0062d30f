-- Diagnostics: options.log traces each connection's life with the peer's
-- address, and error messages say what failed, why, and the close code the
-- peer is sent.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local rawpeer = require "spec.support.rawpeer"

-- A server whose log lines and records are collected in `server_log`.
local function logging_server(extra)
  local server_log = {}
  local opts = { port = 0, log = function(line, record)
    server_log[#server_log + 1] = { line = line, record = record }
  end }
  for k, v in pairs(extra or {}) do opts[k] = v end
  local srv = assert(moonws.listen(opts))
  srv.onconnection = function(ws) ws.onmessage = function(e) ws:send(e.data) end end
  return srv, server_log
end

local function events_of(entries)
  local out = {}
  for i, e in ipairs(entries) do out[i] = e.record.event end
  return out
end

describe("options.log", function()
  it("traces a client's and a server's connection from start to close", function()
    local srv, server_log = logging_server()
    local client_log = {}
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port .. "/room", {
      log = function(line, record) client_log[#client_log + 1] = { line = line, record = record } end,
    }))
    assert(ws:send("hi"))
    assert.equal("hi", ws:receive(5))
    ws:close(4000, "bye")
    helpers.run_until(function() return #server_log >= 3 and ws.readyState == 3 end, 10)
    srv:close()

    assert.same({ "connecting", "connected", "open", "closed" }, events_of(client_log))
    assert.same({ "accepted", "open", "closed" }, events_of(server_log))
    -- The client names the server's address, the server the client's.
    local server_addr = "127.0.0.1:" .. srv.port
    assert.equal(server_addr, client_log[2].record.peer)
    assert.matches("^127%.0%.0%.1:%d+$", server_log[1].record.peer)
    assert.not_equal(server_addr, server_log[1].record.peer)
    -- The client reports the server's answering close frame, which echoes it.
    assert.equal("moonws client " .. server_addr .. " closed: code 4000 \"bye\", clean",
      client_log[4].line)
    local closed = server_log[3].record
    assert.same({ 4000, "bye", true }, { closed.code, closed.reason, closed.clean })
    assert.equal("ws://127.0.0.1:" .. srv.port .. "/room", client_log[3].record.url)
  end)

  it("logs a refused handshake on both sides, with the status", function()
    local srv, server_log = logging_server {
      handshake = function() return false, 403, "not on the list" end,
    }
    local client_lines = {}
    local ws, message, name = moonws.connect("ws://127.0.0.1:" .. srv.port .. "/", {
      log = function(line) client_lines[#client_lines + 1] = line end,
    })
    helpers.run_until(function() return #server_log >= 3 end, 10)
    srv:close()
    assert.is_nil(ws)
    assert.equal("handshake: server answered 403 Forbidden", message)
    assert.equal("handshake", name)
    assert.matches(" error: handshake: server answered 403 Forbidden$", client_lines[3])
    assert.same({ "accepted", "refused", "closed" }, events_of(server_log))
    assert.matches(" refused: answered 403: not on the list$", server_log[2].line)
    assert.equal(403, server_log[2].record.code)
  end)

  it("log = true writes the lines to stderr", function()
    local p = process.start({ "lua5.4", "-e", [[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = "./?.so;" .. package.cpath
      local moonws = require "moonws"
      local srv = assert(moonws.listen { port = 0, log = true })
      srv.onconnection = function(ws) ws:close(1000, "done") end
      local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port, { log = true }))
      ws:receive(5)
      srv:close()
    ]] }, 20)
    assert.is_true(p:wait_exit(15))
    local err, status = p:stderr(), p:exit_status()
    p:cleanup()
    assert.equal(0, status, err)
    assert.matches("moonws server 127%.0%.0%.1:%d+ accepted: on port %d+\n", err)
    assert.matches("moonws client 127%.0%.0%.1:%d+ open: ws://127%.0%.0%.1:%d+ ", err)
    assert.matches("moonws client 127%.0%.0%.1:%d+ closed: code 1000 \"done\", clean\n", err)
  end)

  it("an error in the log function is reported, not raised into moonws", function()
    local reported = {}
    local srv = assert(moonws.listen { port = 0, log = function() error("sink broke") end })
    srv.onconnection = function(ws) ws:close() end
    local old_report = require("moonws.loop").report
    require("moonws.loop").report = function(m) reported[#reported + 1] = m end
    local ok, ws = pcall(moonws.connect, "ws://127.0.0.1:" .. srv.port)
    helpers.run_until(function() return #reported >= 1 end, 10)
    require("moonws.loop").report = old_report
    srv:close()
    assert.is_true(ok)
    assert.truthy(ws)
    assert.matches("error in the log function: .*sink broke", reported[1])
  end)

  it("a wrong log value raises at the call", function()
    assert.has_error(function() moonws.new("ws://127.0.0.1:1", { log = "yes" }) end,
      "option 'log' must be true, false or a function(line, record)")
  end)
end)

-- Run a raw client (spec/peers/raw_peer.py) that sends `frame` after the
-- handshake against a server with opts; returns the close frame the peer
-- got, the server socket's onerror events and its log records.
local function violate(frame, opts)
  local srv, server_log = logging_server(opts)
  local errors = {}
  srv.onconnection = function(ws)
    ws.onerror = function(e) errors[#errors + 1] = e end
  end
  local p = rawpeer.client(srv.port, { { handshake = {} }, { send_frame = frame },
    { read_frames = { ["until"] = "eof", timeout = 5 } } })
  local ok, events = pcall(rawpeer.finish, p, 15, helpers.idle)
  helpers.run_until(function() return #errors > 0 end, 5, "onerror")
  srv:close()
  p:cleanup()
  assert(ok, events)
  local close = rawpeer.select(events, "frame", 8)[1]
  local logged
  for _, e in ipairs(server_log) do if e.record.event == "error" then logged = e.record end end
  return close, errors, logged
end

describe("error messages", function()
  it("a frame over max_payload: what, the sizes, and the close code sent", function()
    local close, errors, logged = violate({ opcode = 2, payload_size = 2 * 1024 * 1024 },
      { max_payload = 1024 * 1024 })
    assert.equal(1009, close.close_code)
    assert.equal("payload of 2 MiB exceeds max_payload 1 MiB", close.close_reason)
    assert.equal("frame: payload of 2 MiB exceeds max_payload 1 MiB; closing with 1009",
      errors[1].message)
    assert.same({ "too_big", 1009 }, { errors[1].error, errors[1].code })
    assert.equal(errors[1].message, logged.message)
    assert.same({ "too_big", 1009 }, { logged.error, logged.code })
  end)

  it("a frame over max_frame says so, in bytes when not a whole KiB", function()
    local close, errors = violate({ opcode = 2, payload_size = 1500 }, { max_frame = 1000 })
    assert.equal(1009, close.close_code)
    assert.equal("frame: payload of 1500 bytes exceeds max_frame 1000 bytes; closing with 1009",
      errors[1].message)
  end)

  it("invalid UTF-8 names the rule and 1007", function()
    local close, errors = violate { opcode = 1, payload_hex = "fffe" }
    assert.equal(1007, close.close_code)
    assert.equal("frame: invalid UTF-8 in text message; closing with 1007", errors[1].message)
    assert.equal("invalid_data", errors[1].error)
  end)
end)

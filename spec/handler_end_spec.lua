-- When a server's code for a connection ends, the connection ends too
-- (issue 16), as Python's websockets does: moonws.serve's handler that
-- returns closes with 1000, one that raises closes with 1011 and the
-- error is reported; server.onconnection that raises closes with 1011.
-- Before, the peer hung until a garbage collection sent 1005.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local core = require "moonws.core"

-- Connect to srv; the client's receive() result, close code and how long
-- the close took to come.
local function close_seen(srv)
  local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port .. "/"))
  local started = core.now()
  local data, message, name = ws:receive(3)
  return { data = data, message = message, name = name, code = ws.closeCode,
    reason = ws.closeReason, seconds = core.now() - started }
end

-- A client of srv sees a prompt 1011, and one report matching pattern.
local function closed_1011_reported(srv, reports, pattern)
  local seen = close_seen(srv)
  srv:close()
  assert.equal(1011, seen.code)
  assert.is_true(seen.seconds < 1)
  assert.equal(1, #reports)
  assert.equal("handler", reports[1].error)
  assert.matches(pattern, reports[1].message)
end

-- Run body with moonws.onerror collecting reports into the list it gets.
local function with_reports(body)
  local reports, saved = {}, moonws.onerror
  moonws.onerror = function(e) reports[#reports + 1] = e end
  local ok, err = pcall(body, reports)
  moonws.onerror = saved
  if not ok then error(err, 0) end
end

describe("moonws.serve: the handler's end ends the connection", function()
  it("a handler that returns closes with 1000", function()
    local srv = assert(moonws.serve({ port = 0 }, function() end))
    local seen = close_seen(srv)
    srv:close()
    assert.is_nil(seen.data)
    assert.equal("closed", seen.name)
    assert.equal(1000, seen.code)
    assert.is_true(seen.seconds < 1)
  end)

  it("a handler that raises closes with 1011, and the error is reported", function()
    with_reports(function(reports)
      local srv = assert(moonws.serve({ port = 0 }, function() error("handler broke") end))
      closed_1011_reported(srv, reports, "error in serve handler: .*handler broke")
    end)
  end)

  it("the socket's own onerror takes the handler's error when it has one", function()
    with_reports(function(reports)
      local events = {}
      local srv = assert(moonws.serve({ port = 0 }, function(ws)
        ws.onerror = function(e) events[#events + 1] = e end
        error("handler broke")
      end))
      local seen = close_seen(srv)
      srv:close()
      assert.equal(1011, seen.code)
      assert.equal(0, #reports)
      assert.equal(1, #events)
      assert.equal("handler", events[1].error)
    end)
  end)

  it("a handler that closed the socket itself keeps its code", function()
    local srv = assert(moonws.serve({ port = 0 }, function(ws) ws:close(4001, "mine") end))
    local seen = close_seen(srv)
    srv:close()
    assert.same({ 4001, "mine" }, { seen.code, seen.reason })
  end)
end)

describe("server.onconnection", function()
  it("that raises closes with 1011, and the error is reported", function()
    with_reports(function(reports)
      local srv = assert(moonws.listen { port = 0 })
      srv.onconnection = function() error("onconnection broke") end
      closed_1011_reported(srv, reports, "error in onconnection handler: .*onconnection broke")
    end)
  end)

  it("that returns leaves the connection to its handlers (event style)", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(ws) ws.onmessage = function(e) ws:send(e.data) end end
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port .. "/"))
    assert(ws:send("still open"))
    assert.equal("still open", ws:receive(3))
    ws:close()
    srv:close()
  end)
end)

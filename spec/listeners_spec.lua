-- addEventListener / removeEventListener (issue 16), with the same event
-- objects as the handler fields and the browser's order: a handler field
-- is one more listener, placed where it was first assigned.  The order is
-- checked against Chromium itself running the same steps on its own
-- WebSocket.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"

local track, cleanup = process.tracker()
after_each(cleanup)

-- One sequence of listener changes, written twice: for a browser page and
-- for moonws.  Messages "m1", "m2" then a close: the names called, in order.
local PAGE = [[<!doctype html>
<html><head><meta charset="utf-8"><title>moonws listeners</title></head><body><script>
  window.result = { opened: false, messages: [], closed: null };
  const seen = [];
  const socket = new WebSocket("ws://" + location.host + "/ws");
  const L1 = (e) => { seen.push("L1:" + e.data); socket.removeEventListener("message", L4); };
  const L2 = (e) => seen.push("L2:" + e.data);
  const L3 = (e) => seen.push("L3:" + e.data);
  const L4 = (e) => seen.push("L4:" + e.data);
  socket.addEventListener("message", L1);
  socket.onmessage = (e) => seen.push("A:" + e.data);
  socket.addEventListener("message", L2);
  socket.onmessage = (e) => seen.push("B:" + e.data);
  socket.addEventListener("message", L1);
  socket.addEventListener("message", L3, { once: true });
  socket.removeEventListener("message", L2);
  socket.onmessage = null;
  socket.onmessage = (e) => seen.push("C:" + e.data);
  socket.addEventListener("message", L4);
  socket.addEventListener("close", (event) => {
    result.messages.push(seen.join(" "));
    result.closed = { code: event.code, reason: event.reason, wasClean: event.wasClean };
  });
</script></body></html>
]]

local function same_steps(ws, seen)
  local L1, L4
  L1 = function(e) seen[#seen + 1] = "L1:" .. e.data; ws:removeEventListener("message", L4) end
  local L2 = function(e) seen[#seen + 1] = "L2:" .. e.data end
  local L3 = function(e) seen[#seen + 1] = "L3:" .. e.data end
  L4 = function(e) seen[#seen + 1] = "L4:" .. e.data end
  ws:addEventListener("message", L1)
  ws.onmessage = function(e) seen[#seen + 1] = "A:" .. e.data end
  ws:addEventListener("message", L2)
  ws.onmessage = function(e) seen[#seen + 1] = "B:" .. e.data end
  ws:addEventListener("message", L1)
  ws:addEventListener("message", L3, { once = true })
  ws:removeEventListener("message", L2)
  ws.onmessage = nil
  ws.onmessage = function(e) seen[#seen + 1] = "C:" .. e.data end
  ws:addEventListener("message", L4)
end

local EXPECTED = "L1:m1 L3:m1 C:m1 L1:m2 C:m2"

-- A server that serves PAGE and sends m1, m2, then closes 4001.
local function server()
  local srv = assert(moonws.listen { port = 0, request = function(req)
    if req.path == "/" then return 200, { ["Content-Type"] = "text/html" }, PAGE end
  end })
  srv.onconnection = function(ws)
    ws:send("m1")
    ws:send("m2")
    ws:close(4001, "done")
  end
  return srv
end

describe("listeners", function()
  it("moonws calls them in the browser's order", function()
    local srv = server()
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port .. "/ws")
    local seen, closed = {}, false
    same_steps(ws, seen)
    ws:addEventListener("close", function() closed = true end)
    helpers.run_until(function() return closed end, 5)
    srv:close()
    assert.equal(EXPECTED, table.concat(seen, " "))
  end)

  it("Chromium calls them in that order too #host", function()
    local srv = server()
    local p = track(process.start({ "node", "spec/peers/browser.js", "server-close",
      ("http://127.0.0.1:%d/"):format(srv.port) }, 90))
    local ok = p:wait_exit(75, helpers.idle)
    srv:close()
    assert(ok, "browser.js did not finish")
    assert.equal(0, p:exit_status(), p:stdout() .. p:stderr())
    assert.truthy(p:stdout():find("MESSAGE " .. EXPECTED .. "\n", 1, true), p:stdout())
  end)

  it("every listener and the field get the same event table; errors do not stop the others", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s) s:send("hi") end
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port .. "/")
    local events, errors = {}, {}
    ws:addEventListener("message", function(e) events[#events + 1] = e; error("first fails") end)
    ws.onmessage = function(e) events[#events + 1] = e end
    ws:addEventListener("message", function(e) events[#events + 1] = e end)
    ws:addEventListener("error", function(e) errors[#errors + 1] = e end)
    helpers.run_until(function() return #events == 3 end, 5)
    ws:close()
    srv:close()
    assert.equal(events[1], events[2])
    assert.equal(events[2], events[3])
    assert.same({ "message", "hi", ws }, { events[1].type, events[1].data, events[1].target })
    assert.equal(1, #errors)
    assert.equal("handler", errors[1].error)
    assert.matches("first fails", errors[1].message)
  end)

  it("the handler field reads back what was assigned", function()
    local srv = assert(moonws.listen { port = 0 })
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port .. "/")
    local f = function() end
    ws:addEventListener("open", print)
    assert.is_nil(ws.onopen)
    ws.onopen = f
    assert.equal(f, ws.onopen)
    ws.onopen = nil
    assert.is_nil(ws.onopen)
    ws:terminate()
    srv:close()
  end)

  it("a socket with only listeners stays alive, as one with handler fields", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s) s:send("kept") end
    local got
    do
      local ws = moonws.new("ws://127.0.0.1:" .. srv.port .. "/")
      ws:addEventListener("message", function(e) got = e.data; e.target:close() end)
    end
    collectgarbage()
    collectgarbage()
    helpers.run_until(function() return got end, 5)
    srv:close()
    assert.equal("kept", got)
  end)

  it("misuse raises at the caller's line", function()
    local srv = assert(moonws.listen { port = 0 })
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port .. "/")
    assert.has_error(function() ws:addEventListener("mesage", print) end,
      "bad argument #1 to 'addEventListener' (an event type expected (open, message, close, "
        .. "error, ping, pong, drain), got mesage)")
    assert.has_error(function() ws:addEventListener("message", 42) end,
      "bad argument #2 to 'addEventListener' (function expected, got number)")
    assert.has_error(function() ws:removeEventListener("close") end,
      "bad argument #2 to 'removeEventListener' (function expected, got nil)")
    ws:terminate()
    srv:close()
  end)
end)

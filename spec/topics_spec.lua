-- Topics, publish and broadcast (moonws.topics, csrc/core/ws_fanout.c):
-- fan-out to 1,000 receivers that check every byte, with and without
-- compression; shared and own compressors side by side; except-sender;
-- the slow-receiver policies; membership dropped on close; metrics over
-- HTTP.  Across processes: spec/topics_relay_spec.lua.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"

local function listen(opts)
  opts.host, opts.port = "127.0.0.1", 0
  return assert(moonws.listen(opts))
end

-- n clients of port; each records what it receives (c.got) and its close.
local function connect_all(port, n, opts, path)
  local list, opened = {}, 0
  for i = 1, n do
    local ws = moonws.new(("ws://127.0.0.1:%d%s"):format(port, path or "/"), opts)
    local c = { ws = ws, got = {}, kinds = {} }
    ws.onopen = function() opened = opened + 1 end
    ws.onmessage = function(e)
      c.got[#c.got + 1] = e.data
      c.kinds[#c.kinds + 1] = e.binary and "binary" or "text"
    end
    ws.onclose = function(e) c.closed = { e.code, e.reason } end
    list[i] = c
  end
  helpers.run_until(function() return opened == n end, 60, n .. " clients open")
  return list
end

local function close_all(list)
  for _, c in ipairs(list) do c.ws:terminate() end
end

-- Messages of many sizes and kinds, each unlike the others.
local function messages()
  local list = {}
  local function add(data, kind) list[#list + 1] = { data = data, kind = kind } end
  add("hello", "text")
  add("", "text")
  add(("é€;"):rep(400) .. "1", "text") -- UTF-8 over the compression threshold
  for i = 1, 5 do
    local bytes = {}
    for j = 1, 16 * 1024 do bytes[j] = string.char((i * 31 + j * 7 + math.floor(j / 32)) % 256) end
    add(table.concat(bytes), "binary")
  end
  add(("0123456789abcdef"):rep(20000), "binary") -- 320 KiB: frames bigger than one read
  add(("x"):rep(64), "text")
  return list
end

local function check_all_got(list, sent, what)
  helpers.run_until(function()
    for _, c in ipairs(list) do if #c.got < #sent then return false end end
    return true
  end, 60, what)
  for i, c in ipairs(list) do
    assert.equal(#sent, #c.got, "receiver " .. i)
    for k, m in ipairs(sent) do
      if c.got[k] ~= m.data or c.kinds[k] ~= m.kind then
        error(("receiver %d: message %d differs (%d bytes, expected %d)"):format(i, k,
          #c.got[k], #m.data))
      end
    end
  end
end

describe("topics: fan-out to 1,000 receivers #slow", function()
  it("without compression: frames built once per message, every byte checked", function()
    local srv = listen {}
    finally(function() srv:close() end)
    srv.onconnection = function(ws) assert.is_true(ws:subscribe("feed")) end
    local list = connect_all(srv.port, 1000, { compression = false })
    finally(function() close_all(list) end)
    assert.equal(1000, srv:subscribers("feed"))
    local sent = messages()
    for _, m in ipairs(sent) do assert.equal(1000, srv:publish("feed", m.data, m.kind)) end
    check_all_got(list, sent, "every message at every receiver")
    local st = srv:stats()
    assert.equal(#sent, st.fanout_messages)
    assert.equal(#sent, st.frames_built)
    assert.equal(1000 * #sent, st.fanout_deliveries)
    assert.equal(0, st.shared_deflates + st.own_deflates + st.dropped)
    assert.equal(1000, st.connections_open)
  end)

  it("with compression and no server context takeover: one deflate per message for all", function()
    local srv = listen { compression = { server_no_context_takeover = true, threshold = 0 } }
    finally(function() srv:close() end)
    local sockets = {}
    srv.onconnection = function(ws)
      ws:subscribe("feed")
      sockets[#sockets + 1] = ws
    end
    local list = connect_all(srv.port, 1000, {})
    finally(function() close_all(list) end)
    assert.equal("permessage-deflate; server_no_context_takeover", list[1].ws.extensions)
    local sent = messages()
    for _, m in ipairs(sent) do srv:publish("feed", m.data, m.kind) end
    check_all_got(list, sent, "every message at every receiver")
    local st = srv:stats()
    -- "" is never compressed (RFC 7692 7.2.3.6 aside, nothing to gain)
    assert.equal(#sent - 1, st.shared_deflates)
    assert.equal(0, st.own_deflates)
    local one = sockets[1]:stats()
    assert.is_true(one.deflated_wire_out < one.deflated_out)
    assert.equal(one.deflated_out * 1000, st.deflated_out)
  end)
end)

describe("topics", function()
  it("a receiver with context takeover beside receivers without", function()
    local srv = listen { compression = { threshold = 0 } }
    finally(function() srv:close() end)
    local sockets = {}
    srv.onconnection = function(ws)
      ws:subscribe("feed")
      sockets[#sockets + 1] = ws
    end
    local shared = connect_all(srv.port, 3, { compression = { server_no_context_takeover = true } })
    local own = connect_all(srv.port, 1, {})
    finally(function() close_all(shared); close_all(own) end)
    assert.equal("permessage-deflate", own[1].ws.extensions)
    local line = ("the same words again and again; "):rep(8)
    local sent = { { data = line, kind = "text" }, { data = line, kind = "text" } }
    local before = {}
    for i, ws in ipairs(sockets) do before[i] = ws:stats().deflated_wire_out end
    srv:publish("feed", line)
    local mid = {}
    for i, ws in ipairs(sockets) do mid[i] = ws:stats().deflated_wire_out end
    srv:publish("feed", line)
    check_all_got(shared, sent, "the shared receivers")
    check_all_got(own, sent, "the receiver with takeover")
    local st = srv:stats()
    assert.equal(2, st.shared_deflates) -- once per message for the three
    assert.equal(2, st.own_deflates)    -- the fourth deflates its own
    -- With takeover the second copy refers back to the first: fewer bytes.
    local first = mid[4] - before[4]
    local second = sockets[4]:stats().deflated_wire_out - mid[4]
    assert.is_true(second < first, ("takeover: %d then %d bytes"):format(first, second))
    for i = 1, 3 do
      assert.equal(mid[i] - before[i], sockets[i]:stats().deflated_wire_out - mid[i])
    end
  end)

  it("ws:publish reaches every subscriber but the sender; broadcast reaches all", function()
    local srv = listen {}
    finally(function() srv:close() end)
    srv.onconnection = function(ws, req)
      if req.path == "/sub" then ws:subscribe("room") end
      ws.onmessage = function(e) ws:publish("room", e.data) end
    end
    local subs = connect_all(srv.port, 3, {}, "/sub")
    local outsider = connect_all(srv.port, 1, {}, "/other")
    finally(function() close_all(subs); close_all(outsider) end)
    subs[1].ws:send("from one")
    -- Two connections have no order between them (the poll() build reads
    -- them the other way round): the second goes once the first is out.
    helpers.run_until(function() return #subs[2].got == 1 and #subs[3].got == 1 end, 10, "one")
    outsider[1].ws:send("from outside")
    helpers.run_until(function() return #subs[2].got == 2 and #subs[3].got == 2 end, 10, "both")
    assert.equal(1, #subs[1].got)
    assert.same({ "from one", "from outside" }, subs[2].got)
    assert.same({ "from outside" }, subs[1].got)
    assert.equal(4, srv:broadcast("to all"))
    helpers.run_until(function() return #outsider[1].got == 1 end, 10, "the broadcast")
    assert.same({ "to all" }, outsider[1].got)
    helpers.run_until(function() return subs[1].got[2] == "to all" end, 10, "at a subscriber")
    -- The broadcast list follows sockets that come and go after the first.
    local late = connect_all(srv.port, 1, {}, "/late")
    finally(function() close_all(late) end)
    subs[3].ws:close()
    helpers.run_until(function() return srv:stats().connections_open == 4 end, 10, "the close")
    assert.equal(4, srv:broadcast("again"))
    helpers.run_until(function() return late[1].got[1] == "again" end, 10, "the late one")
  end)

  it("membership: topics(), unsubscribe, dropped on close; misuse raises", function()
    local srv = listen {}
    finally(function() srv:close() end)
    local sockets = {}
    srv.onconnection = function(ws)
      ws:subscribe("b")
      ws:subscribe("a")
      sockets[#sockets + 1] = ws
    end
    local list = connect_all(srv.port, 3, {})
    finally(function() close_all(list) end)
    local ws = sockets[1]
    assert.same({ "a", "b" }, ws:topics())
    assert.is_false(ws:subscribe("a"))
    assert.is_true(ws:unsubscribe("a"))
    assert.is_false(ws:unsubscribe("a"))
    assert.same({ "b" }, ws:topics())
    assert.equal(2, srv:subscribers("a"))
    list[2].ws:close(4001, "bye")
    helpers.run_until(function() return srv:subscribers("b") == 2 end, 10, "the close")
    assert.equal(1, srv:subscribers("a"))
    assert.equal(1, srv:stats().close_codes[4001])
    assert.equal(2, srv:publish("b", "x"))
    assert.has_error(function() srv:publish(1, "x") end)
    assert.has_error(function() srv:publish("b", "\255") end,
      "bad argument #2 to 'publish' (invalid UTF-8 in a text message (send it as binary))")
    assert.has_error(function() ws:publish("b", "x", "blob") end)
    assert.has_error(function() srv:broadcast({}) end)
    local client = list[1].ws
    assert.has_error(function() client:subscribe("a") end,
      "subscribe is for sockets of a moonws server (moonws.listen)")
    close_all(list)
    helpers.run_until(function() return srv:stats().connections_open == 0 end, 10, "all closed")
    assert.equal(0, srv:subscribers("b"))
    assert.equal(0, srv:stats().topics)
    assert.same({}, ws:topics())
    assert.same({ nil, "closed", "closed" }, { ws:subscribe("a") })
  end)
end)

-- A receiver that stops reading while the others read everything.
local function slow_receiver_run(policy)
  local limit = 256 * 1024
  local srv = listen { send_limit = limit, slow_receiver = policy }
  local sockets = {}
  srv.onconnection = function(ws, req)
    ws:subscribe("feed")
    sockets[req.path] = ws
  end
  local fast = connect_all(srv.port, 2, {}, "/fast")
  local slow = connect_all(srv.port, 1, {}, "/slow")[1]
  slow.ws:pause()
  local payload = ("p"):rep(64 * 1024 - 8)
  local peak, n = 0, 400 -- 25 MiB: more than the kernel's buffers hold
  for i = 1, n do
    srv:publish("feed", ("%08d"):format(i) .. payload)
    helpers.idle(0)
    local s = sockets["/slow"]
    if s.readyState == moonws.OPEN then peak = math.max(peak, s.bufferedAmount) end
  end
  helpers.run_until(function() return #fast[1].got == n and #fast[2].got == n end, 60,
    "the fast receivers")
  return srv, fast, slow, sockets["/slow"], peak, limit, n
end

describe("topics: slow receivers", function()
  it("drop: the slow one loses messages (counted), the others get all, memory bounded", function()
    local srv, fast, slow, s, peak, limit, n = slow_receiver_run("drop")
    finally(function() srv:close(); close_all(fast); slow.ws:terminate() end)
    assert.is_true(peak <= limit + 64 * 1024 + 14, "peak backlog " .. peak)
    local st = srv:stats()
    assert.is_true(st.dropped > 0)
    assert.equal(st.dropped, s:stats().dropped_out)
    slow.ws:resume()
    helpers.run_until(function() return #slow.got == n - st.dropped end, 30, "the rest")
    local last = 0
    for _, data in ipairs(slow.got) do -- what it got came in order
      local k = tonumber(data:sub(1, 8))
      assert.is_true(k > last)
      last = k
    end
    assert.equal(moonws.OPEN, slow.ws.readyState)
  end)

  for _, code in ipairs { 1008, 1013 } do
    it(("close %d: the slow one is closed, the others get all"):format(code), function()
      local srv, fast, slow, _, peak, limit = slow_receiver_run(code)
      finally(function() srv:close(); close_all(fast); slow.ws:terminate() end)
      assert.is_true(peak <= limit + 64 * 1024 + 14, "peak backlog " .. peak)
      local st = srv:stats()
      assert.equal(1, st.slow_closed > 0 and 1 or 0)
      assert.equal(0, st.dropped)
      slow.ws:resume()
      helpers.run_until(function() return slow.closed end, 30, "the close")
      assert.same({ code, "receiver too slow" }, slow.closed)
      assert.equal(moonws.OPEN, fast[1].ws.readyState)
    end)
  end
end)

describe("topics: counters", function()
  it("/metrics through the request hook, scraped over HTTP and parsed", function()
    local metrics = require "moonws.metrics"
    local srv
    srv = listen {
      request = function(req)
        if req.path == "/metrics" then return metrics.response(srv) end
      end,
    }
    finally(function() srv:close() end)
    srv.onconnection = function(ws)
      ws:subscribe("t")
      ws.onmessage = function() error("boom") end
      ws.onerror = function() end -- counted all the same
    end
    local list = connect_all(srv.port, 3, {})
    finally(function() close_all(list) end)
    srv:publish("t", "one")
    list[1].ws:send("raise")
    list[2].ws:close(4002)
    helpers.run_until(function() return srv:stats().connections_open == 2 end, 10, "a close")
    helpers.run_until(function() return srv:stats().handler_errors == 1 end, 10, "the error")
    local p = process.start({ "/usr/bin/python3", "-c", [[
import sys, urllib.request
r = urllib.request.urlopen(sys.argv[1], timeout=10)
sys.stdout.write(r.headers.get("Content-Type") + "\n" + r.read().decode())
]], ("http://127.0.0.1:%d/metrics"):format(srv.port) }, 30)
    finally(function() p:cleanup() end)
    assert.is_true(p:wait_exit(20, helpers.idle))
    local out = p:stdout()
    local ctype, body = out:match("^([^\n]*)\n(.*)$")
    assert.equal(metrics.CONTENT_TYPE, ctype)
    local values, types = {}, {}
    for line in body:gmatch("[^\n]+") do
      local name, kind = line:match("^# TYPE (%S+) (%S+)$")
      if name then
        types[name] = kind
      elseif not line:match("^# HELP %S+ .+$") then
        local series, value = line:match("^([%w_]+{[^}]*}) (%d+)$")
        assert.truthy(series, "not a sample line: " .. line)
        values[series] = tonumber(value)
      end
    end
    local port = ('port="%d"'):format(srv.port)
    local st = srv:stats()
    assert.equal(2, values["moonws_connections_open{" .. port .. "}"])
    assert.equal(3, values["moonws_connections_total{" .. port .. "}"])
    assert.equal(1, values["moonws_handler_errors_total{" .. port .. "}"])
    assert.equal(1, values["moonws_close_codes_total{" .. port .. ',code="4002"}'])
    assert.equal(3, values["moonws_fanout_deliveries_total{" .. port .. "}"])
    assert.equal(st.messages_in, values["moonws_messages_in_total{" .. port .. "}"])
    assert.equal("gauge", types.moonws_connections_open)
    assert.equal("counter", types.moonws_messages_out_total)
  end)
end)

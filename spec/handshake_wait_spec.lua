-- Handshakes that can wait (issue 16): the server's handshake(request)
-- callback runs as a task of the loop, so moonws.sleep, moonws.connect,
-- pubsub calls and any coroutine-style call work inside it; the handshake
-- timeout still bounds it (a callback that never returns gets the
-- connection closed and the task abandoned: its to-be-closed variables
-- closed, run() not kept going).  A refusal carries a status, headers and
-- a short body; an acceptance may add headers.  Seen by Python's
-- websockets client and by Chromium, after a wait on a timer and on a
-- Redis lookup (a request/reply over moonws.pubsub to an auth service).
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local support_redis = require "spec.support.redis"
local core = require "moonws.core"
local ws_client = require "spec.support.ws_client"

local track, cleanup = process.tracker()
after_each(cleanup)

local TOKENS = { ["s3cret"] = "ann" }

-- An auth service on Redis: it answers "auth" requests ("<id> <token>")
-- on "auth:<id>" with the user's name, or "-".
local function auth_service(url)
  local ps = moonws.pubsub(url)
  ps:subscribe("auth", function(data)
    local id, token = data:match("^(%S+) ?(.*)$")
    ps:publish("auth:" .. id, TOKENS[token] or "-")
  end)
  assert(ps:wait(5))
  return ps
end

-- The server's handshake callback: a timer, then a Redis lookup of the
-- token (the X-Token header, or ?token= for a browser), then the verdict.
local function checker(url, waited)
  local ps, n = moonws.pubsub(url), 0
  return function(request)
    local started = core.now()
    moonws.sleep(0.2)                                 -- a timer
    n = n + 1
    local id, answer = tostring(n), nil
    ps:subscribe("auth:" .. id, function(data) answer = data end)
    assert(ps:wait(5))                                -- the subscription is confirmed
    local token = request.headers["x-token"] or request.path:match("token=(%w+)") or ""
    assert(ps:publish("auth", id .. " " .. token))
    local deadline = core.now() + 5
    while not answer and core.now() < deadline do moonws.sleep(0.01) end
    ps:unsubscribe("auth:" .. id)
    waited[#waited + 1] = core.now() - started
    if answer == "ann" then
      return true, { ["Set-Cookie"] = "user=" .. answer }
    end
    return false, { status = 401, headers = { ["WWW-Authenticate"] = 'Bearer realm="chat"' },
      body = "unknown token\n" }
  end, ps
end

local PAGE = [[<!doctype html>
<html><head><meta charset="utf-8"><title>moonws refusal test</title></head><body><script>
  window.result = { opened: false, messages: [], closed: null };
  const socket = new WebSocket("ws://" + location.host + "/ws?token=wrong");
  socket.addEventListener("open", () => { result.opened = true; });
  socket.addEventListener("error", () => { result.messages.push("error event"); });
  socket.addEventListener("close", (event) => {
    result.closed = { code: event.code, reason: event.reason, wasClean: event.wasClean };
  });
</script></body></html>
]]

describe("a handshake that waits on a timer and on Redis", function()
  local redis, service, srv, ps, waited

  before_each(function()
    redis = support_redis.new()
    service = auth_service(redis:url())
    waited = {}
    local check
    check, ps = checker(redis:url(), waited)
    srv = assert(moonws.listen { port = 0, handshake = check, request = function(req)
      if req.path == "/" then return 200, { ["Content-Type"] = "text/html" }, PAGE end
    end })
    srv.onconnection = function(ws)
      ws.onmessage = function(e) ws:send("hello " .. e.data) end
    end
  end)

  after_each(function()
    srv:close()
    ps:close()
    service:close()
    redis:cleanup()
  end)

  local function python(token)
    local argv = { "ws://127.0.0.1:" .. srv.port .. "/ws", "--send", "ann?" }
    if token then
      argv[#argv + 1] = "--header"
      argv[#argv + 1] = "X-Token:" .. token
    end
    return ws_client.run(track, argv)
  end

  local header = ws_client.header

  it("Python's websockets sees 401 with WWW-Authenticate", function()
    local r = python("wrong")
    assert.equal("refused", r.event, r.error)
    assert.equal(401, r.status)
    assert.equal('Bearer realm="chat"', header(r.headers, "www-authenticate"))
    assert.equal(1, #waited)
    assert.is_true(waited[1] >= 0.2)
  end)

  it("a good token is let in, with the header the callback added", function()
    local r = python("s3cret")
    assert.equal("open", r.event, r.error)
    assert.equal("hello ann?", r.reply)
    assert.equal("user=ann", header(r.headers, "set-cookie"))
  end)

  it("other connections go on while a handshake waits", function()
    local slow = moonws.new("ws://127.0.0.1:" .. srv.port .. "/", { headers = { ["X-Token"] = "s3cret" } })
    local fast = assert(moonws.listen { port = 0 })
    fast.onconnection = function(ws) ws.onmessage = function(e) ws:send(e.data) end end
    local other = assert(moonws.connect("ws://127.0.0.1:" .. fast.port .. "/"))
    assert(other:send("meanwhile"))
    assert.equal("meanwhile", other:receive(5))
    assert.equal(moonws.CONNECTING, slow.readyState) -- still waiting on its verdict
    helpers.run_until(function() return slow.readyState == moonws.OPEN end, 5)
    assert.equal("user=ann", slow.response_headers["set-cookie"])
    slow:close()
    other:close()
    fast:close()
  end)

  it("Chromium: the page sees the failed connection #host", function()
    local p = track(process.start({ "node", "spec/peers/browser.js", "server-close",
      ("http://127.0.0.1:%d/"):format(srv.port) }, 90))
    assert(p:wait_exit(75, helpers.idle), "browser.js did not finish")
    local out = p:stdout()
    assert.equal(0, p:exit_status(), out .. p:stderr())
    assert.is_nil(out:find("OPENED", 1, true), out)
    assert.truthy(out:find("MESSAGE error event\n", 1, true), out)
    assert.truthy(out:find("CLOSE code=1006 clean=false", 1, true), out)
    assert.equal(1, #waited)
  end)
end)

describe("the handshake timeout bounds a waiting callback", function()
  it("closes the connection and abandons the callback", function()
    local closed = {}
    local srv = assert(moonws.listen { port = 0, timeout = 0.5, handshake = function()
      local guard <close> = setmetatable({}, { __close = function() closed[#closed + 1] = true end })
      moonws.sleep(60)
      return true
    end })
    local started = core.now()
    local ws, message, name = moonws.connect("ws://127.0.0.1:" .. srv.port .. "/", { timeout = 5 })
    local took = core.now() - started
    srv:close()
    assert.is_nil(ws)
    assert.equal("handshake", name, message)
    assert.is_true(took >= 0.5 and took < 1.5, tostring(took))
    assert.same({ true }, closed) -- the callback's to-be-closed variable, closed
  end)

  it("an abandoned callback does not keep run() going", function()
    local script = [[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = "./?.so;" .. package.cpath
      local moonws = require "moonws"
      local srv = assert(moonws.listen { port = 0, timeout = 0.3,
        handshake = function() moonws.sleep(60) end })
      moonws.spawn(function()
        print(moonws.connect("ws://127.0.0.1:" .. srv.port .. "/"))
        srv:close()
      end)
      moonws.run()
      print("run ended")
    ]]
    local p = track(process.start({ "lua5.4", "-e", script }, 30))
    assert(p:wait_exit(10), "run() did not end:\n" .. p:stdout() .. p:stderr())
    assert.truthy(p:stdout():find("run ended", 1, true), p:stdout() .. p:stderr())
  end)
end)

describe("refusals and added headers", function()
  local function refused_by(verdict)
    local srv = assert(moonws.listen { port = 0, handshake = function() return verdict() end })
    local r = table.pack(moonws.connect("ws://127.0.0.1:" .. srv.port .. "/"))
    srv:close()
    return r
  end

  it("false, status, reason, headers", function()
    local r = refused_by(function() return false, 503, "busy", { ["Retry-After"] = "5" } end)
    assert.same({ 503, "5", "busy\n" }, { r[4], r[5]["retry-after"], r[6] })
  end)

  it("a body over HANDSHAKE_BODY_MAX, or a bad status: reported, answered 500", function()
    local reports, saved = {}, moonws.onerror
    moonws.onerror = function(e) reports[#reports + 1] = e.message end
    local r1 = refused_by(function()
      return false, { status = 403, body = string.rep("x", core.HANDSHAKE_BODY_MAX + 1) }
    end)
    local r2 = refused_by(function() return false, { status = 101 } end)
    moonws.onerror = saved
    assert.same({ 500, 500 }, { r1[4], r2[4] })
    assert.matches("body must be a string of at most", reports[1])
    assert.matches("status must be 200..599", reports[2])
  end)

  it("a refusal's header the handshake owns: reported, the refusal sent without its headers",
    function()
    local reports, saved = {}, moonws.onerror
    moonws.onerror = function(e) reports[#reports + 1] = e.message end
    local r = refused_by(function()
      return false, { status = 401, headers = { Connection = "keep-alive" }, body = "no" }
    end)
    moonws.onerror = saved
    assert.same({ 401, "close", "no" }, { r[4], r[5]["connection"], r[6] })
    assert.matches("left out of a refusal: header 'Connection' is written by the handshake itself",
      reports[1], 1, true)
  end)

  it("an acceptance may not set the handshake's own headers: reported, answered 500", function()
    for _, name in ipairs { "Upgrade", "Connection", "Sec-WebSocket-Accept",
                            "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol" } do
      local reports, saved = {}, moonws.onerror
      moonws.onerror = function(e) reports[#reports + 1] = e.message end
      local r = refused_by(function() return true, { [name] = "x" } end)
      moonws.onerror = saved
      assert.equal(500, r[4], name)
      assert.matches("bad headers: header '" .. name .. "' is written by the handshake itself",
        reports[1], 1, true)
    end
  end)
end)

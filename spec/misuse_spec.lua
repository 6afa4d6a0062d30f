-- Misuse raises at the caller's line (issue 16): every public function
-- of moonws -- module functions, socket methods and fields, server
-- methods, pool, pubsub, the resty front -- blames the line that called
-- it, not a line inside moonws, whichever path led there (a wrapper, a
-- tail call, pcall(f, ...)).  And size and count options take any number
-- with an exact integer value (48 * 2^20 is a float in Lua 5.4).
-- Written in the language Lua 5.4 and LuaJIT share: spec/run_all runs it
-- under both.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws

local SPEC = debug.getinfo(1, "S").short_src

-- fn (written on one line) raises, the message starts with this file's
-- name and fn's line, and contains text.
local function blames(fn, text)
  local line = debug.getinfo(fn, "S").linedefined
  local ok, err = pcall(fn)
  assert.is_false(ok, "no error raised (line " .. line .. ")")
  err = tostring(err)
  local prefix = ("%s:%d: "):format(SPEC, line)
  assert.equal(prefix, err:sub(1, #prefix), err)
  if text then assert.truthy(err:find(text, 1, true), err) end
end

local URL = "ws://127.0.0.1:1/"

describe("misuse of module functions blames the caller's line", function()
  it("new", function()
    blames(function() moonws.new(42) end, "bad argument #1 to 'new' (URL string expected")
    blames(function() moonws.new("ftp://example.org/") end, "bad argument #1 to 'new'")
    blames(function() moonws.new(URL, 5) end, "bad options to 'new' (table expected")
    blames(function() moonws.new(URL, { timout = 1 }) end, "unknown option 'timout' to 'new'")
    blames(function() moonws.new(URL, { timeout = -1 }) end, "option 'timeout' must be a positive")
    blames(function() moonws.new(URL, { max_payload = 1.5 }) end, "option 'max_payload' must")
    blames(function() moonws.new(URL, { headers = { X = "a\r\nB: c" } }) end, "option 'headers'")
    blames(function() moonws.new(URL, { headers = { Host = "x" } }) end, "written by the handshake")
    blames(function() moonws.new(URL, { tls = { verfy = true } }) end, "unknown field 'verfy'")
    blames(function() moonws.new(URL, { compression = { level = 20 } }) end, "bad value for 'level'")
    blames(function() moonws.new(URL, { proxy = "https://p:1" }) end, "bad proxy")
    blames(function() moonws.new(URL, { protocols = { "a b" } }) end, "not a valid token")
    blames(function() moonws.new(URL, { follow_redirects = 1 }) end, "must be a boolean")
    blames(function() moonws.new(URL, { max_redirects = -1 }) end, "non-negative integer")
    blames(function() moonws.new(URL, { send_low_water = -1 }) end, "non-negative integer")
  end)

  it("connect", function()
    blames(function() moonws.connect(42) end, "bad argument #1 to 'connect'")
    blames(function() moonws.connect(URL, { timout = 1 }) end, "unknown option 'timout' to 'connect'")
  end)

  it("listen and serve", function()
    blames(function() moonws.listen { port = 70000 } end, "option 'port' must be an integer 0..65535")
    blames(function() moonws.listen { prot = 1 } end, "unknown option 'prot' to 'listen'")
    blames(function() moonws.listen(5) end, "bad options to 'listen'")
    blames(function() moonws.listen { tls = { cert = "c.pem" } } end, "needs cert and key")
    blames(function() moonws.listen { reuseport = 1 } end, "option 'reuseport' must be a boolean")
    blames(function() moonws.listen { trusted_proxies = { "x" } } end, "not an address or CIDR")
    blames(function() moonws.listen { forwarded_header = "via" } end, "option 'forwarded_header'")
    blames(function() moonws.listen { proxy_protocol = 1 } end, "must be a boolean")
    blames(function() moonws.serve({ port = 0 }, 42) end, "bad argument #2 to 'serve'")
    blames(function() moonws.serve({ prot = 0 }, print) end, "unknown option 'prot' to 'listen'")
  end)

  it("the loop's functions", function()
    blames(function() moonws.spawn(42) end, "bad argument #1 to 'spawn'")
    blames(function() moonws.step(-1) end, "bad argument #1 to 'step'")
    blames(function() moonws.sleep("x") end, "bad argument #1 to 'sleep'")
    blames(function() moonws.onsignal(1, print) end, "bad argument #1 to 'onsignal'")
    blames(function() moonws.onsignal("INT", 1) end, "bad argument #2 to 'onsignal'")
    blames(function() moonws.onsignal("NOSUCH", print) end, "unknown signal 'NOSUCH'")
    blames(function() moonws.graceful() end, "bad argument #1 to 'graceful'")
    blames(function() moonws.graceful({}) end, "bad argument #1 to 'graceful'")
  end)

  it("waiting inside an event handler", function()
    local srv = assert(moonws.listen { port = 0 })
    local ws = moonws.new("ws://127.0.0.1:" .. srv.port .. "/")
    local done = false
    ws.onopen = function()
      blames(function() ws:receive() end, "receive would block inside an event handler")
      blames(function() moonws.sleep(1) end, "sleep would block inside an event handler")
      blames(function() moonws.connect(URL) end, "connect would block inside an event handler")
      done = true
    end
    ws.onerror = function(e) done = e.message end
    helpers.run_until(function() return done end, 5)
    assert.is_true(done)
    ws:terminate()
    srv:close()
  end)

  it("pubsub", function()
    blames(function() moonws.pubsub(42) end, "bad argument #1 to 'pubsub'")
    blames(function() moonws.pubsub("redis://127.0.0.1:1", 5) end, "bad argument #2 to 'pubsub'")
    blames(function() moonws.pubsub("redis://127.0.0.1:1", { tmeout = 1 }) end, "unknown pubsub option")
    if not pcall(require, "moonws.redis") then -- LuaJIT: moonws.redis is built for Lua 5.4
      blames(function() moonws.pubsub("redis://127.0.0.1:1") end, "needs the module moonws.redis")
      return
    end
    local ps = moonws.pubsub("redis://127.0.0.1:1")
    blames(function() ps:publish(1, "x") end, "bad argument #1 to 'publish'")
    blames(function() ps:publish("c", {}) end, "bad argument #2 to 'publish'")
    blames(function() ps:subscribe("c", 1) end, "bad argument #2 to 'subscribe'")
    blames(function() ps:unsubscribe(1) end, "bad argument #1 to 'unsubscribe'")
    blames(function() ps.ready({}) end, "bad argument #1 to 'ready'")
    blames(function() ps.close(5) end, "bad argument #1 to 'close'")
    ps:close()
    blames(function() ps:wait(1) end, "attempt to use a closed pubsub")
  end)

  it("pool", function()
    local pool = require "moonws.pool"
    blames(function() pool.new(5) end, "bad argument #1 to 'new'")
    blames(function() pool.new({}) end, "option 'script' to 'new' is required")
    blames(function() pool.run({ script = "x.lua", bogus = 1 }) end, "unknown option 'bogus' to 'run'")
    blames(function() pool.new({ script = "x.lua", workers = 1.5 }) end, "option 'workers'")
    local p = pool.new({ script = "x.lua", workers = 1 })
    blames(function() p.run({}) end, "a moonws pool expected")
    blames(function() p.stop(5) end, "a moonws pool expected")
  end)

  it("the resty front outside nginx", function()
    local resty = require "moonws.resty"
    blames(function() resty.connect(URL) end, "moonws.resty.connect runs inside nginx")
    blames(function() resty.upgrade() end, "moonws.resty.upgrade runs inside nginx")
  end)
end)

describe("misuse of a socket blames the caller's line", function()
  local srv, ws

  before_each(function()
    srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s) s.onmessage = function() end end
    ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port .. "/"))
  end)

  after_each(function()
    ws:terminate()
    srv:close()
  end)

  it("send", function()
    blames(function() ws:send(42) end, "bad argument #1 to 'send' (string expected, got number)")
    blames(function() ws:send("x", "json") end, "bad argument #2 to 'send'")
    blames(function() ws:send("\255") end, "bad argument #1 to 'send' (invalid UTF-8")
    local big = string.rep("\255", 300 * 1024) -- the deflating path checks it too
    blames(function() ws:send(big) end, "invalid UTF-8")
  end)

  it("send, ping and pong while CONNECTING", function()
    local early = moonws.new("ws://127.0.0.1:" .. srv.port .. "/")
    blames(function() early:send("x") end, "send while CONNECTING")
    blames(function() early:ping() end, "ping while CONNECTING")
    blames(function() early:pong() end, "pong while CONNECTING")
    early:terminate()
  end)

  it("ping and pong", function()
    blames(function() ws:ping({}) end, "bad argument #1 to 'ping' (string expected, got table)")
    blames(function() ws:ping(string.rep("p", 126)) end, "payload over 125 bytes")
    blames(function() ws:pong(5) end, "bad argument #1 to 'pong'")
  end)

  it("close", function()
    blames(function() ws:close(1005) end, "bad argument #1 to 'close' (code 1005 not allowed")
    blames(function() ws:close("x") end, "bad argument #1 to 'close' (integer code expected)")
    blames(function() ws:close(1000, 5) end, "bad argument #2 to 'close' (string expected")
    blames(function() ws:close(1000, string.rep("r", 124)) end, "reason over 123 bytes")
    blames(function() ws:close(1000, "\255") end, "reason is not valid UTF-8")
  end)

  it("addEventListener and removeEventListener", function()
    blames(function() ws:addEventListener("nope", print) end, "bad argument #1 to 'addEventListener'")
    blames(function() ws:addEventListener("message", 1) end, "bad argument #2 to 'addEventListener'")
    blames(function() ws:addEventListener("message", print, 1) end, "bad argument #3")
    blames(function() ws:removeEventListener(1, print) end, "bad argument #1 to 'removeEventListener'")
    blames(function() ws.addEventListener(5, "open", print) end, "bad self")
  end)

  it("receive and stats", function()
    blames(function() ws:receive(-1) end, "bad argument #1 to 'receive'")
    blames(function() ws:stats(5) end, "bad argument #1 to 'stats'")
  end)

  it("handler fields and read-only properties", function()
    blames(function() ws.onmessage = "print" end, "onmessage must be a function")
    blames(function() ws.readyState = 3 end, "readyState is read-only")
    blames(function() ws.bufferedAmount = 0 end, "bufferedAmount is read-only")
  end)

  it("a method called without its socket", function()
    blames(function() ws.send("x") end, "bad self (a moonws websocket expected)")
    blames(function() ws.pause({}) end, "bad self")
    blames(function() ws.close(nil) end, "bad self")
    -- receive finds its state with a plain index (the coroutine hot path)
    blames(function() ws.receive() end, "bad self (a moonws websocket expected)")
    blames(function() ws.receive("x") end, "bad self")
    blames(function() ws.receive({}) end, "bad self")
  end)

  it("through pcall(method, ...): the line that called pcall", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(ws.send, ws, 42)
    assert.is_false(ok)
    assert.equal(("%s:%d: "):format(SPEC, line), err:sub(1, #SPEC + #tostring(line) + 3))
  end)
end)

describe("misuse of a server blames the caller's line", function()
  it("shutdown, close and clients", function()
    local srv = assert(moonws.listen { port = 0 })
    blames(function() srv:shutdown(1005) end, "bad argument #1 to 'shutdown'")
    blames(function() srv:shutdown(1001, 5) end, "bad argument #2 to 'shutdown'")
    blames(function() srv.close({}) end, "bad self (a moonws server expected)")
    blames(function() srv.clients(5) end, "bad self (a moonws server expected)")
    srv:close()
  end)

  it("topics: publish, broadcast, subscribers, stats; a socket's subscribe and publish", function()
    local metrics = require "moonws.metrics"
    local srv = assert(moonws.listen { port = 0 })
    local ss
    srv.onconnection = function(s) ss = s end
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port .. "/"))
    helpers.run_until(function() return ss end, 5)
    blames(function() srv:publish(5, "x") end, "bad argument #1 to 'publish' (string expected")
    blames(function() srv:publish("t", {}) end, "bad argument #2 to 'publish' (string expected")
    blames(function() srv:publish("t", "x", "blob") end, "bad argument #3 to 'publish'")
    blames(function() srv:publish("t", "\255") end, "invalid UTF-8")
    blames(function() srv:publish("t", "x", nil, 5) end, "bad argument #4 to 'publish' (table")
    blames(function() srv:broadcast(5) end, "bad argument #1 to 'broadcast'")
    blames(function() srv:subscribers(5) end, "bad argument #1 to 'subscribers'")
    blames(function() srv:stats(5) end, "bad argument #1 to 'stats' (table expected")
    blames(function() metrics.render(5) end, "bad argument #1 to 'render'")
    blames(function() metrics.response(srv, "a b") end, "bad argument #2 to 'response'")
    blames(function() ss:subscribe(5) end, "bad argument #1 to 'subscribe'")
    blames(function() ss:publish("t", 5) end, "bad argument #2 to 'publish'")
    blames(function() ws:subscribe("t") end, "is for sockets of a moonws server")
    ws:terminate()
    srv:close()
  end)
end)

describe("size and count options take integral floats", function()
  it("as integers, with their effect", function()
    local f = 2 ^ 10 -- a float in Lua 5.4
    local srv = assert(moonws.listen { port = 0, max_payload = f, send_limit = 48 * 2 ^ 20,
      send_buffer = 2 ^ 20, backlog = 2 ^ 7, max_queue = 8.0, max_step_events = 2.0 ^ 6,
      max_step_bytes = 2 ^ 16, max_handshake = 2 ^ 14, fragment_size = 2 ^ 12, port = 0.0,
      compression = { threshold = 2 ^ 5, level = 6.0, mem_level = 8.0,
        server_max_window_bits = 10.0 } })
    local got
    srv.onconnection = function(s)
      s.onmessage = function(e) got = #e.data end
    end
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port .. "/",
      { max_payload = f, max_frame = 2 ^ 10 }))
    assert(ws:send(string.rep("a", 1024)))
    helpers.run_until(function() return got end, 5)
    assert.equal(1024, got)
    assert(ws:send(string.rep("a", 1025))) -- over max_payload: the server closes 1009
    local data, _, name = ws:receive(5)
    assert.is_nil(data)
    assert.equal("closed", name)
    assert.equal(1009, ws.closeCode)
    srv:close()
  end)

  it("still refuses numbers that are not integral", function()
    blames(function() moonws.listen { port = 0, send_limit = 1.5 } end, "option 'send_limit'")
    blames(function() moonws.listen { port = 0, compression = { level = 6.5 } } end, "bad value")
  end)

  it("the pool's worker count", function()
    local p = require("moonws.pool").new({ script = "x.lua", workers = 2.0 })
    assert.equal(2, p.count)
    assert.equal("2", tostring(p.count))
  end)
end)

-- What issue 16 added, inside nginx (moonws.resty on Debian's nginx +
-- lua-nginx-module): the client's address on the request and the socket
-- (ngx.var.remote_addr, and trusted_proxies with X-Forwarded-For); a
-- handshake callback that waits (ngx.sleep), refuses with 401 and
-- WWW-Authenticate and a body, or runs past the timeout (503); the
-- client's view of a refusal (status, headers, body), ws.response_headers
-- and follow_redirects; misuse blaming the handler's own line.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local nginx = require "spec.support.nginx"
local ws_client = require "spec.support.ws_client"
local json = require "dkjson"

local track, cleanup = process.tracker()
after_each(cleanup)

-- /who?trusted=CIDR&wait=S&token=T: a server that answers one message
-- with what it learnt (request and socket address and port).
local WHO = [[
local resty = require "moonws.resty"
local json = require "dkjson"
local args = ngx.req.get_uri_args()
local opts = { timeout = tonumber(args.timeout) or 5 }
if args.trusted then opts.trusted_proxies = { args.trusted } end
if args.token then
  opts.handshake = function(req)
    ngx.sleep(tonumber(args.wait) or 0)
    if req.headers["x-token"] == args.token then return true, { ["Set-Cookie"] = "user=ann" } end
    return false, { status = 401, headers = { ["WWW-Authenticate"] = 'Bearer realm="chat"' },
      body = "unknown token\n" }
  end
end
local ws, request = resty.upgrade(opts)
if not ws then return end
local data = ws:receive()
if data then
  ws:send(json.encode { address = request.remote_address, port = request.remote_port,
    ws_address = ws.remote_address, ws_port = ws.remote_port })
end
ws:close()
]]

-- /client?url=U[&follow=1]: moonws.resty.connect; one JSON line.
local CLIENT = [[
local resty = require "moonws.resty"
local json = require "dkjson"
local args = ngx.req.get_uri_args()
local ws, err, name, status, headers, body = resty.connect(args.url,
  { timeout = 5, follow_redirects = args.follow == "1" })
if not ws then
  ngx.say(json.encode { err = err, name = name, status = status, headers = headers, body = body })
  return
end
ngx.say(json.encode { url = ws.url, cookie = ws.response_headers["set-cookie"] })
ws:close()
]]

-- /misuse: each line, a misuse error raised at a known line of this file.
local MISUSE = [[
local resty = require "moonws.resty"
local ok1, e1 = pcall(function() resty.connect(42) end)
local ok2, e2 = pcall(function() resty.upgrade { trusted_proxies = { "nonsense" } } end)
local ok3, e3 = pcall(resty.connect, "ws://127.0.0.1:1/", { max_redirects = -1 })
ngx.say(e1)
ngx.say(e2)
ngx.say(e3)
]]

local server

local function url_escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local function python_client(args) return ws_client.run(track, args) end
local header = ws_client.header

local function get(path)
  local p = server:get(path)
  assert(p:wait_exit(30, helpers.idle), "the request did not finish")
  local status, body = nginx.response(p)
  p:cleanup()
  assert.equal(200, status, tostring(body) .. "\n" .. server:error_log():sub(-2000))
  return body
end

describe("moonws.resty: addresses, waiting handshakes, responses #host", function()
  lazy_setup(function()
    assert(nginx.check())
    server = nginx.start {
      server = [[
    location /who { content_by_lua_file who.lua; }
    location /client { content_by_lua_file client.lua; }
    location /misuse { content_by_lua_file misuse.lua; }
]],
      files = { ["who.lua"] = WHO, ["client.lua"] = CLIENT, ["misuse.lua"] = MISUSE },
    }
  end)

  lazy_teardown(function()
    if server then server:stop() end
  end)

  local function who(query, args)
    local list = { ("ws://127.0.0.1:%d/who?%s"):format(server.port, query or ""),
      "--source", "127.0.0.2" }
    for _, a in ipairs(args or {}) do list[#list + 1] = a end
    return python_client(list)
  end

  it("request and socket: the client's address and port (ngx.var.remote_addr)", function()
    local r = who()
    assert.equal("open", r.event, r.error)
    local got = json.decode(r.reply)
    assert.same({ "127.0.0.2", r["local"][2] }, { got.address, got.port })
    assert.same({ "127.0.0.2", r["local"][2] }, { got.ws_address, got.ws_port })
  end)

  it("trusted_proxies: X-Forwarded-For from a trusted peer only", function()
    local r = who("trusted=127.0.0.2", { "--header", "X-Forwarded-For:192.0.2.9" })
    assert.equal("192.0.2.9", json.decode(r.reply).address)
    r = who("trusted=10.0.0.0/8", { "--header", "X-Forwarded-For:192.0.2.9" })
    assert.equal("127.0.0.2", json.decode(r.reply).address)
  end)

  it("a handshake callback that waits, then refuses: 401 with WWW-Authenticate", function()
    local r = who("token=s3cret&wait=0.2", { "--header", "X-Token:wrong" })
    assert.equal("refused", r.event, r.error)
    assert.equal(401, r.status)
    assert.equal('Bearer realm="chat"', header(r.headers, "www-authenticate"))
  end)

  it("... or accepts with a header it adds", function()
    local r = who("token=s3cret&wait=0.2", { "--header", "X-Token:s3cret" })
    assert.equal("open", r.event, r.error)
    assert.equal("user=ann", header(r.headers, "set-cookie"))
  end)

  it("a callback past the timeout: 503", function()
    local r = who("token=s3cret&wait=5&timeout=0.3", { "--header", "X-Token:s3cret" })
    assert.equal("refused", r.event, r.error)
    assert.equal(503, r.status)
  end)

  it("the client: a refusal's status, headers and body; response_headers", function()
    local url = ("ws://127.0.0.1:%d/who?token=s3cret"):format(server.port)
    local r = json.decode(get("/client?url=" .. url_escape(url)))
    assert.same({ "handshake", 401, 'Bearer realm="chat"', "unknown token\n" },
      { r.name, r.status, r.headers["www-authenticate"], r.body })
    local srv = assert(moonws.listen { port = 0, handshake = function()
      return true, { ["Set-Cookie"] = "a=1" }
    end })
    r = json.decode(get("/client?url=" .. url_escape("ws://127.0.0.1:" .. srv.port .. "/")))
    srv:close()
    assert.equal("a=1", r.cookie)
  end)

  it("the client: follow_redirects", function()
    local target = assert(moonws.listen { port = 0 })
    local hop = assert(moonws.listen { port = 0, handshake = function()
      return false, { status = 307, headers = { Location = ("ws://127.0.0.1:%d/there"):format(
        target.port) } }
    end })
    local url = url_escape("ws://127.0.0.1:" .. hop.port .. "/here")
    local off = json.decode(get("/client?url=" .. url))
    local on = json.decode(get("/client?follow=1&url=" .. url))
    hop:close()
    target:close()
    assert.same({ 307, ("ws://127.0.0.1:%d/there"):format(target.port) },
      { off.status, off.headers.location })
    assert.equal(("ws://127.0.0.1:%d/there"):format(target.port), on.url)
  end)

  it("misuse blames the handler's line", function()
    local lines = {}
    for line in get("/misuse"):gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.matches("misuse%.lua:2: bad argument #1 to 'connect'", lines[1])
    assert.matches("misuse%.lua:3: option 'trusted_proxies': entry 1", lines[2])
    assert.matches("misuse%.lua:4: option 'max_redirects' must be", lines[3])
  end)
end)

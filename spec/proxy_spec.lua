-- HTTP CONNECT proxies (docs/API.md "Proxies") against a
-- real tinyproxy: two instances started here in the foreground, listening on
-- 127.0.0.1 only, with generated configurations in a temporary directory
-- (no ConnectPort lines, so any port may be tunnelled).  One is open, one
-- wants `BasicAuth user pass` and filters the host name "localhost".  The
-- environment variables (http_proxy, https_proxy, no_proxy and their upper
-- case forms) are tested in child lua5.4 processes, since Lua cannot
-- setenv; tinyproxy's log proves which connections went through it.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local certs = require "spec.support.certs"
local core = require "moonws.core"

local c         -- certificates
local dir       -- tinyproxy's configurations, logs and pid files
local open, auth -- the two proxies: { port, url, log, process }

local function sh_out(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("a")
  p:close()
  return s
end

local free_port = helpers.free_port

-- Does 127.0.0.1:port accept a TCP connection (within 0.5 s)?
local function accepts(port)
  local conn = core.connect(assert(core.numeric_address("127.0.0.1", port)))
  if not conn then return false end
  local poller = assert(core.poller(true))
  poller:set(conn:fd(), false, true)
  local ready = poller:wait(0.5, {}, {}) > 0 and conn:connect_result() == true
  poller:close()
  conn:release()
  return ready
end

-- Start a tinyproxy named name; extra: more configuration lines.
local function start_proxy(name, extra)
  local port = free_port()
  local conf = ("%s/%s.conf"):format(dir, name)
  local log = ("%s/%s.log"):format(dir, name)
  local f = assert(io.open(conf, "w"))
  f:write(table.concat({
    "Listen 127.0.0.1",
    "Port " .. port,
    "Allow 127.0.0.1",
    "Timeout 30",
    "MaxClients 50",
    "LogLevel Info",
    ('LogFile "%s"'):format(log),
    ('PidFile "%s/%s.pid"'):format(dir, name),
    extra or "",
  }, "\n"), "\n")
  f:close()
  local p = process.start({ "tinyproxy", "-d", "-c", conf }, 120)
  local deadline = core.now() + 5
  while not accepts(port) do
    assert(p:alive() and core.now() < deadline, "tinyproxy did not start: " .. p:stderr()
      .. process.read_file(log))
    os.execute("sleep 0.02")
  end
  return { port = port, url = "http://127.0.0.1:" .. port, log = log, process = p }
end

-- The CONNECT requests a proxy logged for host:port.
local function connects(proxy, hostport)
  local n = 0
  local line = "CONNECT " .. hostport .. " HTTP/1.1"
  for l in process.read_file(proxy.log):gmatch("[^\n]+") do
    if l:find(line, 1, true) then n = n + 1 end
  end
  return n
end

-- An echo server in this process; tls: serve wss:// with the test certificate.
local function echo_server(tls)
  local srv = assert(moonws.listen { port = 0, tls = tls and
    { cert = c.server_cert, key = c.server_key } or nil })
  local seen = { requests = {} }
  srv.onconnection = function(ws, request)
    seen.requests[#seen.requests + 1] = request
    ws.onmessage = function(e) ws:send(e.data) end
  end
  return srv, seen
end

-- Connect, send text, return what came back (then close); or nil, msg, name.
local function round_trip(url, opts, text)
  opts.timeout = opts.timeout or 5
  local ws, message, name = moonws.connect(url, opts)
  if not ws then return nil, message, name end
  assert(ws:send(text))
  local data, kind = ws:receive(5)
  ws:close()
  return data, kind
end

setup(function()
  c = certs.get()
  dir = sh_out("mktemp -d"):match("[^\n]+")
  open = start_proxy("open")
  local filter = dir .. "/filter"
  local f = assert(io.open(filter, "w"))
  f:write("^localhost$\n")
  f:close()
  auth = start_proxy("auth", table.concat({
    "BasicAuth user pass",
    ('Filter "%s"'):format(filter),
  }, "\n"))
end)

teardown(function()
  if open then open.process:cleanup() end
  if auth then auth.process:cleanup() end
  if dir then os.execute(("rm -rf %q"):format(dir)) end
  certs.cleanup()
end)

describe("the proxy option", function()
  it("ws:// goes through the proxy's CONNECT tunnel", function()
    local srv, seen = echo_server()
    local hostport = "127.0.0.1:" .. srv.port
    local data, kind = round_trip("ws://" .. hostport .. "/chat", { proxy = open.url },
      "through tinyproxy")
    srv:close()
    assert.same({ "through tinyproxy", "text" }, { data, kind })
    assert.equal(1, connects(open, hostport))
    assert.equal(1, #seen.requests)
    assert.equal("/chat", seen.requests[1].path)
    assert.equal(hostport, seen.requests[1].headers.host)
  end)

  it("wss:// runs TLS inside the tunnel, verified against the origin's name", function()
    local srv = echo_server(true)
    local data, kind = round_trip(("wss://localhost:%d/"):format(srv.port),
      { proxy = open.url, tls = { cafile = c.ca } }, "secure tunnel")
    srv:close()
    assert.same({ "secure tunnel", "text" }, { data, kind })
    assert.equal(1, connects(open, "localhost:" .. srv.port))
  end)

  it("wss:// through the proxy still fails verification for the wrong name", function()
    local srv, seen = echo_server(true)
    local ws, message, name = moonws.connect(("wss://localhost:%d/"):format(srv.port),
      { proxy = open.url, tls = { cafile = c.ca, servername = "wrong.example" }, timeout = 5 })
    srv:close()
    assert.is_nil(ws)
    assert.equal("tls", name)
    assert.equal("TLS handshake with localhost failed: certificate verify failed: "
      .. "hostname mismatch", message)
    assert.equal(1, connects(open, "localhost:" .. srv.port))
    assert.equal(0, #seen.requests)
  end)

  it("credentials in the proxy URL are accepted by a BasicAuth proxy", function()
    local srv = echo_server()
    local hostport = "127.0.0.1:" .. srv.port
    local data, kind = round_trip("ws://" .. hostport .. "/",
      { proxy = ("http://user:pass@127.0.0.1:%d"):format(auth.port) }, "authenticated")
    srv:close()
    assert.same({ "authenticated", "text" }, { data, kind })
    assert.equal(1, connects(auth, hostport))
  end)

  it("no credentials -> error 'proxy' naming 407", function()
    local srv, seen = echo_server()
    local ws, message, name = moonws.connect(("ws://127.0.0.1:%d/"):format(srv.port),
      { proxy = auth.url, timeout = 5 })
    srv:close()
    assert.is_nil(ws)
    assert.equal("proxy", name)
    assert.equal(("proxy %s refused the tunnel to 127.0.0.1:%d: proxy answered 407 Proxy "
      .. "Authentication Required"):format(auth.url, srv.port), message)
    assert.equal(0, #seen.requests)
  end)

  -- tinyproxy 1.11.1 (Debian 12) answers wrong credentials with 401, not
  -- 407 (later versions send 407 for both); moonws must name what it got.
  it("wrong credentials -> error 'proxy' naming the proxy's status", function()
    local srv, seen = echo_server()
    local ws, message, name = moonws.connect(("ws://127.0.0.1:%d/"):format(srv.port),
      { proxy = ("http://user:wrong@127.0.0.1:%d"):format(auth.port), timeout = 5 })
    srv:close()
    assert.is_nil(ws)
    assert.equal("proxy", name)
    assert.matches(": proxy answered 401 Unauthorized$", message)
    assert.equal(0, #seen.requests)
  end)

  -- Error messages end up in logs: like curl, name the proxy without its
  -- password.
  it("a refusal's message names the proxy but never its password", function()
    local password = "s3cret-pw"
    local ws, message, name = moonws.connect("ws://127.0.0.1:1/",
      { proxy = ("http://user:%s@127.0.0.1:%d"):format(password, auth.port), timeout = 5 })
    assert.is_nil(ws)
    assert.equal("proxy", name)
    assert.matches("127.0.0.1:" .. auth.port, message, 1, true)
    assert.matches(": proxy answered 401 Unauthorized$", message)
    assert.is_nil(message:find(password, 1, true), "the message reveals the password: " .. message)
  end)

  it("the event style gets onerror 'proxy' then onclose 1006", function()
    local ws = moonws.new("ws://127.0.0.1:1/", { proxy = auth.url, timeout = 5 })
    local log = {}
    ws.onopen = function() log[#log + 1] = "open" end
    ws.onerror = function(e) log[#log + 1] = { e.error, e.message } end
    ws.onclose = function(e) log[#log + 1] = { e.code, e.wasClean } end
    helpers.run_until(function() return #log >= 2 end, 5, "onclose")
    helpers.idle(0.05)
    assert.same({
      { "proxy", ("proxy %s refused the tunnel to 127.0.0.1:1: proxy answered 407 Proxy "
        .. "Authentication Required"):format(auth.url) },
      { 1006, false },
    }, log)
  end)

  it("a tunnel to a port nothing listens on -> the proxy's 500", function()
    local port = free_port()
    local ws, message, name = moonws.connect(("ws://127.0.0.1:%d/"):format(port),
      { proxy = open.url, timeout = 5 })
    assert.is_nil(ws)
    assert.equal("proxy", name)
    assert.equal(("proxy %s refused the tunnel to 127.0.0.1:%d: proxy answered 500 Unable to "
      .. "connect"):format(open.url, port), message)
    assert.equal(1, connects(open, "127.0.0.1:" .. port))
  end)

  it("a host the proxy filters -> the proxy's 403", function()
    local srv, seen = echo_server()
    local ws, message, name = moonws.connect(("ws://localhost:%d/"):format(srv.port),
      { proxy = ("http://user:pass@127.0.0.1:%d"):format(auth.port), timeout = 5 })
    srv:close()
    assert.is_nil(ws)
    assert.equal("proxy", name)
    assert.matches(": proxy answered 403 Filtered$", message)
    assert.equal(0, #seen.requests)
  end)

  it("a proxy that is not running -> 'refused', naming the proxy", function()
    local port = free_port()
    local ws, message, name = moonws.connect("ws://127.0.0.1:1/",
      { proxy = "http://127.0.0.1:" .. port, timeout = 5 })
    assert.is_nil(ws)
    assert.equal("refused", name)
    assert.matches("^cannot connect to proxy http://127%.0%.0%.1:" .. port .. ": ", message)
  end)
end)

describe("the proxy environment variables", function()
  local UNSET = { "-u", "http_proxy", "-u", "HTTP_PROXY", "-u", "https_proxy", "-u",
    "HTTPS_PROXY", "-u", "no_proxy", "-u", "NO_PROXY" }

  -- In a fresh lua5.4 with exactly the proxy variables env (a list of
  -- "NAME=value"): start an echo server (wss:// when secure), connect to it
  -- as url_host with options opts_src (Lua source), echo one message.
  -- Returns the server's port and what the child printed.
  local function child(env, url_host, secure, opts_src)
    local script = ([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = "./?.so;" .. package.cpath
      local moonws = require "moonws"
      local secure, ca = %s, %q
      local srv = assert(moonws.listen { port = 0, tls = secure and
        { cert = %q, key = %q } or nil })
      srv.onconnection = function(ws) ws.onmessage = function(e) ws:send(e.data) end end
      print("PORT " .. srv.port)
      local opts = %s
      opts.timeout = 5
      if secure then opts.tls = { cafile = ca } end
      local url = (secure and "wss://" or "ws://") .. %q .. ":" .. srv.port .. "/"
      local ws, message, name = moonws.connect(url, opts)
      if not ws then
        print("FAILED", name, message)
      else
        ws:send("hello from the child")
        print(ws:receive(5))
        ws:close()
      end
      srv:close()
    ]]):format(tostring(secure), c.ca, c.server_cert, c.server_key, opts_src or "{}", url_host)
    local argv = { "env" }
    for _, a in ipairs(UNSET) do argv[#argv + 1] = a end
    for _, a in ipairs(env) do argv[#argv + 1] = a end
    argv[#argv + 1] = "lua5.4"
    argv[#argv + 1] = "-e"
    argv[#argv + 1] = script
    local p = process.start(argv, 20)
    local finished = p:wait_exit(15)
    local out, err = p:stdout(), p:stderr()
    p:cleanup()
    assert.is_true(finished, "the child did not finish: " .. err)
    local port = tonumber(out:match("^PORT (%d+)\n"))
    assert.is_number(port, "the child printed: " .. out .. err)
    return port, out:gsub("^PORT %d+\n", ""), err
  end

  local ECHO = "hello from the child\ttext\n"
  local function dead_proxy() return "http://127.0.0.1:" .. free_port() end

  it("http_proxy: ws:// goes through the proxy", function()
    local port, out, err = child({ "http_proxy=" .. open.url }, "127.0.0.1", false)
    assert.equal(ECHO, out, err)
    assert.equal(1, connects(open, "127.0.0.1:" .. port))
  end)

  it("HTTP_PROXY (upper case) works too", function()
    local port, out, err = child({ "HTTP_PROXY=" .. open.url }, "127.0.0.1", false)
    assert.equal(ECHO, out, err)
    assert.equal(1, connects(open, "127.0.0.1:" .. port))
  end)

  it("credentials in http_proxy reach a BasicAuth proxy", function()
    local port, out, err = child({ ("http_proxy=http://user:pass@127.0.0.1:%d"):format(auth.port) },
      "127.0.0.1", false)
    assert.equal(ECHO, out, err)
    assert.equal(1, connects(auth, "127.0.0.1:" .. port))
  end)

  it("http_proxy to a proxy that refuses: the child gets error 'proxy'", function()
    local port, out = child({ "http_proxy=" .. auth.url }, "127.0.0.1", false)
    assert.equal(("FAILED\tproxy\tproxy %s refused the tunnel to 127.0.0.1:%d: proxy answered "
      .. "407 Proxy Authentication Required\n"):format(auth.url, port), out)
  end)

  it("https_proxy: wss:// goes through it (and not through http_proxy)", function()
    local port, out, err = child({ "https_proxy=" .. open.url, "http_proxy=" .. dead_proxy() },
      "localhost", true)
    assert.equal(ECHO, out, err)
    assert.equal(1, connects(open, "localhost:" .. port))
  end)

  it("ws:// ignores https_proxy", function()
    local port, out, err = child({ "https_proxy=" .. dead_proxy() }, "127.0.0.1", false)
    assert.equal(ECHO, out, err)
    assert.equal(0, connects(open, "127.0.0.1:" .. port))
  end)

  -- The proxy in these wants credentials the URL lacks: had the connection
  -- gone through it, it would have failed with 407.
  it("no_proxy=127.0.0.1 -> a direct connection", function()
    local port, out, err = child({ "http_proxy=" .. auth.url, "no_proxy=127.0.0.1" },
      "127.0.0.1", false)
    assert.equal(ECHO, out, err)
    assert.equal(0, connects(auth, "127.0.0.1:" .. port))
  end)

  it("NO_PROXY=localhost (upper case) -> a direct connection", function()
    local port, out, err = child({ "http_proxy=" .. auth.url, "NO_PROXY=localhost" },
      "localhost", false)
    assert.equal(ECHO, out, err)
    assert.equal(0, connects(auth, "localhost:" .. port))
  end)

  it("no_proxy with a domain suffix in a list (.localhost) -> direct", function()
    local port, out, err = child({ "http_proxy=" .. auth.url,
      "no_proxy=example.org, .localhost" }, "localhost", false)
    assert.equal(ECHO, out, err)
    assert.equal(0, connects(auth, "localhost:" .. port))
  end)

  it("no_proxy for wss:// too", function()
    local port, out, err = child({ "https_proxy=" .. auth.url, "no_proxy=localhost" },
      "localhost", true)
    assert.equal(ECHO, out, err)
    assert.equal(0, connects(auth, "localhost:" .. port))
  end)

  it("a no_proxy entry for another port does not exempt the host", function()
    local port, out, err = child({ "http_proxy=" .. open.url, "no_proxy=127.0.0.1:1" },
      "127.0.0.1", false)
    assert.equal(ECHO, out, err)
    assert.equal(1, connects(open, "127.0.0.1:" .. port))
  end)

  it("no_proxy for another host does not exempt this one", function()
    local port, out, err = child({ "http_proxy=" .. open.url, "no_proxy=example.org,localhost" },
      "127.0.0.1", false)
    assert.equal(ECHO, out, err)
    assert.equal(1, connects(open, "127.0.0.1:" .. port))
  end)

  it("proxy = false ignores http_proxy", function()
    local port, out, err = child({ "http_proxy=" .. auth.url }, "127.0.0.1", false,
      "{ proxy = false }")
    assert.equal(ECHO, out, err)
    assert.equal(0, connects(auth, "127.0.0.1:" .. port))
  end)

  it("the proxy option wins over http_proxy", function()
    local port, out, err = child({ "http_proxy=" .. dead_proxy() }, "127.0.0.1", false,
      ("{ proxy = %q }"):format(open.url))
    assert.equal(ECHO, out, err)
    assert.equal(1, connects(open, "127.0.0.1:" .. port))
  end)
end)

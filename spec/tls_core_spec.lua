-- The TLS and HTTP CONNECT bindings of moonws.core (csrc/lua/ltls.c), below
-- the public API: two conns over a real 127.0.0.1 connection made with
-- core.listen/core.connect, driven by hand with a poll() poller.  The
-- certificates (a throwaway CA, a server certificate for localhost and
-- 127.0.0.1, a client certificate) are made by the `openssl` command into a
-- temporary directory and removed afterwards.  The proxy is a fake one
-- written here with core.listen: it reads the CONNECT, answers, and then
-- plays the origin's TLS server on the same socket.

local core = require "moonws.core"

local dir -- the temporary directory of the certificates
local function file(name) return dir .. "/" .. name end

local function sh(cmd)
  local ok = os.execute("cd " .. dir .. " && " .. cmd .. " >/dev/null 2>&1")
  assert(ok, "command failed: " .. cmd)
end

local function make_certs()
  local p = assert(io.popen("mktemp -d /tmp/moonws-tls-spec-XXXXXX"))
  dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp failed")
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
  sh("openssl req -x509 " .. ec .. " -keyout ca.key -out ca.pem -days 2"
    .. " -subj '/CN=moonws spec CA'"
    .. " -addext basicConstraints=critical,CA:TRUE"
    .. " -addext keyUsage=critical,keyCertSign,cRLSign")
  local ext = assert(io.open(file("server.ext"), "w"))
  ext:write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
  ext:close()
  for _, who in ipairs { { "server", "localhost", "-extfile server.ext" },
                         { "client", "spec client", "" } } do
    local name, cn, extra = who[1], who[2], who[3]
    sh(("openssl req %s -keyout %s.key -out %s.csr -subj '/CN=%s'"):format(ec, name, name, cn))
    sh(("openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
      .. " -out %s.pem -days 2 %s"):format(name, name, extra))
  end
end

local poller = assert(core.poller(true))
local fds, evs = {}, {}

-- Wait until one of waits ({fd, "read"|"write"}, ...) is ready; false
-- after 2 s of nothing.
local function wait(waits)
  for _, w in ipairs(waits) do assert(poller:set(w[1], w[2] == "read", w[2] == "write")) end
  local n = poller:wait(2, fds, evs)
  for _, w in ipairs(waits) do poller:set(w[1], false, false) end
  return n > 0
end

-- A connected client conn and the server conn accepted for it.
local function tcp_pair()
  local l = assert(core.listen("127.0.0.1", 0))
  local client = assert(core.connect(assert(core.numeric_address("127.0.0.1", l:port()))))
  local server
  repeat
    server = l:accept()
  until server or not wait { { l:fd(), "read" } }
  l:close()
  assert(server, "no connection to accept")
  assert(wait { { client:fd(), "write" } })
  assert.is_true(client:connect_result())
  return client, server
end

-- Drive both handshakes; returns each side's results as a list
-- ({true} or {nil, message, name}).  A side that fails shuts down so its
-- peer does not wait for it.
local function handshake(c, s)
  local done, want = {}, {}
  local conns = { c, s }
  for _ = 1, 1000 do
    local waits = {}
    for i, conn in ipairs(conns) do
      if not done[i] then
        local r = table.pack(core.tls_handshake(conn))
        if r[1] == 0 then
          want[i] = r[2]
          waits[#waits + 1] = { conn:fd(), r[2] }
        else
          done[i] = r
          if r[1] == nil then conn:shutdown() end
        end
      end
    end
    if done[1] and done[2] then break end
    if not wait(waits) then break end
  end
  return done[1] or { 0, want[1] }, done[2] or { 0, want[2] }
end

-- Flush conn's queued bytes, waiting for the socket as it asks; true when
-- all went out.
local function flush_all(conn)
  for _ = 1, 10000 do
    local left, want = conn:flush()
    assert(left, want)
    if left == 0 then return true end
    if not wait { { conn:fd(), want } } then return false end
  end
end

-- Move bytes from writer to reader until parse() (of the reader) returns
-- something other than nil: flush, read, and wait on the sockets only when
-- the reader's TLS holds nothing pending.
local function pump(writer, reader, parse)
  for _ = 1, 100000 do
    local left, want = writer:flush()
    assert(left, want)
    local got = table.pack(parse())
    if got.n > 0 and got[1] ~= nil then return table.unpack(got, 1, got.n) end
    local n, rwant = reader:read()
    assert(n ~= nil, rwant)
    assert(n ~= false, "end of stream")
    if n == 0 and not reader:pending() then
      local waits = { { reader:fd(), rwant } }
      if left > 0 then waits[2] = { writer:fd(), want } end
      assert(wait(waits), "no progress")
    end
  end
  error("no result")
end

local server_ctx, client_ctx

describe("moonws.core TLS and proxy bindings", function()

  setup(function()
    make_certs()
    server_ctx = assert(core.tls_context { server = true, cert = file("server.pem"), key = file("server.key") })
    client_ctx = assert(core.tls_context { cafile = file("ca.pem") })
  end)

  teardown(function()
    if dir then os.execute("rm -rf " .. dir) end
  end)

  local function tls_pair(servername, cctx, sctx)
    local c, s = tcp_pair()
    assert.is_true(core.tls_start(c, cctx or client_ctx, servername))
    assert.is_true(core.tls_start(s, sctx or server_ctx))
    return c, s
  end

  describe("core TLS", function()
    it("handshakes client and server, then carries a WebSocket exchange", function()
      local c, s = tls_pair("localhost")
      local cr, sr = handshake(c, s)
      assert.same({ true, n = 1 }, cr)
      assert.same({ true, n = 1 }, sr)
      assert.is_true(core.tls_handshake(c)) -- done stays done

      local ci, si = core.tls_info(c), core.tls_info(s)
      assert.equal("TLSv1.3", ci.version)
      assert.is_string(ci.cipher)
      assert.equal("http/1.1", ci.alpn)
      assert.equal("http/1.1", si.alpn)
      assert.equal("CN=localhost", ci.peer_subject)
      assert.is_true(ci.verified)
      assert.equal("localhost", si.servername) -- SNI
      assert.is_nil(si.peer_subject)            -- no client certificate

      -- The opening handshake and frames, through conn:read/flush.
      assert.is_true(c:request { host = "localhost", target = "/tls" })
      local req = pump(c, s, function() return s:parse_request(16384) end)
      assert.equal("/tls", req.path)
      assert.is_true(s:respond_upgrade(req.key))
      assert.is_true(pump(s, c, function() return c:parse_response(16384) end))
      c:handshake_done()
      s:handshake_done()

      assert.is_true(c:send("hello over TLS"))
      local kind, data = pump(c, s, function() return s:next_event() end)
      assert.equal("text", kind)
      assert.equal("hello over TLS", data)

      -- A message of many records: decrypted bytes wait in the transport,
      -- and reading goes on while pending() says so.
      local big = ("0123456789abcdef"):rep(65536) -- 1 MiB
      assert.is_true(s:send(big, true))
      kind, data = pump(s, c, function() return c:next_event() end)
      assert.equal("binary", kind)
      assert.equal(#big, #data)
      assert.is_true(data == big)

      c:release()
      s:release()
    end)

    it("verifies by IP address and sends no SNI for it", function()
      local c, s = tls_pair("127.0.0.1")
      local cr, sr = handshake(c, s)
      assert.is_true(cr[1])
      assert.is_true(sr[1])
      assert.is_true(core.tls_info(c).verified)
      assert.is_nil(core.tls_info(s).servername)
      c:release()
      s:release()
    end)

    it("fails a wrong host name or an unknown CA with nil, message, \"tls\"", function()
      local c, s = tls_pair("example.org")
      local cr, sr = handshake(c, s)
      assert.same({ nil, "certificate verify failed: hostname mismatch", "tls", n = 3 }, cr)
      assert.is_nil(sr[1])
      assert.equal("tls", sr[3])
      -- The failure sticks.
      assert.same({ nil, "certificate verify failed: hostname mismatch", "tls" },
        { core.tls_handshake(c) })
      c:release()
      s:release()

      -- The system trust store does not know the spec's CA.
      local system = assert(core.tls_context {})
      c, s = tls_pair("localhost", system)
      cr = handshake(c, s)
      assert.same({ nil, "certificate verify failed: unable to get local issuer certificate",
        "tls", n = 3 }, cr)
      c:release()
      s:release()
    end)

    it("connects anywhere with verify = false, and says it did not verify", function()
      local insecure = assert(core.tls_context { verify = false })
      local c, s = tls_pair("example.org", insecure)
      local cr = handshake(c, s)
      assert.is_true(cr[1])
      assert.is_false(core.tls_info(c).verified)
      c:release()
      s:release()
    end)

    it("accepts and refuses client certificates (mutual TLS)", function()
      local mtls = assert(core.tls_context { server = true, verify = true, cafile = file("ca.pem"),
        cert = file("server.pem"), key = file("server.key") })
      local with_cert = assert(core.tls_context { cafile = file("ca.pem"),
        cert = file("client.pem"), key = file("client.key") })
      local c, s = tls_pair("localhost", with_cert, mtls)
      local cr, sr = handshake(c, s)
      assert.is_true(cr[1])
      assert.is_true(sr[1])
      assert.equal("CN=spec client", core.tls_info(s).peer_subject)
      assert.is_true(core.tls_info(s).verified)
      c:release()
      s:release()

      c, s = tls_pair("localhost", client_ctx, mtls)
      cr, sr = handshake(c, s)
      assert.same({ nil, "peer did not return a certificate", "tls", n = 3 }, sr)
      c:release()
      s:release()
    end)

    it("reports bad configurations as nil, message, \"tls\" and raises on misuse", function()
      local ctx, message, name = core.tls_context { server = true, cert = file("nope.pem"),
        key = file("server.key") }
      assert.is_nil(ctx)
      assert.equal("cannot load certificate " .. file("nope.pem") .. ": no such file", message)
      assert.equal("tls", name)
      ctx, message, name = core.tls_context { server = true, cert = file("server.pem"),
        key = file("client.key") }
      assert.is_nil(ctx)
      assert.matches("private key does not match the certificate", message, 1, true)
      assert.equal("tls", name)
      ctx, message = core.tls_context { server = true }
      assert.is_nil(ctx)
      assert.equal("a TLS server needs a certificate (cert)", message)
      assert.has_error(function() core.tls_context { sever = true } end, "unknown TLS option 'sever'")
      assert.has_error(function() core.tls_context { verify = "yes" } end,
        "TLS option 'verify' must be a boolean")
      assert.has_error(function() core.tls_context { cafile = 1 } end,
        "TLS option 'cafile' must be a string")
      assert.has_error(function() core.tls_context { cafile = "a\0b" } end)
      assert.has_error(function() core.tls_context() end)
    end)

    it("keeps a context alive while connections use it", function()
      local c, s = tcp_pair()
      do
        local ctx <close> = assert(core.tls_context { cafile = file("ca.pem") })
        assert.is_true(core.tls_start(c, ctx, "localhost"))
        assert.matches("moonws.tls_context %(client", tostring(ctx))
      end -- closed here, and collected below: the connection keeps its reference
      collectgarbage()
      collectgarbage()
      assert.is_true(core.tls_start(s, server_ctx))
      local cr, sr = handshake(c, s)
      assert.is_true(cr[1])
      assert.is_true(sr[1])
      c:release()
      s:release()

      local closed = assert(core.tls_context { verify = false })
      closed:close()
      closed:close() -- idempotent
      assert.matches("closed", tostring(closed))
      c = tcp_pair()
      assert.has_error(function() core.tls_start(c, closed) end,
        "attempt to use a closed TLS context")
      c:release()
    end)

    it("refuses to start TLS twice, with bytes queued, or on a closed conn", function()
      local c, s = tcp_pair()
      assert.has_error(function() core.tls_handshake(c) end,
        "not a TLS connection (call tls_start first)")
      assert.is_nil(core.tls_info(c))
      assert.is_true(c:request { host = "localhost", target = "/" })
      assert.has_error(function() core.tls_start(c, client_ctx, "localhost") end,
        "tls_start with bytes queued to send (flush first)")
      assert.is_true(flush_all(c))
      -- The server got plain bytes before TLS: they cannot be TLS.
      repeat
        local n, want = s:read()
        assert(n, want)
      until n > 0 or not wait { { s:fd(), "read" } }
      assert.same({ nil, "the peer sent data before the TLS handshake", "tls" },
        { core.tls_start(s, server_ctx) })
      assert.is_true(core.tls_start(c, client_ctx, "localhost"))
      assert.is_nil(core.tls_info(c)) -- no handshake yet
      assert.has_error(function() core.tls_start(c, client_ctx, "localhost") end,
        "TLS already started on this connection")
      c:close_fd()
      assert.same({ nil, "socket closed", "closed" }, { core.tls_handshake(c) })
      assert.same({ nil, "socket closed", "closed" }, { core.tls_start(c, client_ctx) })
      c:release()
      s:release()
      assert.has_error(function() core.tls_handshake(c) end,
        "attempt to use a closed websocket connection")
    end)

    it("fails the handshake of a server that gets plain HTTP", function()
      local c, s = tcp_pair()
      assert.is_true(core.tls_start(s, server_ctx))
      assert.is_true(c:request { host = "localhost", target = "/" })
      assert.is_true(flush_all(c))
      local r
      repeat
        r = table.pack(core.tls_handshake(s))
      until r[1] ~= 0 or not wait { { s:fd(), r[2] } }
      assert.is_nil(r[1])
      assert.equal("http request", r[2])
      assert.equal("tls", r[3])
      c:release()
      s:release()
    end)
  end)

  describe("core HTTP CONNECT", function()
    it("queues exactly the CONNECT request", function()
      local c = core.conn("client")
      assert.is_true(core.proxy_request(c, "example.org:443", "Basic dXNlcjpwYXNz"))
      assert.equal("CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n"
        .. "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n", c:take_output())
      assert.is_true(core.proxy_request(c, "[::1]:8080"))
      assert.equal("CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", c:take_output())
      c:release()
    end)

    it("raises on an authority or credentials that could break the request", function()
      local c = core.conn("client")
      for _, bad in ipairs { "", "example.org", "example.org:", "example.org:0",
          "example.org:65536", "example.org:443\r\nX: y", "exa mple.org:443",
          "::1:443", "example.org:443\0", "example.org:http" } do
        local ok, err = pcall(core.proxy_request, c, bad)
        assert.is_false(ok)
        assert.matches("invalid authority (expected host:port)", err, 1, true)
      end
      for _, bad in ipairs { "Basic a\r\nX: y", "Basic a\nb", "Basic \0" } do
        local ok, err = pcall(core.proxy_request, c, "example.org:443", bad)
        assert.is_false(ok)
        assert.matches("invalid Proxy-Authorization value", err, 1, true)
      end
      assert.equal("", c:take_output()) -- nothing was queued
      c:release()
    end)

    it("parses the proxy's answer: incomplete, 2xx (exactly the head), refusals", function()
      local c = core.conn("client")
      c:feed("HTTP/1.1 200 Connection established\r\n")
      assert.equal(0, select("#", core.proxy_response(c, 1024)))
      -- The bytes after the head are the tunnel's: here, a second answer.
      c:feed("Via: fake\r\n\r\nHTTP/1.1 407 Proxy Authentication Required\r\n"
        .. "Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n")
      assert.same({ true }, { core.proxy_response(c, 1024) })
      assert.same({ false, 407, "proxy answered 407 Proxy Authentication Required" },
        { core.proxy_response(c, 1024) })
      c:release()

      c = core.conn("client")
      c:feed("HTTP/1.0 502\r\n\r\n")
      assert.same({ false, 502, "proxy answered 502 Bad Gateway" }, { core.proxy_response(c, 1024) })
      c:release()

      c = core.conn("client")
      c:feed("SSH-2.0-OpenSSH_9.2\r\n\r\n")
      local ok, status, message = core.proxy_response(c, 1024)
      assert.is_false(ok)
      assert.is_nil(status)
      assert.matches("^malformed proxy response", message)
      c:release()

      c = core.conn("client")
      c:feed("HTTP/1.1 200 OK\r\nX-Long: " .. ("x"):rep(200))
      assert.same({ false, nil, "proxy response header over 100 bytes" },
        { core.proxy_response(c, 100) })
      assert.has_error(function() core.proxy_response(c, 0) end)
      c:release()
    end)

    -- A fake proxy on 127.0.0.1: reads the CONNECT, then answers 407 or 200;
    -- after 200 it plays the origin's TLS server on the same socket.
    local function through_fake_proxy(answer)
      local c, p = tcp_pair()
      assert.is_true(core.proxy_request(c, "localhost:443", "Basic c3BlYzpzZWNyZXQ="))
      -- CONNECT is not a WebSocket upgrade: parse_request refuses it (405)
      -- but hands over the parsed request, which is all the fake needs.
      local ok, status, _, req = pump(c, p, function() return p:parse_request(4096) end)
      assert.is_false(ok)
      assert.equal(405, status)
      assert.equal("CONNECT", req.method)
      assert.equal("localhost:443", req.path)
      assert.equal("localhost:443", req.headers.host)
      assert.equal("Basic c3BlYzpzZWNyZXQ=", req.headers["proxy-authorization"])
      if answer == 407 then
        assert.is_true(p:respond_refusal(407, nil, { ["Proxy-Authenticate"] = 'Basic realm="spec"' },
          "credentials needed"))
      else
        assert.is_true(p:respond_refusal(200, "Connection established"))
      end
      return c, p, table.pack(pump(p, c, function() return core.proxy_response(c, 4096) end))
    end

    it("opens a tunnel through a proxy and runs TLS inside it", function()
      local c, p, answer = through_fake_proxy(200)
      assert.same({ true, n = 1 }, answer)
      assert.is_true(core.tls_start(c, client_ctx, "localhost"))
      assert.is_true(core.tls_start(p, server_ctx))
      local cr, sr = handshake(c, p)
      assert.is_true(cr[1])
      assert.is_true(sr[1])
      assert.equal("CN=localhost", core.tls_info(c).peer_subject)
      c:release()
      p:release()
    end)

    it("reports the proxy's refusal", function()
      local c, p, answer = through_fake_proxy(407)
      assert.same({ false, 407, "proxy answered 407 Proxy Authentication Required", n = 3 }, answer)
      c:release()
      p:release()
    end)
  end)

end)

-- Every core, graceful restarts, behind nginx (issue 9): server:shutdown,
-- reuseport, moonws.graceful, the worker pool (moonws.pool, driven through
-- examples/pool/) and an nginx reverse proxy in front of two moonws
-- servers.  Workers greet each client with "hello from <pid>", so the
-- spec sees which process serves which connection.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local core = require "moonws.core"

local run_until = helpers.run_until

local free_port = helpers.free_port

-- An event-style client that records its greeting, echoes and close.
local function client(port, path)
  local rec = { echoes = {} }
  local ws = moonws.new(("ws://127.0.0.1:%d%s"):format(port, path or "/"))
  rec.ws = ws
  ws.onmessage = function(e)
    if not rec.greeting then
      rec.greeting = e.data
      rec.pid = tonumber(e.data:match("^hello from (%d+)$"))
    else
      rec.echoes[#rec.echoes + 1] = e.data
    end
  end
  ws.onerror = function(e) rec.error = e.error end
  ws.onclose = function(e) rec.close = e end
  return rec
end

local function clients(port, n)
  local list = {}
  for i = 1, n do list[i] = client(port) end
  run_until(function()
    for _, c in ipairs(list) do
      if not c.greeting then return false end
    end
    return true
  end, 20, n .. " greetings")
  return list
end

local function all_closed(list)
  return function()
    for _, c in ipairs(list) do
      if not c.close then return false end
    end
    return true
  end
end

-- Every client saw the closing handshake of code `code`, cleanly.
local function assert_clean_closes(list, code)
  for i, c in ipairs(list) do
    assert.is_table(c.close, "client " .. i .. " never closed")
    assert.same({ code = code, wasClean = true }, { code = c.close.code,
      wasClean = c.close.wasClean }, "client " .. i .. " (worker " .. tostring(c.pid) .. ")")
  end
end

-- The pids greeting short-lived probe connections until `want` distinct
-- ones were seen (the kernel spreads connections; probing until every
-- worker has answered proves they all listen).
local function probe_pids(port, want, timeout)
  local seen, count = {}, 0
  local deadline = core.now() + (timeout or 15)
  while count < want do
    assert(core.now() < deadline, ("only %d of %d workers answered"):format(count, want))
    local ws = moonws.connect(("ws://127.0.0.1:%d/"):format(port), { timeout = 5 })
    if ws then
      local greeting = ws:receive(5)
      local pid = greeting and tonumber(greeting:match("^hello from (%d+)$"))
      if pid and not seen[pid] then seen[pid] = true; count = count + 1 end
      ws:close()
    else
      moonws.sleep(0.05) -- not listening yet
    end
  end
  return seen
end

---------------------------------------------------------------- the pool

-- The example pool (examples/pool/pool.lua) on port with n workers.
local Pool = {}
Pool.__index = Pool

local function start_pool(port, n)
  local p = process.start({ "lua5.4", "examples/pool/pool.lua", tostring(port), tostring(n) },
    60)
  local self = setmetatable({ p = p, port = port }, Pool)
  self.pid = tonumber(p:wait_for("^POOL%s+(%d+)", 10, helpers.idle))
  return self
end

-- The pool's log: {what = "START"|"EXIT", slot, pid, how} in order.
function Pool:events()
  local list = {}
  for line in self.p:stdout():gmatch("[^\n]+") do
    local what, slot, pid, how = line:match("^(%u+)%s+(%d+)%s+(%d+)%s*(%S*)")
    if what then
      list[#list + 1] = { what = what, slot = tonumber(slot), pid = tonumber(pid), how = how }
    end
  end
  return list
end

-- The current worker pid of each slot.
function Pool:workers()
  local slots = {}
  for _, e in ipairs(self:events()) do
    if e.what == "START" then slots[e.slot] = e.pid end
  end
  return slots
end

function Pool:signal(name) assert(core.kill(self.pid, name)) end

-- Stop with SIGTERM; returns the pool's exit status.
function Pool:stop(timeout)
  self:signal("TERM")
  assert.is_true(self.p:wait_exit(timeout or 20, helpers.idle), "the pool did not exit")
  return self.p:exit_status()
end

-- Kill what is left (the pool first, so nothing is restarted).
function Pool:cleanup()
  pcall(core.kill, self.pid, "KILL")
  for _, e in ipairs(self:events()) do pcall(core.kill, e.pid, "KILL") end
  self.p:cleanup()
end

describe("every core, graceful restarts, behind nginx #host", function()
  describe("server:shutdown", function()
    it("closes every client with 1001 going away, waits for the handshakes, stops accepting",
      function()
        local srv = assert(moonws.listen { port = 0 })
        srv.onconnection = function(ws) ws:send("hello from 1") end
        local list = clients(srv.port, 5)
        local result
        moonws.spawn(function() result = { srv:shutdown() } end)
        run_until(function() return result ~= nil end, 10, "shutdown")
        assert.same({ true }, result)
        run_until(all_closed(list), 5, "the clients' onclose")
        for i, c in ipairs(list) do
          assert.same({ code = 1001, reason = "going away", wasClean = true }, {
            code = c.close.code, reason = c.close.reason, wasClean = c.close.wasClean }, "client " .. i)
        end
        assert.is_nil(srv:clients()())
        local ws, _, name = moonws.connect("ws://127.0.0.1:" .. srv.port, { timeout = 5 })
        assert.is_nil(ws)
        assert.equal("refused", name)
        assert.matches("closed", tostring(srv))
      end)

    it("takes a code and reason; a second call only waits", function()
      local srv = assert(moonws.listen { port = 0 })
      srv.onconnection = function(ws) ws:send("hello from 1") end
      local list = clients(srv.port, 2)
      assert.is_true(srv:shutdown(1012, "restarting")) -- main thread: drives the loop
      assert.is_true(srv:shutdown(4000, "ignored"))
      run_until(all_closed(list), 5, "onclose")
      for _, c in ipairs(list) do
        assert.same({ 1012, "restarting", true }, { c.close.code, c.close.reason, c.close.wasClean })
      end
    end)

    it("is bounded by close_timeout: a peer that never answers is dropped", function()
      local srv = assert(moonws.listen { port = 0, close_timeout = 0.5 })
      srv.onconnection = function(ws) ws:send("hello from 1") end
      local good = clients(srv.port, 1)[1]
      local deaf = clients(srv.port, 1)[1]
      deaf.ws:pause() -- reads nothing: never sees the close frame, never answers
      local t0 = core.now()
      local ok, message, name = srv:shutdown()
      local elapsed = core.now() - t0
      assert.is_nil(ok)
      assert.equal("1 of 2 connections did not close cleanly", message)
      assert.equal("closed", name)
      assert.is_true(elapsed >= 0.4 and elapsed < 5, "took " .. elapsed)
      run_until(function() return good.close ~= nil end, 5)
      assert.same({ 1001, true }, { good.close.code, good.close.wasClean })
      deaf.ws:terminate()
    end)

    it("a handshake that completes during the shutdown gets 101, then close 1001", function()
      -- A raw client (Python, standard library): half a request, then the
      -- rest once the flag file exists; it answers the close frame.
      local peer = [[
import os, socket, struct, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
req = (b"GET /late HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
       b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
       b"Sec-WebSocket-Version: 13\r\n\r\n")
s.sendall(req[:30]); print("HALF", flush=True)
while not os.path.exists(sys.argv[2]): time.sleep(0.01)
s.sendall(req[30:])
buf = b""
while b"\r\n\r\n" not in buf: buf += s.recv(4096)
head, rest = buf.split(b"\r\n\r\n", 1)
print("STATUS", head.split(b"\r\n")[0].decode(), flush=True)
while len(rest) < 2 or len(rest) < 2 + (rest[1] & 127): rest += s.recv(4096)
payload = rest[2:2 + (rest[1] & 127)]
print("FRAME", rest[0], struct.unpack(">H", payload[:2])[0], payload[2:].decode(), flush=True)
mask = b"\x01\x02\x03\x04"
body = payload[:2]
s.sendall(bytes([0x88, 0x80 | len(body)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(body)))
while s.recv(4096): pass
print("EOF", flush=True)
]]
      local srv = assert(moonws.listen { port = 0 })
      local reached = false
      srv.onconnection = function() reached = true end
      local flag = os.tmpname()
      os.remove(flag)
      local p = process.start({ "/usr/bin/python3", "-c", peer, tostring(srv.port), flag }, 30)
      finally(function() p:cleanup(); os.remove(flag) end)
      p:wait_for("^HALF", 10, helpers.idle)
      helpers.idle(0.1)
      local result
      moonws.spawn(function() result = { srv:shutdown() } end)
      helpers.idle(0.1)
      assert.is_nil(result) -- waiting for the connection still in its handshake
      assert(io.open(flag, "w")):close()
      run_until(function() return result ~= nil end, 10, "shutdown")
      assert.same({ true }, result)
      assert.is_true(p:wait_exit(10, helpers.idle))
      assert.equal("HALF\nSTATUS HTTP/1.1 101 Switching Protocols\nFRAME 136 1001 going away\nEOF\n",
        p:stdout())
      assert.is_false(reached)
    end)

    it("raises on codes a server may not send", function()
      local srv = assert(moonws.listen { port = 0 })
      assert.has_error(function() srv:shutdown(1005) end)
      assert.has_error(function() srv:shutdown(1006) end)
      assert.has_error(function() srv:shutdown(999) end)
      assert.has_error(function() srv:shutdown(1001, 42) end)
      assert.has_error(function() srv:shutdown(1001, ("x"):rep(124)) end)
      srv:close()
    end)
  end)

  describe("reuseport", function()
    it("lets several listeners share one port; without it the second fails", function()
      local a = assert(moonws.listen { port = 0, reuseport = true })
      local b = assert(moonws.listen { port = a.port, reuseport = true })
      assert.equal(a.port, b.port)
      local c, _, name = moonws.listen { port = a.port }
      assert.is_nil(c)
      assert.equal("io", name)
      assert.has_error(function() moonws.listen { port = 0, reuseport = 1 } end,
        "option 'reuseport' must be a boolean")
      a:close()
      b:close()
    end)
  end)

  describe("moonws.graceful", function()
    it("SIGTERM closes every client with 1001 and the process exits 0", function()
      local port = free_port()
      local p = process.start({ "lua5.4", "examples/pool/server.lua", tostring(port) }, 30)
      local pid
      finally(function()
        if pid then pcall(core.kill, pid, "KILL") end
        p:cleanup()
      end)
      pid = next(probe_pids(port, 1))
      local list = clients(port, 10)
      for _, c in ipairs(list) do assert.equal(pid, c.pid) end
      assert(core.kill(pid, "TERM"))
      run_until(all_closed(list), 10, "onclose")
      assert_clean_closes(list, 1001)
      assert.is_true(p:wait_exit(10, helpers.idle))
      assert.equal(0, p:exit_status(), p:stderr())
    end)

    it("checks its arguments", function()
      assert.has_error(function() moonws.graceful() end)
      assert.has_error(function() moonws.graceful({}) end)
    end)
  end)

  describe("the worker pool", function()
    it("spreads 200 clients over 2 workers; SIGTERM closes all with 1001 and exits 0", function()
      local pool = start_pool(free_port(), 2)
      finally(function() pool:cleanup() end)
      local pids = probe_pids(pool.port, 2)
      local list = clients(pool.port, 200)
      local per = {}
      for i, c in ipairs(list) do
        assert.is_true(pids[c.pid] == true, "client " .. i .. " greeted by " .. tostring(c.pid))
        per[c.pid] = (per[c.pid] or 0) + 1
        c.ws:send("message " .. i)
      end
      for pid in pairs(pids) do assert.is_true((per[pid] or 0) > 0, "worker " .. pid .. " got none") end
      run_until(function()
        for _, c in ipairs(list) do if #c.echoes < 1 then return false end end
        return true
      end, 20, "echoes")
      for i, c in ipairs(list) do assert.same({ "message " .. i }, c.echoes) end

      pool:signal("TERM")
      run_until(all_closed(list), 20, "onclose of 200 clients")
      assert_clean_closes(list, 1001)
      for _, c in ipairs(list) do assert.equal("going away", c.close.reason) end
      assert.is_true(pool.p:wait_exit(20, helpers.idle), "the pool did not exit")
      assert.equal(0, pool.p:exit_status(), pool.p:stderr())
      local exits = 0
      for _, e in ipairs(pool:events()) do
        if e.what == "EXIT" then exits = exits + 1; assert.equal("0", e.how) end
      end
      assert.equal(2, exits)
    end)

    it("restarts a worker killed with SIGKILL", function()
      local pool = start_pool(free_port(), 2)
      finally(function() pool:cleanup() end)
      probe_pids(pool.port, 2)
      local victim = pool:workers()[1]
      assert(core.kill(victim, "KILL"))
      local replacement
      run_until(function()
        local now_pid = pool:workers()[1]
        if now_pid ~= victim then replacement = now_pid end
        return replacement ~= nil
      end, 10, "a restarted worker 1")
      local seen = {}
      for _, e in ipairs(pool:events()) do
        seen[#seen + 1] = e.what .. " " .. e.slot .. (e.what == "EXIT" and " " .. e.how or "")
      end
      assert.same({ "START 1", "START 2", "EXIT 1 KILL", "START 1" }, seen)
      -- The new worker serves: probing finds it.
      local deadline = core.now() + 15
      while not probe_pids(pool.port, 2)[replacement] do
        assert(core.now() < deadline, "the restarted worker never answered")
      end
      assert.equal(0, pool:stop())
    end)

    it("SIGHUP replaces the workers one by one; no client sees an unclean close", function()
      local pool = start_pool(free_port(), 2)
      finally(function() pool:cleanup() end)
      local old = probe_pids(pool.port, 2)
      local list = clients(pool.port, 20)
      local old_slots = pool:workers()
      pool:signal("HUP")
      -- Clients keep arriving during the roll: each lands on a live worker.
      local during = {}
      local deadline = core.now() + 20
      repeat
        during[#during + 1] = client(pool.port)
        helpers.idle(0.05)
        local done = 0
        for _, e in ipairs(pool:events()) do
          if e.what == "EXIT" and old[e.pid] then done = done + 1 end
        end
        assert(core.now() < deadline, "the roll did not finish")
      until done == 2
      run_until(all_closed(list), 10, "the old workers' clients closing")
      assert_clean_closes(list, 1001)

      local seen = {}
      for _, e in ipairs(pool:events()) do
        seen[#seen + 1] = e.what .. " " .. e.slot .. (e.what == "EXIT" and " " .. e.how or "")
        if e.what == "EXIT" then assert.is_true(old[e.pid], "a new worker exited") end
      end
      assert.same({ "START 1", "START 2", "START 1", "EXIT 1 0", "START 2", "EXIT 2 0" }, seen)
      local new_slots = pool:workers()
      assert.is_true(new_slots[1] ~= old_slots[1] and new_slots[2] ~= old_slots[2])
      -- New connections reach only the new workers.
      local fresh = probe_pids(pool.port, 2)
      assert.same({ [new_slots[1]] = true, [new_slots[2]] = true }, fresh)

      run_until(function()
        for _, c in ipairs(during) do if not (c.greeting or c.close) then return false end end
        return true
      end, 10, "the clients that came during the roll")
      assert.equal(0, pool:stop())
      run_until(all_closed(during), 10, "onclose")
      for i, c in ipairs(during) do
        assert.is_string(c.greeting, "client " .. i .. " that came during the roll")
      end
      assert_clean_closes(during, 1001)
    end)
    it("is an object: pool.new, :roll() and :stop() from code do what SIGHUP and SIGTERM do",
      function()
      -- A program that drives its pool only through the object's methods.
      local port = free_port()
      local path = os.tmpname() .. ".lua"
      local f = assert(io.open(path, "w"))
      f:write(([[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath
local moonws, pool = require "moonws", require "moonws.pool"
local events = {}
local p = pool.new {
  script = "examples/pool/server.lua", args = { %d }, workers = 2,
  onworker = function(e) events[#events + 1] = e.type .. " " .. e.worker end,
}
moonws.spawn(function()
  -- Both workers listen (and so told the pool they are ready) once each
  -- has greeted a client.
  local seen, count = {}, 0
  while count < 2 do
    local ws = moonws.connect("ws://127.0.0.1:%d/", { timeout = 5 })
    local hello = ws and ws:receive(5)
    if hello and not seen[hello] then seen[hello] = true; count = count + 1 end
    if ws then ws:close() else moonws.sleep(0.02) end
  end
  p:roll()
  p:stop()
end)
local ok, err = p:run()
print(table.concat(events, ","), ok, err)
]]):format(port, port))
      f:close()
      local p = process.start({ "lua5.4", path }, 60)
      finally(function() p:cleanup(); os.remove(path) end)
      assert.is_true(p:wait_exit(40, helpers.idle), p:stderr())
      assert.equal(0, p:exit_status(), p:stderr())
      -- The roll replaces 1 then 2; the stop ends both, in either order.
      local events, rest = p:stdout():match("^(start 1,start 2,start 1,exit 1,start 2,exit 2),(.*)$")
      assert.equal("start 1,start 2,start 1,exit 1,start 2,exit 2", events, p:stdout())
      assert.is_truthy(rest == "exit 1,exit 2\ttrue\tnil\n" or rest == "exit 2,exit 1\ttrue\tnil\n",
        p:stdout())
    end)
  end)

  describe("behind nginx", function()
    -- nginx 1.22 as a WebSocket reverse proxy: the upstream holds both
    -- backends; Upgrade/Connection are passed on, proxy_read_timeout keeps
    -- idle sockets.  The tested configuration the README shows.
    local function nginx_conf(prefix, listen_port, backends)
      local servers = {}
      for i, port in ipairs(backends) do
        servers[i] = ("    server 127.0.0.1:%d;"):format(port)
      end
      return ([[
pid %s/nginx.pid;
error_log %s/error.log info;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path %s/tmp/body;
  proxy_temp_path %s/tmp/proxy;
  fastcgi_temp_path %s/tmp/fastcgi;
  uwsgi_temp_path %s/tmp/uwsgi;
  scgi_temp_path %s/tmp/scgi;

  map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
  }
  upstream moonws {
%s
  }
  server {
    listen 127.0.0.1:%d;
    location / {
      proxy_pass http://moonws;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
]]):format(prefix, prefix, prefix, prefix, prefix, prefix, prefix,
        table.concat(servers, "\n"), listen_port)
    end

    it("proxies clients to both moonws backends; a backend's shutdown reaches them as 1001",
      function()
        local backends, got = {}, {}
        for i = 1, 2 do
          local srv = assert(moonws.listen { port = 0 })
          got[i] = {}
          srv.onconnection = function(ws, request)
            got[i][#got[i] + 1] = request.headers["x-forwarded-for"]
            ws:send("hello from " .. i)
            ws.onmessage = function(e) ws:send("backend " .. i .. ": " .. e.data) end
          end
          backends[i] = srv
        end
        local prefix = os.tmpname()
        os.remove(prefix)
        assert(os.execute("mkdir -p " .. prefix .. "/tmp"))
        local port = free_port()
        local conf = prefix .. "/nginx.conf"
        local f = assert(io.open(conf, "w"))
        f:write(nginx_conf(prefix, port, { backends[1].port, backends[2].port }))
        f:close()
        local p = process.start({ "nginx", "-p", prefix, "-c", conf,
          "-g", "daemon off; master_process off;" }, 60)
        finally(function()
          p:cleanup()
          for _, srv in ipairs(backends) do srv:close() end
          os.execute("rm -rf " .. prefix)
        end)
        -- nginx listens once a TCP connection goes through.
        run_until(function()
          local ws = moonws.connect(("ws://127.0.0.1:%d/"):format(port), { timeout = 5 })
          if ws then ws:close(); return true end
          assert(p:alive(), "nginx exited: " .. p:stderr() .. process.read_file(prefix .. "/error.log"))
          return false
        end, 10, "nginx")

        local list = clients(port, 10)
        local per = {}
        for i, c in ipairs(list) do
          per[c.greeting] = (per[c.greeting] or 0) + 1
          c.ws:send("message " .. i)
        end
        assert.is_true((per["hello from 1"] or 0) > 0, "backend 1 got no client")
        assert.is_true((per["hello from 2"] or 0) > 0, "backend 2 got no client")
        run_until(function()
          for _, c in ipairs(list) do if #c.echoes < 1 then return false end end
          return true
        end, 10, "echoes through nginx")
        for i, c in ipairs(list) do
          local which = c.greeting:match("%d$")
          assert.same({ "backend " .. which .. ": message " .. i }, c.echoes)
        end
        for i = 1, 2 do
          for _, forwarded in ipairs(got[i]) do assert.equal("127.0.0.1", forwarded) end
        end

        -- A backend's graceful shutdown travels through the proxy.
        assert.is_true(backends[1]:shutdown())
        local mine = {}
        for _, c in ipairs(list) do
          if c.greeting == "hello from 1" then mine[#mine + 1] = c end
        end
        run_until(all_closed(mine), 10, "backend 1's clients closing")
        assert_clean_closes(mine, 1001)
        -- New clients all land on the backend still up.
        local after = clients(port, 4)
        for _, c in ipairs(after) do assert.equal("hello from 2", c.greeting) end
        for _, c in ipairs(list) do
          if not c.close then c.ws:close(1000) end
        end
        for _, c in ipairs(after) do c.ws:close(1000) end
        run_until(all_closed(after), 10, "closing through nginx")
        assert_clean_closes(after, 1000)
      end)
  end)
end)

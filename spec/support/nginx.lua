-- spec/support/nginx.lua -- a throwaway nginx (Debian's nginx + its Lua
-- module, OpenResty's API) for the moonws.resty specs.
--
--   local nginx = require "spec.support.nginx"
--   local n = nginx.start { http = "...", server = "...", files = { ["h.lua"] = code } }
--   n.port, n.prefix; n:error_log(); n:results(); n:get(path) -> process; n:stop()
--
-- Each instance gets a fresh prefix from mktemp -d (conf/, logs/, tmp/ and
-- the `files`, which content_by_lua_file names relative to the prefix),
-- listens on 127.0.0.1 only, on a port found free just before (retried
-- when another process took it meanwhile), and runs in the foreground as
-- one process (`daemon off; master_process off;`) under `timeout` through
-- spec.support.process.  stop() kills it by the PID nginx wrote, then the
-- wrapper, and removes the prefix.  Lua modules come from the checkout
-- (lua/, spec/) and /usr/share/lua/5.1 (lua-resty-core, dkjson); the C
-- core from build/luajit (`make luajit`).

local process = require "spec.support.process"
local json = require "dkjson"

local nginx = {}
nginx.__index = nginx

nginx.BIN = "/usr/sbin/nginx"
nginx.MODULES = "/usr/lib/nginx/modules"
nginx.LUAJIT_CORE = "build/luajit/moonws/core.so"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function cwd()
  local pipe = assert(io.popen("pwd"))
  local dir = pipe:read("l")
  pipe:close()
  return dir
end

-- Everything the specs need is there, or a message saying what is missing.
-- without_core: the config runs no moonws code (nginx as a plain proxy in
-- front of a moonws server), so the LuaJIT build of the core may be absent
-- (as in the ASan tree, which builds only the sanitized 5.4 module).
function nginx.check(without_core)
  if not exists(nginx.BIN) then return nil, nginx.BIN .. " missing (apt-get install nginx)" end
  for _, m in ipairs { "ndk_http_module.so", "ngx_http_lua_module.so" } do
    if not exists(nginx.MODULES .. "/" .. m) then
      return nil, m .. " missing (apt-get install libnginx-mod-http-lua)"
    end
  end
  if not exists("/usr/share/lua/5.1/resty/core.lua") then
    return nil, "lua-resty-core missing (apt-get install lua-resty-core)"
  end
  if not without_core and not exists(nginx.LUAJIT_CORE) then
    return nil, nginx.LUAJIT_CORE .. " missing: run `make luajit` first (make test does)"
  end
  return true
end

-- A TCP port nobody listens on right now.
local function free_port() return require("spec.support.helpers").free_port() end

local CONF = [[
load_module $MODULES/ndk_http_module.so;
load_module $MODULES/ngx_http_lua_module.so;
error_log $PREFIX/logs/error.log info;
pid $PREFIX/logs/nginx.pid;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $PREFIX/tmp/body;
  proxy_temp_path $PREFIX/tmp/proxy;
  fastcgi_temp_path $PREFIX/tmp/fastcgi;
  uwsgi_temp_path $PREFIX/tmp/uwsgi;
  scgi_temp_path $PREFIX/tmp/scgi;
  lua_package_path "$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/spec/?.lua;/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;";
  lua_package_cpath "$ROOT/build/luajit/?.so;;";
$HTTP
  server {
    listen 127.0.0.1:$PORT;
$SERVER
  }
}
]]

local function render(conf, vars)
  return (conf:gsub("%$(%u+)", function(name) return vars[name] or "$" .. name end))
end

-- Can a TCP connection to 127.0.0.1:port be made now?
local function accepting(port)
  return require("spec.support.helpers").accepting("127.0.0.1", port)
end

local function start_once(spec, root)
  local pipe = assert(io.popen("mktemp -d"))
  local prefix = pipe:read("l")
  pipe:close()
  assert(prefix and prefix:match("^/"), "mktemp -d failed")
  for _, d in ipairs { "conf", "logs", "tmp" } do
    assert(os.execute("mkdir -p " .. quote(prefix .. "/" .. d)))
  end
  for name, text in pairs(spec.files or {}) do write_file(prefix .. "/" .. name, text) end
  local port = free_port()
  local vars = {
    MODULES = nginx.MODULES, PREFIX = prefix, ROOT = root, PORT = tostring(port),
    HTTP = render(spec.http or "", { PREFIX = prefix, ROOT = root }),
    SERVER = render(spec.server or "", { PREFIX = prefix, ROOT = root }),
  }
  write_file(prefix .. "/conf/nginx.conf", render(CONF, vars))
  local self = setmetatable({ prefix = prefix, port = port, root = root }, nginx)
  self.proc = process.start({ nginx.BIN, "-p", prefix .. "/", "-e", prefix .. "/logs/error.log",
    "-c", prefix .. "/conf/nginx.conf", "-g", "daemon off; master_process off;" },
    spec.limit or 300)
  local deadline = os.time() + 10
  while true do
    if accepting(port) then return self end
    if not self.proc:alive() or os.time() > deadline then
      local log = self:error_log() .. self.proc:stderr()
      self:stop()
      return nil, log
    end
    os.execute("sleep 0.02")
  end
end

-- Start nginx with spec = { http = lines for the http block, server =
-- lines for the server block, files = { relative name = text }, limit =
-- seconds, proxy_only = true when no moonws code runs inside }.  In
-- http/server, $PREFIX and $ROOT (the checkout) expand.
function nginx.start(spec)
  local ok, why = nginx.check(spec.proxy_only)
  if not ok then error(why, 2) end
  local root = cwd()
  local log
  for _ = 1, 5 do
    local self
    self, log = start_once(spec, root)
    if self then return self end
    if not log:find("Address already in use", 1, true) then break end
  end
  error("nginx did not start:\n" .. tostring(log), 2)
end

function nginx:error_log()
  return process.read_file(self.prefix .. "/logs/error.log")
end

-- The JSON records handlers logged as "RESULT {...}", in order.
function nginx:results()
  local list = {}
  for line in self:error_log():gmatch("[^\n]+") do
    local text = line:match("RESULT (%b{})")
    if text then
      local rec = json.decode(text)
      if rec then list[#list + 1] = rec end
    end
  end
  return list
end

-- The first RESULT record with tag == tag, or nil.
function nginx:result(tag)
  for _, rec in ipairs(self:results()) do
    if rec.tag == tag then return rec end
  end
end

-- Wait (driving idle) until a RESULT with tag is logged; returns it.
function nginx:wait_result(tag, timeout, idle)
  local deadline = os.time() + (timeout or 10)
  while true do
    local rec = self:result(tag)
    if rec then return rec end
    if os.time() > deadline then
      error(("nginx logged no RESULT for %s\nerror log:\n%s"):format(tag, self:error_log()), 2)
    end
    if idle then idle(0.02) else os.execute("sleep 0.02") end
  end
end

local FETCH = [[
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=60)
    status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
sys.stdout.write("STATUS %d\n" % status)
sys.stdout.buffer.write(body)
]]

-- Run a shipped example config (examples/resty/nginx.conf) as it is, but
-- for where it listens and writes: its `listen 127.0.0.1:8080` moves to a
-- free port and its pid file into a fresh temp dir (the instance's
-- prefix for stop()); nginx's own prefix (-p) is the checkout, as the
-- example's comment tells users to run it.
function nginx.start_example(path)
  local ok, why = nginx.check()
  if not ok then error(why, 2) end
  local root = cwd()
  local text = assert(process.read_file(path), path)
  local pipe = assert(io.popen("mktemp -d"))
  local prefix = pipe:read("l")
  pipe:close()
  assert(prefix and prefix:match("^/"), "mktemp -d failed")
  assert(os.execute("mkdir -p " .. quote(prefix .. "/logs")))
  local port = free_port()
  local conf, listens = text:gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:" .. port .. ";")
  local pids
  conf, pids = conf:gsub("\npid [^;]+;", "\npid " .. prefix .. "/logs/nginx.pid;")
  assert(listens == 1 and pids == 1, path .. ": expected one listen 127.0.0.1:8080 and one pid")
  write_file(prefix .. "/nginx.conf", conf)
  local self = setmetatable({ prefix = prefix, port = port, root = root }, nginx)
  self.proc = process.start({ nginx.BIN, "-p", root .. "/", "-e", prefix .. "/logs/error.log",
    "-c", prefix .. "/nginx.conf", "-g", "daemon off; master_process off;" }, 120)
  local deadline = os.time() + 10
  while not accepting(port) do
    if not self.proc:alive() or os.time() > deadline then
      local log = self:error_log() .. self.proc:stderr()
      self:stop()
      error("nginx did not start:\n" .. log, 2)
    end
    os.execute("sleep 0.02")
  end
  return self
end

-- GET http://127.0.0.1:port/path in a child (Python's urllib), so the spec
-- can drive moonws meanwhile: returns the process; nginx.response(p)
-- parses its output once it exited.
function nginx:get(path)
  return process.start({ "/usr/bin/python3", "-c", FETCH,
    ("http://127.0.0.1:%d%s"):format(self.port, path) }, 90)
end

-- status, body of a finished get().
function nginx.response(p)
  local out = p:stdout()
  local status, body = out:match("^STATUS (%d+)\n(.*)$")
  return tonumber(status), body
end

function nginx:stop()
  local pid = tonumber(process.read_file(self.prefix .. "/logs/nginx.pid"):match("%d+"))
  if pid then os.execute("kill -TERM " .. pid .. " 2>/dev/null") end
  if self.proc then
    self.proc:wait_exit(5)
    if pid then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    self.proc:cleanup()
  end
  -- Only ever a directory mktemp made.
  if self.prefix:match("^/.+/tmp%.%w+$") then
    os.execute("rm -rf " .. quote(self.prefix))
  end
end

return nginx

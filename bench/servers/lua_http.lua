-- bench/servers/lua_http.lua -- lua-http (Debian lua-http 0.4, on cqueues)
-- echo server on Lua 5.4, for the benchmark.
--
--   lua5.4 bench/servers/lua_http.lua PORT [TLS_PORT CERT KEY]
--
-- Debian ships lua-http's Lua files for 5.1-5.3 only; the C parts it needs
-- (cqueues, luaossl, lpeg) exist for 5.4, and the Lua files run unchanged
-- on 5.4, so the paths below borrow them (newest version first).  Binds
-- 127.0.0.1; one cqueues loop in one process.
local function search(pattern)
  local t = {}
  for _, v in ipairs { "5.4", "5.3", "5.2", "5.1" } do t[#t + 1] = pattern:gsub("V", v) end
  return table.concat(t, ";")
end
package.path = search("/usr/share/lua/V/?.lua;/usr/share/lua/V/?/init.lua") .. ";" .. package.path
package.cpath = search("/usr/lib/x86_64-linux-gnu/lua/V/?.so") .. ";" .. package.cpath

local http_server = require "http.server"
local websocket = require "http.websocket"
local cqueues = require "cqueues"

local function onstream(_, stream)
  local headers = stream:get_headers()
  if not headers then return end
  local ws = websocket.new_from_stream(stream, headers)
  if not ws then
    stream:shutdown()
    return
  end
  if not ws:accept() then return end
  while true do
    local data, kind = ws:receive()
    if not data then break end
    if not ws:send(data, kind) then break end
  end
  ws:close()
end

local function tls_context(cert, key)
  local ctx = require("openssl.ssl.context").new("TLS", true)
  local function slurp(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    return s
  end
  assert(ctx:setCertificate(require("openssl.x509").new(slurp(cert), "PEM")))
  assert(ctx:setPrivateKey(require("openssl.pkey").new(slurp(key), "PEM")))
  return ctx
end

local port, tls_port, cert, key = tonumber(arg[1]), tonumber(arg[2]), arg[3], arg[4]
local cq = cqueues.new()
local function serve(p, ctx)
  local s = assert(http_server.listen {
    cq = cq, host = "127.0.0.1", port = p, tls = ctx and true or false, ctx = ctx,
    onstream = onstream, onerror = function() end, max_concurrent = 100000,
    connection_setup_timeout = 30, intra_stream_timeout = 3600,
  })
  assert(s:listen())
end
serve(port)
if tls_port then serve(tls_port, tls_context(cert, key)) end
assert(cq:loop())

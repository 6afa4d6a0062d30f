-- moonws.proxy -- which HTTP proxy (if any) a client connection goes
-- through: the `proxy` option, else the conventional environment variables
-- (http_proxy for ws://, https_proxy for wss://, no_proxy for exceptions;
-- lower case first, then upper case, as curl reads them).
--
-- The tunnel itself (CONNECT, RFC 7231 4.3.6) is spoken by client.lua with
-- core.proxy_request/core.proxy_response; TLS to the origin runs inside it.

local core = require "moonws.core"
local misuse = require "moonws.misuse"

local proxy = {}

local function env(name)
  local v = os.getenv(name:lower())
  if v == nil or v == "" then v = os.getenv(name:upper()) end
  if v == "" then v = nil end
  return v
end

-- "%40" -> "@" in proxy credentials (userinfo is percent-encoded).
local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Does no_proxy exempt host (and port)?  Entries are host names or domain
-- suffixes (".example.org" or "example.org" match sub.example.org), IP
-- literals, optionally with ":port"; "*" exempts everything.
function proxy.exempt(host, port, no_proxy)
  if not no_proxy then return false end
  host = host:lower()
  for entry in no_proxy:gmatch("[^,%s]+") do
    entry = entry:lower()
    if entry == "*" then return true end
    local name, entry_port = entry:match("^%[?([^%]]+)%]?:(%d+)$")
    if not name then name = entry:match("^%[?([^%]]+)%]?$") or entry end
    if not entry_port or tonumber(entry_port) == port then
      name = name:gsub("^%.", "")
      if host == name or host:sub(-(#name + 1)) == "." .. name then return true end
    end
  end
  return false
end

-- Parse a proxy URL ("http://[user:pass@]host:port"); raises on misuse.
function proxy.parse(url)
  -- Like curl, take "host:port" without a scheme as an http:// proxy.
  if not url:find("://", 1, true) then url = "http://" .. url end
  local u, why = core.parse_url(url)
  if not u or u.secure then
    misuse.raise(("bad proxy '%s' (%s)"):format(url, why or "only http:// proxies are supported"))
  end
  local port = u.port_explicit and u.port or 8080
  -- p.url is for messages and logs: it never carries the credentials.
  local p = { host = u.host, port = port, ipv6 = u.ipv6,
    url = ("http://%s:%d"):format(u.ipv6 and "[" .. u.host .. "]" or u.host, port) }
  if u.userinfo then
    p.authorization = "Basic " .. core.base64(unescape(u.userinfo))
  end
  return p
end

-- The proxy for a parsed target URL u under options opts, or nil.
function proxy.choose(u, opts)
  local setting = opts.proxy
  if setting == false then return nil end
  if setting == nil then
    setting = env(u.secure and "https_proxy" or "http_proxy")
    if not setting or proxy.exempt(u.host, u.port, env("no_proxy")) then return nil end
  end
  return proxy.parse(setting)
end

return proxy

-- moonws.redirects -- the client's follow_redirects option (off by
-- default; at most max_redirects, default 10): a 301, 302, 303, 307 or 308
-- answer to the upgrade request sends it again to the Location, resolved
-- against the URL that was asked (RFC 3986 5.2), all within the one
-- connect timeout.  http:// and https:// Locations mean ws:// and wss://
-- (as the WHATWG WebSocket URL rules map them); a wss:// connection never
-- follows one to ws://.  Credentials stay with their origin: on a redirect
-- to another scheme, host or port, the Authorization and Cookie headers of
-- the `headers` option are not sent (a Location's own user:pass@ is).

local core = require "moonws.core"
local E = require "moonws.errors"

local redirects = {}

local FOLLOWED = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }

-- RFC 3986 5.2.4: remove "." and ".." segments from an absolute path.
local function remove_dots(path)
  local out = {}
  local segments = {}
  for seg in (path .. "/"):gmatch("([^/]*)/") do segments[#segments + 1] = seg end
  -- path starts with "/": segments[1] == ""
  for i = 2, #segments do
    local seg = segments[i]
    if seg == ".." then
      if #out > 0 then out[#out] = nil end
    elseif seg ~= "." then
      out[#out + 1] = seg
    end
  end
  local last = segments[#segments]
  if last == "." or last == ".." then out[#out + 1] = "" end -- "/a/." is "/a/"
  return "/" .. table.concat(out, "/")
end

-- scheme, authority, path, query ("" when absent; query with its "?").
local function split(url)
  local scheme, rest = url:match("^(%a[%w+.-]*):(.*)$")
  local authority, path = "", rest or url
  if path:sub(1, 2) == "//" then authority, path = path:match("^//([^/?]*)(.*)$") end
  local query = path:match("%?.*$") or ""
  path = path:sub(1, #path - #query)
  return scheme, authority, path, query
end

-- The absolute URL of reference ref (a Location) against base.
function redirects.resolve(base, ref)
  ref = ref:gsub("#.*$", "")
  local bscheme, bauth, bpath = split(base)
  local scheme, auth, path, query = split(ref)
  if scheme then
    return scheme .. "://" .. auth .. remove_dots(path == "" and "/" or path) .. query
  end
  if ref:sub(1, 2) == "//" then
    return bscheme .. "://" .. auth .. remove_dots(path == "" and "/" or path) .. query
  end
  if path == "" then
    if query == "" then query = select(4, split(base)) end
    return bscheme .. "://" .. bauth .. (bpath == "" and "/" or bpath) .. query
  end
  if path:sub(1, 1) ~= "/" then -- relative: merge with the base's folder
    path = (bpath:match("^(.*/)") or "/") .. path
  end
  return bscheme .. "://" .. bauth .. remove_dots(path) .. query
end

local WS_SCHEME = { http = "ws", https = "wss", ws = "ws", wss = "wss" }

-- For an answer with status and headers to the request for url (parsed:
-- u): nil when it is not a redirect to follow; else the next URL and its
-- parse, or nil, message, name when it cannot be followed.
function redirects.next(url, u, status, headers)
  if not FOLLOWED[status] then return nil end
  local location = headers.location
  if not location or location == "" then
    return nil, ("the server answered %d without a Location"):format(status), E.HANDSHAKE
  end
  local target = redirects.resolve(url, location)
  local scheme = target:match("^(%a[%w+.-]*):")
  local ws_scheme = scheme and WS_SCHEME[scheme:lower()]
  if not ws_scheme then
    return nil, ("redirect to %s: not a ws://, wss://, http:// or https:// URL"):format(target),
      E.HANDSHAKE
  end
  target = ws_scheme .. target:sub(#scheme + 1)
  local next_u, why = core.parse_url(target)
  if not next_u then
    return nil, ("redirect to %s: %s"):format(target, why), E.HANDSHAKE
  end
  if u.secure and not next_u.secure then
    return nil, ("redirect from %s to %s refused: it would leave TLS"):format(url, target),
      E.HANDSHAKE
  end
  return target, next_u
end

-- The options for the request to next_u after u: the same, but for the
-- headers that carry credentials when the origin changes.
function redirects.request_options(opts, u, next_u)
  if (u.secure == next_u.secure and u.host == next_u.host and u.port == next_u.port)
      or not opts.headers then
    return opts
  end
  local copy, headers = {}, {}
  for k, v in pairs(opts) do copy[k] = v end
  for k, v in pairs(opts.headers) do
    local name = k:lower()
    if name ~= "authorization" and name ~= "cookie" then headers[k] = v end
  end
  copy.headers = headers
  return copy
end

return redirects

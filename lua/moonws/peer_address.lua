-- moonws.peer_address -- who the peer is: the address and port a server
-- gives as request.remote_address/remote_port and ws.remote_address/
-- remote_port, behind proxies too.
--
--   * The socket's peer, unless:
--   * proxy_protocol = true: the connection starts with a PROXY protocol
--     header (v1 or v2, parsed by the C core) saying whom a load balancer
--     connected for; its source replaces the socket's peer (a v2 LOCAL
--     header -- the balancer's health check -- keeps it).  A missing or bad
--     header closes the connection.  With trusted_proxies set, only a
--     trusted peer may send one.
--   * trusted_proxies = { "10.0.0.0/8", "::1", ... }: when the peer so far
--     is one of them, the forwarding header it wrote is believed -- the
--     `forwarded_header` option says which: "x-forwarded-for" (default) or
--     "forwarded" (RFC 7239); only one, since a proxy passes the other one
--     through as the client wrote it.  Its list is read from the right
--     (the hop nearest to us): each trusted address leads one hop further;
--     the first untrusted one is the client.  An entry that is not an
--     address ("unknown", an obfuscated name, garbage) ends the walk at the
--     last trusted hop, so a client can never choose its own address.
-- Addresses are numeric strings in canonical form (an IPv4-mapped IPv6
-- address is given as IPv4); ports are integers, or nil when a header
-- named none.

local core = require "moonws.core"
local misuse = require "moonws.misuse"

local peer_address = {}

local MAPPED = ("\0"):rep(10) .. "\255\255" -- ::ffff:0:0/96

-- The bytes of an address in text (IPv4-mapped IPv6 as IPv4), or nil.
local function address_bytes(text)
  local b = core.ip_bytes(text)
  if b and #b == 16 and b:sub(1, 12) == MAPPED then b = b:sub(13) end
  return b
end

-- The canonical text of an address in text, and its bytes; nil when it
-- is not an IP address.
local function canonical(text)
  local b = address_bytes(text)
  if b then return core.ip_text(b), b end
end
peer_address.canonical = canonical

-- "1.2.3.4:80" or "[::1]:80" (how moonws.core formats a socket address)
-- -> address, port; nil when unknown ("?").
function peer_address.split(peer)
  if type(peer) ~= "string" then return nil end
  local host, port = peer:match("^%[(.+)%]:(%d+)$")
  if not host then host, port = peer:match("^([^:]+):(%d+)$") end
  if not host then return nil end
  return canonical(host) or host, tonumber(port)
end

-- The inverse: "1.2.3.4:80", "[::1]:80"; "-" when unknown.
function peer_address.join(address, port)
  if not address then return "-" end
  if address:find(":", 1, true) then return ("[%s]:%s"):format(address, tostring(port)) end
  return ("%s:%s"):format(address, tostring(port))
end

---------------------------------------------------------------- trusted_proxies

-- The trusted_proxies option: a list of addresses and CIDR ranges
-- ("10.0.0.0/8", "fd00::/8", "127.0.0.1"), compiled into { bytes, bits }
-- entries.  Misuse raises at the caller's line.
function peer_address.compile(name, list)
  if type(list) == "string" then list = { list } end
  if type(list) ~= "table" then
    misuse.raise(("option '%s' must be a list of addresses or CIDR ranges"):format(name))
  end
  local compiled = {}
  for i, entry in ipairs(list) do
    local text, bits = tostring(entry), nil
    local a, prefix = text:match("^([^/]+)/(%d+)$")
    if a then text, bits = a, tonumber(prefix) end
    local raw = core.ip_bytes(text)
    local b = address_bytes(text)
    if b and bits and #raw == 16 and #b == 4 then
      bits = bits - 96 -- ::ffff:10.0.0.0/104 is 10.0.0.0/8
    end
    if type(entry) ~= "string" or not b or (bits and (bits < 0 or bits > #b * 8)) then
      misuse.raise(("option '%s': entry %d is not an address or CIDR range: %s"):format(
        name, i, text))
    end
    compiled[#compiled + 1] = { bytes = b, bits = bits or #b * 8 }
  end
  return compiled
end

-- Do the first `bits` bits of a and b agree (strings of equal length)?
local function same_prefix(a, b, bits)
  local whole = math.floor(bits / 8)
  if a:sub(1, whole) ~= b:sub(1, whole) then return false end
  local rest = bits - whole * 8
  if rest == 0 then return true end
  local unit = 2 ^ (8 - rest)
  return math.floor(a:byte(whole + 1) / unit) == math.floor(b:byte(whole + 1) / unit)
end

local function trusted(list, bytes)
  if not list or not bytes then return false end
  for i = 1, #list do
    local e = list[i]
    if #e.bytes == #bytes and same_prefix(e.bytes, bytes, e.bits) then return true end
  end
  return false
end

---------------------------------------------------------------- forwarding headers

-- One hop of X-Forwarded-For or of a Forwarded "for": "192.0.2.1",
-- "192.0.2.1:4711", "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:4711".
-- -> address, bytes, port (or nil); nil when it is not an address.
local function hop(text)
  text = text:match("^[ \t]*(.-)[ \t]*$")
  local host, port = text:match("^%[([^%]]+)%]:(%d+)$")
  if not host then host = text:match("^%[([^%]]+)%]$") end
  if not host then host, port = text:match("^([%d.]+):(%d+)$") end
  if not host then host = text end
  local address, bytes = canonical(host)
  if not address then return nil end
  port = port and tonumber(port)
  if port and port > 65535 then return nil end
  return address, bytes, port
end

-- X-Forwarded-For: the comma-separated hops, left (client) to right.
local function xff_hops(value)
  local list = {}
  for item in (value .. ","):gmatch("([^,]*),") do list[#list + 1] = item end
  return list
end

-- Forwarded (RFC 7239 4): elements separated by ",", each a ";"-separated
-- list of token=value pairs, value a token or a quoted-string.  The "for"
-- value of each element, left to right ("" where an element has none);
-- nil when the header does not follow the grammar (then nothing of it is
-- believed).
local TCHAR = "[!#$%%&'*+%-.^_`|~%w]"
local function forwarded_hops(value)
  local list, pos, n = {}, 1, #value
  local current = ""
  local function ows() pos = value:match("^[ \t]*()", pos) or pos end
  ows()
  while pos <= n do
    local name_end = value:match("^" .. TCHAR .. "+()", pos)
    if not name_end or value:sub(name_end, name_end) ~= "=" then return nil end
    local name = value:sub(pos, name_end - 1):lower()
    pos = name_end + 1
    local v
    if value:sub(pos, pos) == '"' then
      local parts, i = {}, pos + 1
      while true do
        local c = value:sub(i, i)
        if c == "" then return nil end -- unterminated
        if c == '"' then break end
        if c == "\\" then
          i = i + 1
          c = value:sub(i, i)
          if c == "" then return nil end
        end
        parts[#parts + 1] = c
        i = i + 1
      end
      v, pos = table.concat(parts), i + 1
    else
      local v_end = value:match("^" .. TCHAR .. "+()", pos)
      if not v_end then return nil end
      v, pos = value:sub(pos, v_end - 1), v_end
    end
    if name == "for" then current = v end
    ows()
    local sep = value:sub(pos, pos)
    if sep == ";" then
      pos = pos + 1
      ows()
    elseif sep == "," or sep == "" then
      list[#list + 1] = current
      current = ""
      pos = pos + 1
      ows()
    else
      return nil
    end
  end
  return list
end

---------------------------------------------------------------- the decision

-- The client's address and port for a peer at address/port that sent
-- headers (request.headers: lower-case names), under opts.
function peer_address.client(address, port, headers, opts)
  local list = opts.trusted_proxies
  if not list or not address then return address, port end
  local bytes = address_bytes(address)
  if not trusted(list, bytes) then return address, port end
  local field = opts.forwarded_header or "x-forwarded-for"
  local value = headers[field]
  if not value then return address, port end
  local hops
  if field == "forwarded" then hops = forwarded_hops(value) else hops = xff_hops(value) end
  if not hops then return address, port end
  for i = #hops, 1, -1 do
    local a, b, p = hop(hops[i])
    if not a then break end -- not an address: the last trusted hop stands
    address, port = a, p
    if not trusted(list, b) then break end
  end
  return address, port
end

-- Whether a PROXY protocol header from this peer may be believed.
function peer_address.may_send_proxy_header(opts, address)
  return not opts.trusted_proxies or trusted(opts.trusted_proxies, address_bytes(address or ""))
end

-- Read the PROXY protocol header on conn (before TLS and the request)
-- from a peer at address, port: nil (not complete yet), false [, why]
-- (end the connection; no why when the peer left), or true, address, port
-- (the client's; the socket's own for a LOCAL header).
function peer_address.read_proxy_header(conn, opts, address, port)
  local h, message = core.proxy_header(conn)
  if h == 0 then return nil end
  if h == false then return false end
  if not h then return false, "PROXY protocol: " .. tostring(message) end
  if not peer_address.may_send_proxy_header(opts, address) then
    return false, "PROXY protocol header from a peer not in trusted_proxies"
  end
  if h["local"] then return true, address, port end
  return true, canonical(h.source) or h.source, h.source_port
end

-- The forwarded_header option.
function peer_address.check_header(name, v)
  if v ~= "x-forwarded-for" and v ~= "forwarded" then
    misuse.raise(("option '%s' must be \"x-forwarded-for\" or \"forwarded\""):format(name))
  end
  return v
end

return peer_address

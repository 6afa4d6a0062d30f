-- moonws.options -- the options of docs/DESIGN.md 1.5: defaults and checks.
--
-- One table of defaults, one checker per option.  A misspelled or mistyped
-- option raises at the line of the call that received it (misuse is an
-- error, not a runtime condition), so a typo cannot silently fall back to
-- a default.  Each checker returns the value to keep (an integral float
-- becomes an integer).

local compat = require "moonws.compat"
local core = require "moonws.core"
local log = require "moonws.log"
local misuse = require "moonws.misuse"
local peer_address = require "moonws.peer_address"

local is_integer = compat.is_integer
local raise = misuse.raise

local options = {}

-- v as an integer when it is a number with an exact integer value, as
-- string.rep takes its count (48 * 2^20 is a float in Lua 5.4); else nil.
-- The one place size and count options are read.
local tointeger = math.tointeger or function(v) -- LuaJIT: doubles only
  if is_integer(v) then return v end
end
function options.integral(v)
  if type(v) ~= "number" then return nil end
  return tointeger(v)
end
local integral = options.integral

local MiB = 1024 * 1024

-- Safe defaults: every size limit is on.
options.defaults = {
  timeout = 30,                       -- connect + handshake, seconds
  close_timeout = 5,                  -- wait for the peer's close, then drop
  max_payload = core.DEFAULT_MAX_PAYLOAD,
  max_frame = core.DEFAULT_MAX_FRAME,
  max_handshake = core.DEFAULT_MAX_HANDSHAKE,
  ping_interval = nil,                -- keepalive off unless asked
  ping_timeout = 30,
  send_buffer = 1 * MiB,              -- high-water mark for a waiting send
  send_low_water = nil,               -- ondrain fires below it (default: send_buffer / 2)
  send_limit = 64 * MiB,              -- hard bound on queued bytes (peer not reading);
                                      -- reading from the peer stops while it is reached
  send_timeout = 30,                  -- ... and after this long there, close 1008
  max_queue = 1024,                   -- messages held for receive()
  fragment_size = nil,                -- split outgoing messages into frames
  max_step_events = 256,              -- events one socket dispatches per round
  max_step_bytes = 256 * 1024,        -- bytes one socket reads per round
}

local function positive_number(name, v)
  if type(v) ~= "number" or v ~= v or v <= 0 then
    raise(("option '%s' must be a positive number"):format(name))
  end
  return v
end

local function positive_integer(name, v)
  local n = integral(v)
  if not n or n <= 0 then
    raise(("option '%s' must be a positive integer"):format(name))
  end
  return n
end

local function non_negative_integer(name, v)
  local n = integral(v)
  if not n or n < 0 then
    raise(("option '%s' must be a non-negative integer"):format(name))
  end
  return n
end

local function string_list(name, v)
  local list = type(v) == "string" and { v } or v
  if type(list) ~= "table" then
    raise(("option '%s' must be a list of strings"):format(name))
  end
  local seen = {}
  for i, p in ipairs(list) do
    if type(p) ~= "string" or not core.is_token(p) then
      raise(("option '%s': entry %d is not a valid token"):format(name, i))
    end
    if seen[p] then
      raise(("option '%s': '%s' is listed twice"):format(name, p))
    end
    seen[p] = true
  end
  return v
end

local function header_table(name, v)
  if type(v) ~= "table" then
    raise(("option '%s' must be a table of header names to values"):format(name))
  end
  local ok, err = pcall(core.check_headers, v)
  if not ok then raise(("option '%s': %s"):format(name, err)) end
  return v
end

local function text(name, v)
  if type(v) ~= "string" then
    raise(("option '%s' must be a string"):format(name))
  end
  return v
end

local function func(name, v)
  if type(v) ~= "function" then
    raise(("option '%s' must be a function"):format(name))
  end
  return v
end

local function boolean(name, v)
  if type(v) ~= "boolean" then
    raise(("option '%s' must be a boolean"):format(name))
  end
  return v
end

-- A table option whose fields each pass a check of their own (which
-- returns the value to keep, or nil); a copy of it is kept.
local function fields_of(known)
  return function(name, v)
    if type(v) ~= "table" then
      raise(("option '%s' must be a table"):format(name))
    end
    local kept = {}
    for k, fv in pairs(v) do
      local check = known[k]
      if not check then
        raise(("unknown field '%s' in option '%s'"):format(tostring(k), name))
      end
      kept[k] = check(fv)
      if kept[k] == nil then
        raise(("option '%s': bad value for '%s'"):format(name, k))
      end
    end
    return kept
  end
end

local function is_boolean(v) if type(v) == "boolean" then return v end end
local function is_string(v) if type(v) == "string" then return v end end
local function in_range(lo, hi)
  return function(v)
    local n = integral(v)
    if n and n >= lo and (not hi or n <= hi) then return n end
  end
end
local window_bits = in_range(8, 15)
local function is_window_bits(v)
  if v == true then return v end
  return window_bits(v)
end

-- permessage-deflate (RFC 7692): true, false, or a table of parameters.
local compression_table = fields_of {
  threshold = in_range(0),
  level = in_range(-1, 9),
  mem_level = in_range(1, 9),
  server_no_context_takeover = is_boolean,
  client_no_context_takeover = is_boolean,
  server_max_window_bits = is_window_bits,
  client_max_window_bits = is_window_bits,
}
local function compression(name, v)
  if type(v) == "boolean" then return v end
  return compression_table(name, v)
end

local client_tls = fields_of {
  verify = is_boolean, cafile = is_string, capath = is_string, cert = is_string,
  key = is_string, servername = is_string, ciphers = is_string,
}

local server_tls_fields = fields_of {
  cert = is_string, key = is_string, cafile = is_string, capath = is_string,
  verify_client = is_boolean, ciphers = is_string,
}
local function server_tls(name, v)
  local kept = server_tls_fields(name, v)
  if not kept.cert or not kept.key then
    raise("option 'tls' needs cert and key (PEM file names)")
  end
  return kept
end

local function proxy_option(name, v)
  if v ~= false and type(v) ~= "string" then
    raise("option 'proxy' must be a URL string or false")
  end
  return v
end

local function log_option(name, v)
  if type(v) ~= "boolean" and type(v) ~= "function" then
    raise("option 'log' must be true, false or a function(line, record)")
  end
  return v
end

local checks = {
  log = log_option,
  timeout = positive_number,
  close_timeout = positive_number,
  max_payload = positive_integer,
  max_frame = positive_integer,
  max_handshake = positive_integer,
  ping_interval = positive_number,
  ping_timeout = positive_number,
  send_buffer = positive_integer,
  send_low_water = non_negative_integer,
  send_limit = positive_integer,
  send_timeout = positive_number,
  max_queue = positive_integer,
  fragment_size = positive_integer,
  max_step_events = positive_integer,
  max_step_bytes = positive_integer,
  headers = header_table,
  origin = text,
  compression = compression,
}

local client_checks = setmetatable({
  protocols = string_list,
  tls = client_tls,
  proxy = proxy_option,
  follow_redirects = boolean,
  max_redirects = non_negative_integer,
}, { __index = checks })

local port_number = in_range(0, 65535)
local server_checks = setmetatable({
  host = text,
  port = function(name, v)
    local n = port_number(v)
    if not n then raise("option 'port' must be an integer 0..65535") end
    return n
  end,
  backlog = positive_integer,
  reuseport = boolean,
  protocols = function(name, v)
    if type(v) == "function" then return v end
    return string_list(name, v)
  end,
  handshake = func,
  request = func,
  tls = server_tls,
  -- moonws.topics: what a publish does to a receiver past send_limit
  slow_receiver = function(name, v)
    if v ~= "drop" and v ~= 1008 and v ~= 1013 then
      raise("option 'slow_receiver' must be \"drop\", 1008 or 1013")
    end
    return v
  end,
  -- moonws.topics: a moonws.pubsub object that carries publish across processes
  pubsub = function(name, v)
    local mt = type(v) == "table" and getmetatable(v)
    if not (mt and type(v.publish) == "function" and type(v.subscribe) == "function") then
      raise("option 'pubsub' must be a moonws.pubsub object")
    end
    return v
  end,
  trusted_proxies = peer_address.compile,
  forwarded_header = peer_address.check_header,
  proxy_protocol = boolean,
}, { __index = checks })

local function merge(given, which, caller, role_defaults)
  if given ~= nil and type(given) ~= "table" then
    raise(("bad options to '%s' (table expected, got %s)"):format(caller, type(given)))
  end
  local result = {}
  for k, v in pairs(options.defaults) do result[k] = v end
  for k, v in pairs(role_defaults) do result[k] = v end
  for k, v in pairs(given or {}) do
    local check = which[k]
    if not check then
      raise(("unknown option '%s' to '%s'"):format(tostring(k), caller))
    end
    result[k] = check(k, v)
  end
  if result.max_frame > result.max_payload then result.max_frame = result.max_payload end
  if result.send_low_water == nil then
    result.send_low_water = math.floor(result.send_buffer / 2)
  elseif result.send_low_water > result.send_buffer then
    raise("option 'send_low_water' must not be over send_buffer")
  end
  result.log = log.sink(result.log)
  return result
end

-- Validated client options with defaults filled in.
-- Compression defaults as in Node's ws: a client offers permessage-deflate
-- (the server decides), a server only accepts it when asked, since each
-- compressed connection costs the server zlib state (docs/API.md, "Compression").
local client_defaults = { compression = true, follow_redirects = false, max_redirects = 10 }
local server_defaults = { compression = false, slow_receiver = "drop" }

function options.client(given, caller)
  return merge(given, client_checks, caller or "new", client_defaults)
end

-- Validated server options with defaults filled in.
function options.server(given, caller)
  return merge(given, server_checks, caller or "listen", server_defaults)
end

-- The kind argument of send(data, kind) on every front: true for binary.
function options.send_kind(kind)
  if kind == nil or kind == "text" then return false end
  if kind == "binary" then return true end
  misuse.arg(2, "send", '"text" or "binary" expected')
end

-- Arguments of close(code, reason) on every front (misuse raises).
-- Any code an endpoint may send is allowed (Node's ws allows them too; a
-- server needs 1001 or 1008); reserved ones (1005, 1006, 1015) are not.
function options.close_args(code, reason)
  if code ~= nil then
    if not is_integer(code) then
      misuse.arg(1, "close", "integer code expected")
    end
    if not core.close_code_sendable(code) then
      misuse.arg(1, "close", ("code %d not allowed: use %s"):format(code,
        core.CLOSE_CODES_SENDABLE))
    end
  end
  if reason ~= nil then
    if type(reason) ~= "string" then
      misuse.arg(2, "close", "string expected, got " .. type(reason))
    end
    if #reason > core.CLOSE_REASON_MAX then
      misuse.arg(2, "close", "reason over 123 bytes")
    end
    if not core.utf8_valid(reason) then
      misuse.arg(2, "close", "reason is not valid UTF-8")
    end
  end
  -- The browser's rule: a reason without a code is sent with 1000.
  if code == nil and reason ~= nil and reason ~= "" then code = 1000 end
  return code, reason
end

return options

-- moonws.options -- the options of docs/DESIGN.md 1.5: defaults and checks.
--
-- One table of defaults, one checker per option.  A misspelled or mistyped
-- option raises at the call that received it (misuse is an error, not a
-- runtime condition), so a typo cannot silently fall back to a default.

local compat = require "moonws.compat"
local core = require "moonws.core"
local log = require "moonws.log"

local is_integer = compat.is_integer

local options = {}

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
    error(("option '%s' must be a positive number"):format(name), 4)
  end
end

local function positive_integer(name, v)
  if not is_integer(v) or v <= 0 then
    error(("option '%s' must be a positive integer"):format(name), 4)
  end
end

local function string_list(name, v)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then
    error(("option '%s' must be a list of strings"):format(name), 4)
  end
  local seen = {}
  for i, p in ipairs(v) do
    if type(p) ~= "string" or not core.is_token(p) then
      error(("option '%s': entry %d is not a valid token"):format(name, i), 4)
    end
    if seen[p] then
      error(("option '%s': '%s' is listed twice"):format(name, p), 4)
    end
    seen[p] = true
  end
end

local function header_table(name, v)
  if type(v) ~= "table" then
    error(("option '%s' must be a table of header names to values"):format(name), 4)
  end
  local ok, err = pcall(core.check_headers, v)
  if not ok then error(("option '%s': %s"):format(name, err), 4) end
end

local function text(name, v)
  if type(v) ~= "string" then
    error(("option '%s' must be a string"):format(name), 4)
  end
end

local function func(name, v)
  if type(v) ~= "function" then
    error(("option '%s' must be a function"):format(name), 4)
  end
end

-- A table option whose fields each pass a check of their own.
local function fields_of(known)
  return function(name, v)
    if type(v) ~= "table" then
      error(("option '%s' must be a table"):format(name), 4)
    end
    for k, fv in pairs(v) do
      local check = known[k]
      if not check then
        error(("unknown field '%s' in option '%s'"):format(tostring(k), name), 4)
      end
      if not check(fv) then
        error(("option '%s': bad value for '%s'"):format(name, k), 4)
      end
    end
  end
end

local function is_boolean(v) return type(v) == "boolean" end
local function is_string(v) return type(v) == "string" end
local function is_window_bits(v)
  return v == true or (is_integer(v) and v >= 8 and v <= 15)
end

-- permessage-deflate (RFC 7692): true, false, or a table of parameters.
local compression_table = fields_of {
  threshold = function(v) return is_integer(v) and v >= 0 end,
  level = function(v) return is_integer(v) and v >= -1 and v <= 9 end,
  mem_level = function(v) return is_integer(v) and v >= 1 and v <= 9 end,
  server_no_context_takeover = is_boolean,
  client_no_context_takeover = is_boolean,
  server_max_window_bits = is_window_bits,
  client_max_window_bits = is_window_bits,
}
local function compression(name, v)
  if type(v) ~= "boolean" then compression_table(name, v) end
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
  server_tls_fields(name, v)
  if not v.cert or not v.key then
    error("option 'tls' needs cert and key (PEM file names)", 4)
  end
end

local function proxy_option(name, v)
  if v ~= false and type(v) ~= "string" then
    error("option 'proxy' must be a URL string or false", 4)
  end
end

local function log_option(name, v)
  if type(v) ~= "boolean" and type(v) ~= "function" then
    error("option 'log' must be true, false or a function(line, record)", 4)
  end
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
}, { __index = checks })

local server_checks = setmetatable({
  host = text,
  port = function(name, v)
    if not is_integer(v) or v < 0 or v > 65535 then
      error("option 'port' must be an integer 0..65535", 4)
    end
  end,
  backlog = positive_integer,
  reuseport = function(name, v)
    if type(v) ~= "boolean" then error("option 'reuseport' must be a boolean", 4) end
  end,
  protocols = function(name, v)
    if type(v) ~= "function" then string_list(name, v) end
  end,
  handshake = func,
  request = func,
  tls = server_tls,
}, { __index = checks })

local function merge(given, which, caller, role_defaults)
  if given ~= nil and type(given) ~= "table" then
    error(("bad options to '%s' (table expected, got %s)"):format(caller, type(given)), 3)
  end
  local result = {}
  for k, v in pairs(options.defaults) do result[k] = v end
  for k, v in pairs(role_defaults) do result[k] = v end
  for k, v in pairs(given or {}) do
    local check = which[k]
    if not check then
      error(("unknown option '%s' to '%s'"):format(tostring(k), caller), 3)
    end
    check(k, v)
    result[k] = v
  end
  if result.max_frame > result.max_payload then result.max_frame = result.max_payload end
  result.log = log.sink(result.log)
  return result
end

-- Validated client options with defaults filled in.
-- Compression defaults as in Node's ws: a client offers permessage-deflate
-- (the server decides), a server only accepts it when asked, since each
-- compressed connection costs the server zlib state (docs/API.md, "Compression").
local client_defaults = { compression = true }
local server_defaults = { compression = false }

function options.client(given, caller)
  return merge(given, client_checks, caller or "new", client_defaults)
end

-- Validated server options with defaults filled in.
function options.server(given, caller)
  return merge(given, server_checks, caller or "listen", server_defaults)
end

-- The kind argument of send(data, kind) on every front: true for binary.
function options.send_kind(kind, level)
  if kind == nil or kind == "text" then return false end
  if kind == "binary" then return true end
  error("bad argument #2 to 'send' (\"text\" or \"binary\" expected)", level or 3)
end

-- Arguments of close(code, reason) on every front: misuse raises at the
-- caller's call (level 3 from here: options.close_args <- close <- user).
-- Any code an endpoint may send is allowed (Node's ws allows them too; a
-- server needs 1001 or 1008); reserved ones (1005, 1006, 1015) are not.
function options.close_args(code, reason)
  if code ~= nil then
    if not is_integer(code) then
      error("bad argument #1 to 'close' (integer code expected)", 3)
    end
    if not core.close_code_sendable(code) then
      error(("bad argument #1 to 'close' (code %d not allowed: use %s)")
        :format(code, core.CLOSE_CODES_SENDABLE), 3)
    end
  end
  if reason ~= nil then
    if type(reason) ~= "string" then
      error("bad argument #2 to 'close' (string expected, got " .. type(reason) .. ")", 3)
    end
    if #reason > core.CLOSE_REASON_MAX then
      error("bad argument #2 to 'close' (reason over 123 bytes)", 3)
    end
    if not core.utf8_valid(reason) then
      error("bad argument #2 to 'close' (reason is not valid UTF-8)", 3)
    end
  end
  -- The browser's rule: a reason without a code is sent with 1000.
  if code == nil and reason ~= nil and reason ~= "" then code = 1000 end
  return code, reason
end

return options

-- moonws.options -- the options of DESIGN.md 1.5: defaults and checks.
--
-- One table of defaults, one checker per option.  A misspelled or mistyped
-- option raises at the call that received it (misuse is an error, not a
-- runtime condition), so a typo cannot silently fall back to a default.

local core = require "moonws.core"

local options = {}

local MiB = 1024 * 1024

-- Safe defaults: every size limit is on.
options.defaults = {
  timeout = 30,                       -- connect + handshake, seconds
  close_timeout = 5,                  -- wait for the peer's close, then drop
  max_payload = core.DEFAULT_MAX_PAYLOAD,
  max_frame = core.DEFAULT_MAX_FRAME,
  max_handshake = core.DEFAULT_MAX_HANDSHAKE,
  compression = false,
  ping_interval = nil,                -- keepalive off unless asked
  ping_timeout = 30,
  send_buffer = 1 * MiB,              -- high-water mark for a waiting send
  max_queue = 1024,                   -- messages held for receive()
  fragment_size = nil,                -- split outgoing messages into frames
}

local function positive_number(name, v)
  if type(v) ~= "number" or v ~= v or v <= 0 then
    error(("option '%s' must be a positive number"):format(name), 4)
  end
end

local function positive_integer(name, v)
  if math.type(v) ~= "integer" or v <= 0 then
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

local function not_yet(issue)
  return function(name, v)
    if v ~= nil and v ~= false then
      error(("option '%s' is not supported by this build of moonws yet (%s)")
        :format(name, issue), 4)
    end
  end
end

local checks = {
  timeout = positive_number,
  close_timeout = positive_number,
  max_payload = positive_integer,
  max_frame = positive_integer,
  max_handshake = positive_integer,
  ping_interval = positive_number,
  ping_timeout = positive_number,
  send_buffer = positive_integer,
  max_queue = positive_integer,
  fragment_size = positive_integer,
  headers = header_table,
  origin = text,
  compression = not_yet("permessage-deflate"),
  tls = not_yet("TLS"),
  proxy = not_yet("HTTP proxies"),
}

local client_checks = setmetatable({
  protocols = string_list,
}, { __index = checks })

local server_checks = setmetatable({
  host = text,
  port = function(name, v)
    if math.type(v) ~= "integer" or v < 0 or v > 65535 then
      error("option 'port' must be an integer 0..65535", 4)
    end
  end,
  backlog = positive_integer,
  protocols = function(name, v)
    if type(v) ~= "function" then string_list(name, v) end
  end,
  handshake = func,
}, { __index = checks })

local function merge(given, which, caller)
  if given ~= nil and type(given) ~= "table" then
    error(("bad options to '%s' (table expected, got %s)"):format(caller, type(given)), 3)
  end
  local result = {}
  for k, v in pairs(options.defaults) do result[k] = v end
  for k, v in pairs(given or {}) do
    local check = which[k]
    if not check then
      error(("unknown option '%s' to '%s'"):format(tostring(k), caller), 3)
    end
    check(k, v)
    result[k] = v
  end
  if result.max_frame > result.max_payload then result.max_frame = result.max_payload end
  return result
end

-- Validated client options with defaults filled in.
function options.client(given, caller)
  return merge(given, client_checks, caller or "new")
end

-- Validated server options with defaults filled in.
function options.server(given, caller)
  return merge(given, server_checks, caller or "listen")
end

return options

-- moonws.tls -- TLS configurations to OpenSSL contexts: one context per
-- distinct configuration, shared by every connection that uses it (never
-- one per connection), kept while any connection or caller holds it.
--
-- Client defaults are safe: the certificate chain and the host name are
-- verified against the system trust store unless `verify = false`.

local core = require "moonws.core"

local tls = {}

local contexts = setmetatable({}, { __mode = "v" })

local CLIENT_FIELDS = { "verify", "cafile", "capath", "cert", "key", "ciphers" }
local SERVER_FIELDS = { "cert", "key", "cafile", "capath", "verify_client", "ciphers" }

local function cache_key(server, config, fields)
  local parts = { server and "server" or "client" }
  for _, f in ipairs(fields) do parts[#parts + 1] = f .. "=" .. tostring(config[f]) end
  return table.concat(parts, "\0")
end

-- The shared context for config (one per distinct configuration).
local function context(server, config, fields, spec)
  local key = cache_key(server, config, fields)
  local ctx = contexts[key]
  if ctx then return ctx end
  local message, name
  ctx, message, name = core.tls_context(spec)
  if not ctx then return nil, message, name end
  contexts[key] = ctx
  return ctx
end

-- The shared context for a client (`tls` option of moonws.new/connect, may
-- be nil): ctx | nil, message, "tls".
function tls.client_context(config)
  config = config or {}
  return context(false, config, CLIENT_FIELDS, {
    server = false,
    verify = config.verify ~= false,
    cafile = config.cafile, capath = config.capath,
    cert = config.cert, key = config.key, ciphers = config.ciphers,
  })
end

-- The context of a server's `tls` option: ctx | nil, message, "tls".
function tls.server_context(config)
  return context(true, config, SERVER_FIELDS, {
    server = true,
    verify = config.verify_client or false,
    cafile = config.cafile, capath = config.capath,
    cert = config.cert, key = config.key, ciphers = config.ciphers,
  })
end

return tls

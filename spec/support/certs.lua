-- spec/support/certs.lua -- throwaway test certificates, made at test time
-- with the `openssl` command into a fresh temporary directory (nothing
-- secret is committed).  Made once per process; certs.cleanup() removes them.
--
--   local certs = require "spec.support.certs"
--   local c = certs.get()
--   c.ca            CA certificate (PEM) that signed the others
--   c.server_cert, c.server_key      for DNS:localhost, IP:127.0.0.1, IP:::1
--   c.expired_cert, c.expired_key    same names, validity ended yesterday
--   c.self_cert, c.self_key          self-signed for localhost (no CA)
--   c.client_cert, c.client_key      a client certificate from the CA
--   c.other_ca                       a CA that signed none of them
--   c.dir                            the directory

local certs = {}

local made

local function run(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  if not ok then error("certificate command failed: " .. cmd, 3) end
end

local function key(path)
  run(("openssl ecparam -name prime256v1 -genkey -noout -out %q"):format(path))
end

-- A certificate for subject cn signed by ca (nil: self-signed) with
-- extensions ext, valid for days (negative: already expired).
local function cert(dir, name, cn, ca, ext, days)
  local k, csr, pem = dir .. "/" .. name .. ".key", dir .. "/" .. name .. ".csr",
    dir .. "/" .. name .. ".pem"
  local extfile = dir .. "/" .. name .. ".ext"
  local f = assert(io.open(extfile, "w"))
  f:write(ext, "\n")
  f:close()
  key(k)
  run(("openssl req -new -key %q -out %q -subj %q"):format(k, csr, "/CN=" .. cn))
  if ca then
    run(("openssl x509 -req -in %q -CA %q -CAkey %q -CAcreateserial -out %q -days %d -extfile %q")
      :format(csr, ca .. ".pem", ca .. ".key", pem, days, extfile))
  else
    run(("openssl x509 -req -in %q -signkey %q -out %q -days %d -extfile %q")
      :format(csr, k, pem, days, extfile))
  end
  return pem, k
end

local function make_ca(dir, name)
  local k, pem = dir .. "/" .. name .. ".key", dir .. "/" .. name .. ".pem"
  key(k)
  run(("openssl req -x509 -new -key %q -out %q -days 2 -subj %q")
    :format(k, pem, "/CN=moonws test " .. name))
  return pem
end

function certs.get()
  if made then return made end
  local pipe = assert(io.popen("mktemp -d"))
  local dir = pipe:read("l")
  pipe:close()
  local c = { dir = dir }
  c.ca = make_ca(dir, "ca")
  c.other_ca = make_ca(dir, "other-ca")
  local ca = dir .. "/ca"
  local server_ext = "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
  c.server_cert, c.server_key = cert(dir, "server", "localhost", ca, server_ext, 2)
  c.expired_cert, c.expired_key = cert(dir, "expired", "localhost", ca, server_ext, -1)
  c.self_cert, c.self_key = cert(dir, "self", "localhost", nil, server_ext, 2)
  c.client_cert, c.client_key = cert(dir, "client", "moonws test client", ca,
    "extendedKeyUsage=clientAuth", 2)
  made = c
  return c
end

function certs.cleanup()
  if made then
    os.execute(("rm -rf %q"):format(made.dir))
    made = nil
  end
end

return certs

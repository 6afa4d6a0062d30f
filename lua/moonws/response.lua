-- moonws.response -- what a client keeps of a handshake the server
-- refused with an HTTP answer: the status, the headers (lower-case names)
-- and the start of the body, at most core.HANDSHAKE_BODY_MAX bytes.  The
-- error event carries them (event.status, event.headers, event.body) and
-- moonws.connect returns them after nil, message, name.
--
-- Sans-I/O: a driver feeds the bytes that follow the head (what it has,
-- then what it reads) until feed says the body is complete, or the
-- connection ends, or the connect timeout comes; then result() is what
-- there is.  The body ends as HTTP/1.1 says (RFC 9112 6.3): none for 1xx,
-- 204 and 304; the chunked coding, decoded; Content-Length bytes.  A body
-- of no declared length would end with the connection, but a server may
-- keep it open as long as the client does (as for a 302 with no body):
-- then what came with the head is all that is kept, and the client fails
-- at once.  Input is bounded too (a chunked body of empty chunks,
-- extensions without end): past INPUT_MAX bytes it is complete.

local core = require "moonws.core"

local response = {}

local BODY_MAX = core.HANDSHAKE_BODY_MAX
local INPUT_MAX = 4 * BODY_MAX
local LINE_MAX = 1024 -- a chunk-size line

-- A collector for an answer with status and headers.
function response.new(status, headers)
  local r = { status = status, headers = headers or {}, parts = {}, size = 0, input = 0,
    done = false }
  local te = r.headers["transfer-encoding"]
  local length = r.headers["content-length"]
  if status < 200 or status == 204 or status == 304 then
    r.done = true
  elseif te and te:lower():match("chunked%s*$") then
    r.chunked, r.pending, r.left = true, "", nil
  elseif length and length:match("^%d+$") then
    r.want = math.min(tonumber(length), BODY_MAX)
    r.done = r.want == 0
  else
    r.want, r.first_only = BODY_MAX, true -- no declared length: what came with the head
  end
  return r
end

local function keep(r, bytes)
  local room = BODY_MAX - r.size
  if room <= 0 or bytes == "" then return end
  if #bytes > room then bytes = bytes:sub(1, room) end
  r.parts[#r.parts + 1] = bytes
  r.size = r.size + #bytes
end

-- The chunked coding (RFC 9112 7.1): chunk-size [; ext] CRLF data CRLF,
-- ..., 0 CRLF.  Whatever does not follow it ends the body where it is.
local function feed_chunked(r, bytes)
  local buf = r.pending .. bytes
  local pos = 1
  while true do
    if r.left == nil then -- a chunk-size line
      local e = buf:find("\r\n", pos, true)
      if not e then
        if #buf - pos + 1 > LINE_MAX then r.done = true end
        break
      end
      local hex, rest = buf:sub(pos, e - 1):match("^(%x+)(.*)$")
      if not hex or #hex > 8 or not (rest == "" or rest:match("^[ \t]*;")) then
        r.done = true
        break
      end
      r.left = tonumber(hex, 16)
      pos = e + 2
      if r.left == 0 then r.done = true break end
    elseif r.left > 0 then
      local take = math.min(r.left, #buf - pos + 1)
      if take == 0 then break end
      keep(r, buf:sub(pos, pos + take - 1))
      r.left, pos = r.left - take, pos + take
    else -- the CRLF after a chunk's data
      if #buf - pos + 1 < 2 then break end
      if buf:sub(pos, pos + 1) ~= "\r\n" then r.done = true break end
      r.left, pos = nil, pos + 2
    end
  end
  r.pending = r.done and "" or buf:sub(pos)
end

-- Feed the bytes that followed; true once the body is complete.
function response.feed(r, bytes)
  if r.done then return true end
  r.input = r.input + #bytes
  if r.chunked then
    feed_chunked(r, bytes)
  else
    keep(r, bytes)
    if r.size >= r.want or r.first_only then r.done = true end
  end
  if r.input >= INPUT_MAX or r.size >= BODY_MAX then r.done = true end
  return r.done
end

-- status, headers, body (what came of it).
function response.result(r)
  return r.status, r.headers, table.concat(r.parts)
end

return response

-- A coroutine receiver answers the messages that came before a protocol
-- error (issue 16): when one read brings a good message and then a bad
-- frame, receive() returns the good message and the reply sent to it
-- reaches the peer BEFORE the failing close (1002), as an event-style
-- handler's reply always did.  Client and server, against the raw peer
-- (spec/peers/raw_peer.py), which writes both frames in one write.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local rawpeer = require "spec.support.rawpeer"

local GOOD = { opcode = 1, payload_text = "good" }
local BAD = {
  { "reserved bits (RSV2 without an extension)", { opcode = 1, payload_text = "x", rsv = 2 } },
  { "a reserved opcode (3)", { opcode = 3, payload_text = "x" } },
  { "a fragmented control frame (ping without FIN)", { opcode = 9, fin = false,
    payload_text = "p" } },
}

-- The coroutine receiver: take one message, answer it, then see the
-- failure.  Returns a table filled as it goes (done once it saw it).
local function receiver(ws, out)
  local data = ws:receive(5)
  out.data = data
  out.sent = { ws:send("re: " .. tostring(data)) }
  out.after = { ws:receive(5) }
  out.done = true
end

-- The frames the peer read after the handshake, as { opcode, payload or
-- close code }.
local function frames_seen(events)
  local out = {}
  for _, f in ipairs(rawpeer.select(events, "frame")) do
    out[#out + 1] = { f.opcode, f.opcode == 8 and f.close_code or rawpeer.unhex(f.payload_hex) }
  end
  return out
end

local function check(out, events)
  assert.equal("good", out.data)
  assert.same({ true }, out.sent)
  assert.is_nil(out.after[1])
  assert.equal("protocol", out.after[3])
  -- The reply first, then the close with the RFC's code.
  assert.same({ { 1, "re: good" }, { 8, 1002 } }, frames_seen(events))
end

describe("client: a coroutine receiver answers before the failing close", function()
  for _, case in ipairs(BAD) do
    it(case[1], function()
      local p = rawpeer.server({
        { handshake = {} },
        { sleep = 0.3 }, -- the client waits in receive() by then
        { send_frames = { GOOD, case[2] } },
        { read_frames = { ["until"] = "close", timeout = 5 } },
      })
      local out = {}
      local ok, err = pcall(function()
        moonws.spawn(function()
          local ws = assert(moonws.connect(("ws://127.0.0.1:%d/"):format(p:port())))
          receiver(ws, out)
        end)
        helpers.run_until(function() return out.done end, 10, "the receiver")
        check(out, rawpeer.finish(p, 10, helpers.idle))
      end)
      p:cleanup()
      if not ok then error(err, 0) end
    end)
  end
end)

describe("server: a coroutine receiver answers before the failing close", function()
  for _, case in ipairs(BAD) do
    it(case[1], function()
      local out = {}
      local srv = assert(moonws.serve({ port = 0 }, function(ws) receiver(ws, out) end))
      local p = rawpeer.client(srv.port, {
        { handshake = {} },
        { send_frames = { GOOD, case[2] } },
        { read_frames = { ["until"] = "close", timeout = 5 } },
      })
      local ok, err = pcall(function()
        helpers.run_until(function() return out.done end, 10, "the receiver")
        check(out, rawpeer.finish(p, 10, helpers.idle))
      end)
      srv:close()
      p:cleanup()
      if not ok then error(err, 0) end
    end)
  end
end)

-- spec/support/topic_server.lua -- a moonws server whose topics go through
-- a moonws.pubsub relay, for spec/topics_relay_spec.lua:
--   lua5.4 spec/support/topic_server.lua REDIS_URL
-- Every socket subscribes to "news"; a text it sends is published to the
-- other subscribers (ws:publish), but "stats?", answered with this
-- process's relay counters.  Prints "port N" once listening and Redis is
-- reachable.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath
local moonws = require "moonws"

local ps = moonws.pubsub(arg[1])
local srv = assert(moonws.listen { host = "127.0.0.1", port = 0, pubsub = ps,
  compression = { server_no_context_takeover = true, threshold = 0 } })
srv.onconnection = function(ws)
  ws:subscribe("news")
  ws.onmessage = function(e)
    if e.data == "stats?" then
      local st = srv:stats()
      ws:send(("stats %d %d %d"):format(st.relayed_in, st.fanout_deliveries, st.shared_deflates))
    else
      assert(ws:publish("news", e.data, e.binary and "binary" or "text"))
    end
  end
end
moonws.spawn(function()
  assert(ps:wait(10))
  print("port " .. srv.port)
  io.stdout:flush()
end)
moonws.run()

-- moonws.metrics -- a server's counters (server:stats(), moonws.topics) as
-- Prometheus text (exposition format 0.0.4), for a /metrics route served
-- by the server's own `request` option (docs/TOPICS.md):
--
--   local metrics = require "moonws.metrics"
--   request = function(req)
--     if req.path == "/metrics" then return metrics.response(server) end
--   end
--
-- Counters end in _total; gauges do not.  Every metric is named with a
-- prefix (default "moonws") and the server's port as a label, so several
-- servers of one process can share a route.

local misuse = require "moonws.misuse"

local metrics = {}

metrics.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

-- name, type, help, stats field (in the order they are written)
local SERIES = {
  { "connections_open", "gauge", "Open WebSocket connections", "connections_open" },
  { "connections_total", "counter", "Connections that completed the handshake",
    "connections_total" },
  { "messages_in_total", "counter", "Data messages received", "messages_in" },
  { "bytes_in_total", "counter", "Payload bytes received (after inflating)", "bytes_in" },
  { "wire_bytes_in_total", "counter", "Data frame payload bytes received", "wire_bytes_in" },
  { "compressed_in_total", "counter", "Wire bytes of compressed messages received",
    "compressed_in" },
  { "inflated_in_total", "counter", "Bytes inflating made", "inflated_in" },
  { "messages_out_total", "counter", "Data messages queued to send", "messages_out" },
  { "bytes_out_total", "counter", "Payload bytes queued to send (before compressing)",
    "bytes_out" },
  { "wire_bytes_out_total", "counter", "Data frame payload bytes queued to send",
    "wire_bytes_out" },
  { "deflated_out_total", "counter", "Payload bytes of messages sent compressed, before",
    "deflated_out" },
  { "deflated_wire_out_total", "counter", "Wire bytes of messages sent compressed, after",
    "deflated_wire_out" },
  { "dropped_total", "counter", "Published messages dropped for slow receivers", "dropped" },
  { "slow_closed_total", "counter", "Slow receivers closed by the slow_receiver policy",
    "slow_closed" },
  { "publishes_total", "counter", "publish calls (server and sockets)", "publishes" },
  { "broadcasts_total", "counter", "broadcast calls", "broadcasts" },
  { "fanout_messages_total", "counter", "Messages fanned out in this process",
    "fanout_messages" },
  { "fanout_deliveries_total", "counter", "Receivers a fan-out queued a message on",
    "fanout_deliveries" },
  { "shared_deflates_total", "counter", "Compressions made once for many receivers",
    "shared_deflates" },
  { "own_deflates_total", "counter", "Receivers that compressed a published message alone",
    "own_deflates" },
  { "relayed_out_total", "counter", "Publishes sent to the pubsub relay", "relayed_out" },
  { "relayed_in_total", "counter", "Messages received from the pubsub relay", "relayed_in" },
  { "relay_failed_total", "counter", "Publishes the pubsub relay refused", "relay_failed" },
  { "handler_errors_total", "counter", "Errors raised by the application's handlers",
    "handler_errors" },
  { "topics", "gauge", "Topics with a subscriber in this process", "topics" },
}

local function check_prefix(prefix, what)
  if prefix == nil then return "moonws" end
  if type(prefix) ~= "string" or not prefix:match("^[%a_:][%w_:]*$") then
    misuse.arg(2, what, "a Prometheus metric name prefix expected")
  end
  return prefix
end

-- render(stats [, prefix [, labels]]) -> text.  stats: server:stats();
-- labels: a string of Prometheus labels without braces (`port="8080"`).
function metrics.render(stats, prefix, labels)
  if type(stats) ~= "table" then
    misuse.arg(1, "render", "server:stats() table expected")
  end
  prefix = check_prefix(prefix, "render")
  local lab = labels and labels ~= "" and "{" .. labels .. "}" or ""
  local out = {}
  for _, s in ipairs(SERIES) do
    local name = prefix .. "_" .. s[1]
    out[#out + 1] = ("# HELP %s %s\n# TYPE %s %s\n%s%s %d\n"):format(name, s[3], name, s[2],
      name, lab, stats[s[4]] or 0)
  end
  local name = prefix .. "_close_codes_total"
  out[#out + 1] = ("# HELP %s Connections closed, by close code\n# TYPE %s counter\n")
    :format(name, name)
  local codes = {}
  for code in pairs(stats.close_codes or {}) do codes[#codes + 1] = code end
  table.sort(codes)
  for _, code in ipairs(codes) do
    out[#out + 1] = ('%s{%scode="%d"} %d\n'):format(name,
      labels and labels ~= "" and labels .. "," or "", code, stats.close_codes[code])
  end
  return table.concat(out)
end

-- response(server [, prefix]) -> 200, headers, body: what a `request`
-- handler returns for a /metrics route.
function metrics.response(server, prefix)
  prefix = check_prefix(prefix, "response")
  local body = metrics.render(server:stats(), prefix, ('port="%d"'):format(server.port))
  return 200, { ["Content-Type"] = metrics.CONTENT_TYPE }, body
end

return metrics

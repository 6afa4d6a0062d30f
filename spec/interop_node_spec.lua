-- spec/interop_node_spec.lua -- the shared interop cases (spec/support/
-- interop.lua) against Node ws 8.18.0 (spec/peers/node_peer.js).
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"

require("spec.support.interop").run(_ENV, {
  name = "Node ws 8.18.0",
  argv = { "node", "spec/peers/node_peer.js" },
})

-- spec/interop_node_spec.lua -- the shared interop cases (spec/support/
-- interop.lua) against Node ws 8.18.0 (spec/peers/node_peer.js), over ws://.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local interop = require "spec.support.interop"

interop.run(_ENV, interop.peers.node)

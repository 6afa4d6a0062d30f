-- spec/interop_node_deflate_spec.lua -- permessage-deflate (RFC 7692)
-- interop against Node ws 8.18.0 (spec/peers/node_peer.js),
-- both directions: negotiation, sizes around the threshold, fragments,
-- context takeover and window bits (spec/support/interop.lua).
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local interop = require "spec.support.interop"

interop.run_deflate(_ENV, interop.peers.node)

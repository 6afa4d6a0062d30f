-- spec/interop_python_deflate_spec.lua -- permessage-deflate (RFC 7692)
-- interop against Python websockets 10.4 (spec/peers/python_peer.py),
-- both directions: negotiation, sizes around the threshold, fragments,
-- context takeover and window bits (spec/support/interop.lua).
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local interop = require "spec.support.interop"

interop.run_deflate(_ENV, interop.peers.python)

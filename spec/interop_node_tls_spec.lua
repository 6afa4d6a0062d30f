-- spec/interop_node_tls_spec.lua -- the shared interop cases (spec/support/
-- interop.lua) against Node ws 8.18.0 (spec/peers/node_peer.js) over wss://, both
-- directions, with the throwaway certificates of spec/support/certs.lua.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local certs = require "spec.support.certs"
local interop = require "spec.support.interop"

teardown(function() certs.cleanup() end)

interop.run(_ENV, interop.peers.node, interop.tls())

-- spec/interop_python_tls_spec.lua -- the shared interop cases (spec/support/
-- interop.lua) against Python websockets 10.4 (spec/peers/python_peer.py) over wss://, both
-- directions, with the throwaway certificates of spec/support/certs.lua.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local certs = require "spec.support.certs"
local interop = require "spec.support.interop"

teardown(function() certs.cleanup() end)

interop.run(_ENV, interop.peers.python, interop.tls())

-- spec/interop_python_spec.lua -- the shared interop cases (spec/support/
-- interop.lua) against Python websockets 10.4 (spec/peers/python_peer.py),
-- over ws://.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local interop = require "spec.support.interop"

interop.run(_ENV, interop.peers.python)

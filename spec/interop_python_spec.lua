-- spec/interop_python_spec.lua -- the shared interop cases (spec/support/
-- interop.lua) against Python websockets 10.4 (spec/peers/python_peer.py).
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"

require("spec.support.interop").run(_ENV, {
  name = "Python websockets 10.4",
  argv = { "/usr/bin/python3", "spec/peers/python_peer.py" },
})

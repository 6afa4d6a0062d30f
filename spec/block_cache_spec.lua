-- The cache of small freed blocks in front of the Lua allocator
-- (docs/DESIGN.md 2.5): a block it hands out again must never be one still
-- in use, what it holds stays bounded, and turning it off gives everything
-- back.  Under spec/run_sanitized it also runs with ASan's poisoning and
-- valgrind's marking of the blocks it holds.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws

local LUA54 = _VERSION == "Lua 5.4" and not rawget(_G, "jit")
local MAX_HELD = 128 * 1024

-- Many small strings and tables of every size the cache serves, some kept
-- and some dropped, then a collection: each kept one must still hold what
-- was written into it.
local function churn(rounds)
  local kept = {}
  for round = 1, rounds do
    for size = 1, 300 do
      local s = string.rep(string.char(65 + size % 26), size) .. round
      local t = { s = s, n = size, round = round }
      for i = 1, size % 9 do t[i] = i * size end
      if size % 3 == 0 then kept[#kept + 1] = t end
    end
    collectgarbage()
  end
  for _, t in ipairs(kept) do
    assert.equal(string.rep(string.char(65 + t.n % 26), t.n) .. t.round, t.s)
    for i = 1, t.n % 9 do assert.equal(i * t.n, t[i]) end
  end
  return #kept
end

describe("the block cache", function()
  after_each(function() moonws.block_cache(true) end)

  it("is on under Lua 5.4 and off under LuaJIT, which has its own allocator", function()
    local on, held = moonws.block_cache()
    assert.equal(LUA54, on)
    assert.is_true(held >= 0 and held <= MAX_HELD)
    if not LUA54 then assert.equal(0, held) end
  end)

  it("hands freed blocks out again without disturbing live ones, and holds at most 128 KiB", function()
    assert.equal(20 * 100, churn(20))
    local on, held = moonws.block_cache()
    if LUA54 then
      assert.is_true(on)
      assert.is_true(held > 0, "a collection freed small blocks, yet the cache holds none")
    end
    assert.is_true(held <= MAX_HELD, held .. " bytes held")
  end)

  it("turned off gives every block back, and the program runs on; turned on, it caches again", function()
    churn(5)
    assert.same({ false, 0 }, { moonws.block_cache(false) })
    assert.equal(10 * 100, churn(10))
    assert.same({ false, 0 }, { moonws.block_cache() })
    local on = moonws.block_cache(true)
    assert.equal(LUA54, on)
    churn(5)
    local _, held = moonws.block_cache()
    if LUA54 then assert.is_true(held > 0) end
  end)

  it("carries messages both ways with the cache off, and on again", function()
    local srv = assert(moonws.listen { port = 0 })
    srv.onconnection = function(s) s.onmessage = function(e) s:send(e.data) end end
    local ws = assert(moonws.connect("ws://127.0.0.1:" .. srv.port))
    for _, on in ipairs { false, true } do
      moonws.block_cache(on)
      for size = 1, 300, 7 do
        local msg = string.rep("x", size) .. tostring(on)
        assert(ws:send(msg))
        assert.equal(msg, (ws:receive()))
      end
    end
    ws:close()
    srv:close()
  end)

  it("a script that exits with the cache holding blocks closes its state cleanly", function()
    local process = require "spec.support.process"
    local code = [[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = (os.getenv("MOONWS_CPATH") or "./?.so") .. ";" .. package.cpath
      local moonws = require "moonws"
      local t = {}
      for i = 1, 50000 do t[i % 100] = { i, tostring(i) } end
      collectgarbage()
      local on, held = moonws.block_cache()
      io.write(tostring(on), " ", held > 0 and "holding" or "empty", "\n")
      os.exit(0, true) -- lua_close: the cache's finalizer gives its blocks back
    ]]
    local p = process.start({ LUA54 and "lua5.4" or "luajit", "-e", code }, 30)
    finally(function() p:kill() end)
    assert.is_true(p:wait_exit(30), "the script did not exit")
    assert.equal(0, p:exit_status(), p:stderr())
    assert.equal(LUA54 and "true holding\n" or "false empty\n", p:stdout())
  end)

  it("rejects anything but a boolean", function()
    assert.has_error(function() moonws.block_cache(1) end,
      "bad argument #1 to 'block_cache' (boolean expected)")
    assert.has_error(function() moonws.block_cache("off") end,
      "bad argument #1 to 'block_cache' (boolean expected)")
  end)
end)

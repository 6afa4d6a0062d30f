-- Error names come from one table (docs/DESIGN.md 2.8): the C core's
-- WS_ERRORS, exported as moonws.errors (name -> description) and, by name,
-- as the constants of moonws.errors-the-module (errors.TIMEOUT ==
-- "timeout").  moonws's own Lua code writes every error name as such a
-- constant, so a misspelt one fails where it is written; this spec fails
-- on any constant that does not exist and on any error name typed as a
-- string literal.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws

local errors = require "moonws.errors"

local function lua_files()
  local list = {}
  local p = assert(io.popen("ls lua/moonws/*.lua"))
  for path in p:lines() do list[#list + 1] = path end
  p:close()
  return list
end

-- The line without its comment (a "--" outside a string literal).
local function code_of(line)
  local i, quote = 1, nil
  while i <= #line do
    local c = line:sub(i, i)
    if quote then
      if c == "\\" then i = i + 1 elseif c == quote then quote = nil end
    elseif c == '"' or c == "'" then
      quote = c
    elseif line:sub(i, i + 1) == "--" then
      return line:sub(1, i - 1)
    end
    i = i + 1
  end
  return line
end

-- Where a literal spelling an error name is not an error name: a
-- comparison with a string from elsewhere (a cosocket's "timeout"), a
-- string search, the log's own event names ("closed", "tls", ...), or a
-- line that says so in its comment ("not an error name").
local function allowed(code, at, lit, line)
  if line and line:find("not an error name", 1, true) then return true end
  local before = code:sub(1, at - 1)
  if before:match("[=~]=%s*$") then return true end
  if before:match("find%($") then return true end
  if before:match("log%.emit%(%s*[%w_.]+%s*,%s*$") then return true end
  return false
end

describe("error names", function()
  it("moonws.errors and the constants agree", function()
    local n = 0
    for name, description in pairs(moonws.errors) do
      assert.is_string(description)
      assert.equal(name, errors[name:upper()])
      n = n + 1
    end
    assert.is_true(n >= 13)
    assert.has_error(function() return errors.TIMOUT end,
      "moonws.errors has no error named TIMOUT")
  end)

  it("lua/moonws writes error names only as existing constants", function()
    local problems = {}
    for _, path in ipairs(lua_files()) do
      local n = 0
      for line in io.lines(path) do
        n = n + 1
        local code = code_of(line)
        for const in code:gmatch("E%.([%a_][%w_]*)") do
          if not rawget(errors, const) then
            problems[#problems + 1] = ("%s:%d: E.%s is no error name"):format(path, n, const)
          end
        end
        local pos = 1
        while true do
          local s, e, lit = code:find('"([%w_]+)"', pos)
          if not s then break end
          if moonws.errors[lit] and not allowed(code, s, lit, line) then
            problems[#problems + 1] = ("%s:%d: error name %q typed as a string: use E.%s")
              :format(path, n, lit, lit:upper())
          end
          pos = e + 1
        end
      end
    end
    assert.same({}, problems)
  end)

  it("would catch a typed name", function()
    assert.is_false(allowed('return nil, "closed", "closed"', 13, "closed"))
    assert.is_true(allowed('if err == "timeout" then', 11, "timeout"))
    assert.is_true(allowed('log.emit(st, "closed", "x")', 14, "closed"))
  end)
end)

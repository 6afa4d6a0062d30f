-- Every code sample in README.md and in docs/*.md runs here, so the
-- documentation cannot go stale.
--
-- Each ```lua or ```c block is preceded by a marker comment saying how it
-- is checked (an unmarked one fails this spec):
--   <!-- sample: run -->       a whole program: runs, exits 0
--   <!-- sample: client -->    a client: runs against an echo server that
--                              closes with 1000 after echoing one message
--   <!-- sample: server -->    a server: started, then a client exchanges
--                              a message with it, then it is killed
--   <!-- sample: tls -->       a whole program run in a folder holding
--                              ca.pem and server.pem/server.key (signed
--                              by ca.pem for localhost)
--   <!-- sample: file PATH --> an excerpt: appears verbatim in PATH (a
--                              file the other specs run)
-- Ports 8080 and 8443 in a sample are replaced by free ports; samples run
-- with moonws on the paths, bounded in time.  Lines of a `run` sample
-- that start with "--> " are what it must print, in that order.
local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"
local certs = require "spec.support.certs"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- The pages whose samples run: README.md and every docs/*.md.
local function pages()
  local list = { "README.md" }
  local p = assert(io.popen("ls docs/*.md 2>/dev/null"))
  for path in p:lines() do list[#list + 1] = path end
  p:close()
  return list
end

-- The fenced blocks of a page: { lang, code, mode, arg, line, page }.
local function samples(page)
  local list, marker, line_no = {}, nil, 0
  local block
  for line in (read(page) .. "\n"):gmatch("(.-)\n") do
    line_no = line_no + 1
    if block then
      if line:match("^```%s*$") then
        list[#list + 1] = block
        block = nil
      else
        block.code[#block.code + 1] = line
      end
    else
      local mode, arg = line:match("^<!%-%- sample: (%a+)%s*(.-)%s*%-%->$")
      if mode then
        marker = { mode = mode, arg = arg }
      else
        local lang = line:match("^```(%w*)")
        if lang then
          block = { lang = lang, code = {}, line = line_no, page = page,
            mode = marker and marker.mode, arg = marker and marker.arg }
        end
        if line:match("%S") then marker = nil end
      end
    end
  end
  for _, b in ipairs(list) do b.code = table.concat(b.code, "\n") .. "\n" end
  return list
end

local free_port = helpers.free_port

local root = assert(io.popen("pwd")):read("l")

-- Write code to a temporary file and run it with lua5.4 (in folder dir,
-- default the checkout); returns the process.
local function start_lua(code, port, dir)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "wb"))
  f:write((code:gsub("8080", tostring(port)):gsub("8443", tostring(port))))
  f:close()
  local p = process.start({ "sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", dir or root,
    "env", ("LUA_PATH=%s/lua/?.lua;%s/lua/?/init.lua;;"):format(root, root),
    ("LUA_CPATH=%s/?.so;;"):format(root), "lua5.4", path }, 20)
  p.sample_path = path
  return p
end

local function finish(p)
  p:cleanup()
  os.remove(p.sample_path)
end

local function output(p)
  return ("stdout:\n%s\nstderr:\n%s"):format(p:stdout(), p:stderr())
end

local checks = {}

function checks.run(sample)
  local port = free_port()
  local p = start_lua(sample.code, port)
  local exited = p:wait_exit(15)
  local status, out, stdout = p:exit_status(), output(p), p:stdout()
  finish(p)
  assert.is_true(exited, "the sample did not finish\n" .. out)
  assert.equal(0, status, out)
  local code = sample.code:gsub("8080", tostring(port))
  local expected = {}
  for line in code:gmatch("[^\n]+") do
    expected[#expected + 1] = line:match("^%-%-> (.*)$")
  end
  local printed = {}
  for line in stdout:gmatch("[^\n]+") do printed[#printed + 1] = line end
  assert.same(expected, printed)
end

function checks.tls(sample)
  local c = certs.get()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute(("mkdir -p %q && cp %q %q/ca.pem && cp %q %q/server.pem && cp %q %q/server.key")
    :format(dir, c.ca, dir, c.server_cert, dir, c.server_key, dir)))
  local p = start_lua(sample.code, free_port(), dir)
  local exited = p:wait_exit(15)
  local status, out = p:exit_status(), output(p)
  finish(p)
  os.execute(("rm -rf %q"):format(dir))
  assert.is_true(exited, "the sample did not finish\n" .. out)
  assert.equal(0, status, out)
end

function checks.client(sample)
  -- It takes the first subprotocol a sample offers (a client that offers
  -- some fails a 101 that chooses none).
  local srv = assert(moonws.listen { port = 0, protocols = function(offered) return offered[1] end })
  local got = {}
  srv.onconnection = function(ws)
    ws.onmessage = function(e)
      got[#got + 1] = e.data
      ws:send(e.data)
      ws:close(1000, "sample done")
    end
  end
  local p = start_lua(sample.code, srv.port)
  local exited = p:wait_exit(15, helpers.idle)
  local status, out = p:exit_status(), output(p)
  finish(p)
  srv:close()
  assert.is_true(exited, "the sample did not finish\n" .. out)
  assert.equal(0, status, out)
  assert.is_true(#got >= 1, "the sample sent nothing\n" .. out)
end

function checks.server(sample)
  local port = free_port()
  local p = start_lua(sample.code, port)
  local ws, message
  local deadline = require("moonws.core").now() + 10
  repeat -- until the sample listens
    ws, message = moonws.connect("ws://127.0.0.1:" .. port .. "/", { timeout = 2 })
    if not ws then helpers.idle(0.1) end
  until ws or not p:alive() or require("moonws.core").now() > deadline
  local echoed
  if ws then
    ws:send("hello sample")
    echoed = ws:receive(5)
    ws:close()
  end
  local out = output(p)
  p:kill()
  finish(p)
  assert.truthy(ws, tostring(message) .. "\n" .. out)
  assert.equal("hello sample", echoed, out)
end

function checks.file(sample)
  local text = read(sample.arg)
  local found = text:find(sample.code, 1, true)
  assert.truthy(found, ("%s sample at line %d is not in %s"):format(sample.page, sample.line,
    sample.arg))
end

-- Links between the pages: a relative link names a file of the checkout,
-- and a #fragment into a Markdown page names one of its headings (as
-- GitHub makes anchors: lower case, punctuation dropped, spaces to "-").
local function anchors(path)
  local set, fenced = {}, false
  for line in io.lines(path) do
    if line:match("^```") then fenced = not fenced end
    local title = not fenced and line:match("^#+%s+(.-)%s*$")
    if title then
      set[title:lower():gsub("[^%w%s_%-\128-\255]", ""):gsub("%s", "-")] = true
    end
  end
  return set
end

local function broken_links(page)
  local dir = page:match("^(.*)/") or "."
  local problems, fenced, line_no = {}, false, 0
  for line in io.lines(page) do
    line_no = line_no + 1
    if line:match("^```") then fenced = not fenced end
    for target in (fenced and "" or line):gmatch("%]%(([^)%s]+)%)") do
      if not target:match("^%a+:") then
        local file, fragment = target:match("^([^#]*)#?(.*)$")
        local path = file == "" and page or (dir .. "/" .. file)
        local f = io.open(path, "rb")
        if not f then
          problems[#problems + 1] = ("line %d: %s: no such file"):format(line_no, target)
        else
          f:close()
          if fragment ~= "" and path:match("%.md$") and not anchors(path)[fragment] then
            problems[#problems + 1] = ("line %d: %s: no such heading"):format(line_no, target)
          end
        end
      end
    end
  end
  return problems
end

for _, page in ipairs(pages()) do
  describe(page .. " links", function()
    it("lead to files of the checkout and to headings that exist", function()
      local problems = broken_links(page)
      assert.equal("", table.concat(problems, "\n"))
    end)
  end)

  describe(page .. " code samples", function()
    local list = samples(page)
    teardown(function() certs.cleanup() end)

    it("every Lua or C sample says how it is checked", function()
      if page == "README.md" then assert.is_true(#list >= 5) end
      for _, s in ipairs(list) do
        if s.lang == "lua" or s.lang == "c" then
          assert.truthy(s.mode and checks[s.mode],
            ("%s line %d: a %s sample needs a <!-- sample: ... --> marker"):format(page, s.line,
              s.lang))
        end
      end
    end)

    for _, s in ipairs(list) do
      if s.mode then
        it(("line %d (%s %s%s)"):format(s.line, s.lang, s.mode, s.arg ~= "" and " " .. s.arg or ""),
          function() checks[s.mode](s) end)
      end
    end
  end)
end

-- spec/browser_spec.lua -- moonws against a real browser: Debian's headless
-- Chromium, driven by spec/peers/browser.js (playwright-core).
--
-- A moonws server in this process serves a test page over plain HTTP (the
-- `request` option) and the page's WebSocket.  The page does what the
-- browser-side seed example does: open, send "Hello Server!", log
-- event.code and event.reason in onclose.  The chat example
-- (examples/chat/) runs as its own process with two pages, and the test
-- writes a screenshot of it to docs/chat.png.

local helpers = require "spec.support.helpers"
local moonws = helpers.moonws
local process = require "spec.support.process"

-- The test page.  Its socket goes to /ws/<mode> for the page /page/<mode>.
local PAGE = [[<!doctype html>
<html><head><meta charset="utf-8"><title>moonws browser test</title></head>
<body><pre id="log"></pre>
<script>
  window.result = { opened: false, messages: [], closed: null };
  function log(...parts) {
    console.log(...parts);
    document.getElementById("log").textContent += parts.join(" ") + "\n";
  }
  const socket = new WebSocket("ws://" + location.host + location.pathname.replace(/^\/page/, "/ws"));
  socket.addEventListener("open", (event) => {
    result.opened = true;
    socket.send("Hello Server!");
  });
  socket.addEventListener("message", (event) => {
    log("Message from server ", event.data);
    result.messages.push(event.data);
  });
  socket.addEventListener("close", (event) => {
    log("closed", event.code, event.reason);
    result.closed = { code: event.code, reason: event.reason, wasClean: event.wasClean };
  });
</script></body></html>
]]

local MiB = 1024 * 1024

-- The text browser.js generates for the big message: MINSTD letters and spaces.
local function text_of(size)
  local out, chunk, x = {}, {}, 12345
  for i = 1, size do
    x = x * 48271 % 2147483647
    local c = x % 27
    chunk[#chunk + 1] = c == 26 and 32 or 97 + c
    if #chunk == 4096 or i == size then
      out[#out + 1] = string.char(table.unpack(chunk))
      chunk = {}
    end
  end
  return table.concat(out)
end

-- A moonws server that serves PAGE and plays the server side of each mode;
-- `seen` collects what it saw.
local function test_server(options)
  local seen = { sockets = {}, messages = {}, closes = {} }
  options = options or {}
  options.host, options.port = "127.0.0.1", 0
  options.request = function(req)
    if req.path:match("^/page/") then
      return 200, { ["Content-Type"] = "text/html; charset=utf-8" }, PAGE
    end
    return 404, { ["Content-Type"] = "text/plain" }, "not found\n"
  end
  local server = assert(moonws.listen(options))
  server.onconnection = function(ws, request)
    seen.sockets[#seen.sockets + 1] = ws
    seen.path = request.path
    ws.onmessage = function(event)
      seen.messages[#seen.messages + 1] = event.data
      if event.data == "Hello Server!" then
        ws:send("Hello Page!")
        if request.path == "/ws/server-close" then ws:close(4001, "server done") end
      else
        ws:send(event.data)     -- the big message comes back
      end
    end
    ws.onclose = function(event)
      seen.closes[#seen.closes + 1] = { code = event.code, reason = event.reason,
        wasClean = event.wasClean }
    end
  end
  seen.server = server
  seen.url = ("http://127.0.0.1:%d/page/"):format(server.port)
  return seen
end

-- Run one scenario of browser.js while this process's loop keeps serving.
-- Returns its stdout; fails with its output when it did not finish well.
local function browse(scenario, url, extra)
  local p = process.start({ "node", "spec/peers/browser.js", scenario, url, extra }, 90)
  local ok, exited = pcall(p.wait_exit, p, 75, helpers.idle)
  local out, err, status = p:stdout(), p:stderr(), p:exit_status()
  p:cleanup()
  assert(ok, exited)
  assert(exited and status == 0 and out:find("\nDONE\n", 1, true),
    ("browser.js %s failed (status %s)\nstdout:\n%s\nstderr:\n%s"):format(
      scenario, tostring(status), out, err))
  return out
end

local function lines_of(out, tag)
  local found = {}
  for line in out:gmatch("[^\n]+") do
    local rest = line:match("^" .. tag .. " (.*)$")
    if rest then found[#found + 1] = rest end
  end
  return found
end

-- The PID of the program a process.lua process runs (under timeout and sh),
-- so a signal reaches the program itself.
local function program_pid(p, script)
  local function children(pid)
    local f = io.open(("/proc/%d/task/%d/children"):format(pid, pid))
    local list = f and f:read("a") or ""
    if f then f:close() end
    return list:gmatch("%d+")
  end
  local function search(pid)
    local f = io.open(("/proc/%d/cmdline"):format(pid))
    local cmdline = f and f:read("a") or ""
    if f then f:close() end
    if cmdline:find(script, 1, true) and cmdline:match("^lua") then return tonumber(pid) end
    for child in children(pid) do
      local found = search(child)
      if found then return found end
    end
  end
  return search(p.pid)
end

describe("browser #host", function()
  it("serves the page over plain HTTP; server closes with 4001: the page sees 4001 'server done', wasClean", function()
    local seen = test_server()
    finally(function() seen.server:close() end)
    local out = browse("server-close", seen.url .. "server-close")
    assert.truthy(out:find("^OPENED\n"), out)
    assert.same({ "Hello Page!" }, lines_of(out, "MESSAGE"))
    assert.same({ "code=4001 clean=true reason=server done" }, lines_of(out, "CLOSE"))
    assert.same({ "Hello Server!" }, seen.messages)
    assert.equal("/ws/server-close", seen.path)
    helpers.run_until(function() return #seen.closes == 1 end, 10, "the server's onclose")
    assert.same({ code = 4001, reason = "server done", wasClean = true }, seen.closes[1])
  end)

  it("the page closes with 1000 'page done': the server's onclose sees 1000 'page done', wasClean", function()
    local seen = test_server()
    finally(function() seen.server:close() end)
    local out = browse("page-close", seen.url .. "page-close")
    assert.same({ "Hello Page!" }, lines_of(out, "MESSAGE"))
    -- The page's close event has the server's answering close frame,
    -- which echoes code and reason (as Node's ws does).
    assert.same({ "code=1000 clean=true reason=page done" }, lines_of(out, "CLOSE"))
    helpers.run_until(function() return #seen.closes == 1 end, 10, "the server's onclose")
    assert.same({ code = 1000, reason = "page done", wasClean = true }, seen.closes[1])
    assert.same({ "Hello Server!" }, seen.messages)
  end)

  it("with compression = true Chromium negotiates permessage-deflate; 1 MiB round trips intact", function()
    local seen = test_server { compression = true }
    finally(function() seen.server:close() end)
    local out = browse("big", seen.url .. "big", tostring(MiB))
    local expected = text_of(MiB)

    local extensions = lines_of(out, "EXTENSIONS")[1]
    assert.truthy(extensions and extensions:match("^permessage%-deflate"), out)
    assert.equal(1, #seen.sockets)
    assert.equal(extensions, seen.sockets[1].extensions)

    -- The server got the page's megabyte exactly, and the page its echo.
    assert.equal(2, #seen.messages)
    assert.equal(MiB, #seen.messages[2])
    assert.is_true(seen.messages[2] == expected, "the server got other bytes than the page sent")
    assert.same({ ("sent=%d received=%d equal=true"):format(MiB, MiB) }, lines_of(out, "BIG"))
    assert.same({ ('"%s" "%s"'):format(expected:sub(1, 16), expected:sub(-16)) },
      lines_of(out, "SAMPLE"))
    helpers.run_until(function() return #seen.closes == 1 end, 10, "the server's onclose")
    assert.same({ code = 1000, reason = "big done", wasClean = true }, seen.closes[1])
  end)

  it("chat example: a line typed in one page appears in the other; screenshot to docs/chat.png", function()
    local chat = process.start({ "lua5.4", "examples/chat/server.lua", "0" }, 90)
    finally(function() chat:cleanup() end)
    local port = tonumber(chat:wait_for("^chat: listening on http://127%.0%.0%.1:(%d+)/", 10))
    local png = "docs/chat.png"    -- relative to the checkout, where busted and node run
    os.remove(png)
    local out = browse("chat", ("http://127.0.0.1:%d/"):format(port), png)

    local extensions = lines_of(out, "EXTENSIONS")[1]
    assert.truthy(extensions and extensions:match("^permessage%-deflate"), out)
    assert.same({ "connected (" .. extensions .. ")" }, lines_of(out, "STATUS"))
    assert.same({ 'a ["* you are guest1","* guest1 joined","* guest2 joined",'
      .. '"guest1: Hello from page A","guest2: Hi A, this is B"]' }, { lines_of(out, "LINES")[1] })
    assert.same({ 'b ["* you are guest2","* guest2 joined",'
      .. '"guest1: Hello from page A","guest2: Hi A, this is B"]' }, { lines_of(out, "LINES")[2] })

    -- The server's side of it, and both pages leaving when Chromium quits.
    chat:wait_for('^chat: guest2 left %((1001) ""%)', 10)
    local log = chat:stdout()
    assert.truthy(log:find('chat: guest1 says "Hello from page A"', 1, true), log)
    assert.truthy(log:find('chat: guest2 says "Hi A, this is B"', 1, true), log)
    assert.truthy(log:find('chat: guest1 left (1001 "")', 1, true), log)

    local f = assert(io.open(png, "rb"))
    local image = f:read("a")
    f:close()
    assert.equal("\137PNG\r\n\26\n", image:sub(1, 8))
    assert.equal(720, string.unpack(">I4", image, 17))    -- IHDR width
    assert.equal(460, string.unpack(">I4", image, 21))    -- IHDR height

    -- SIGTERM: the example stops cleanly.
    local pid = assert(program_pid(chat, "examples/chat/server.lua"))
    os.execute("kill -TERM " .. pid)
    assert.is_true(chat:wait_exit(10))
    assert.equal(0, chat:exit_status())
    assert.truthy(chat:stdout():find("chat: got SIGTERM, closing\nchat: stopped\n", 1, true),
      chat:stdout())
  end)
end)

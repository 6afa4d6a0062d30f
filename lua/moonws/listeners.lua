-- moonws.listeners -- addEventListener / removeEventListener beside the
-- handler fields, as in the browser's API (DOM event listeners, and the
-- WebSocket interface's event handler attributes):
--
--   * every listener of a type gets the same event table, in the order
--     they were added; adding a function that is there already does
--     nothing; { once = true } removes it before its first call;
--   * a handler field (ws.onmessage = f) is one more listener, placed
--     where it was first assigned: assigning another function keeps that
--     place, assigning nil removes it, assigning again later puts it last;
--   * a listener removed while an event is dispatched is not called for
--     it; one added meanwhile waits for the next event;
--   * an error in one listener is reported (the socket's onerror, else
--     moonws.onerror or stderr) and the others still run.
--
-- The object's dispatch stays one call: st["on" .. type] is the handler
-- field itself while a type has no listeners, else a dispatcher made
-- here.  Only then is the field's value kept aside, in st.attrs, and the
-- list in st.listening (field name -> list of { fn, attr, once, removed }):
-- a socket that never adds a listener carries neither table.

local compat = require "moonws.compat"
local misuse = require "moonws.misuse"

local listeners = {}

-- Set by moonws.websocket: report(st, field, err), how a failing
-- handler is reported.
listeners.report = nil

local FIELDS = {
  open = "onopen", message = "onmessage", close = "onclose", error = "onerror",
  ping = "onping", pong = "onpong", drain = "ondrain",
}

local function callable(v)
  if type(v) == "function" then return true end
  local m = getmetatable(v)
  return m ~= nil and m.__call ~= nil
end

local function remove_entry(list, entry)
  entry.removed = true
  for i = #list, 1, -1 do
    if list[i] == entry then table.remove(list, i) end
  end
end

-- Make st[field] what dispatching it needs now.
local function refresh(st, field)
  local list = st.listening[field]
  if #list == 0 then -- no listener left: the field is all there is again
    st.listening[field] = nil
    st[field], st.attrs[field] = st.attrs[field], nil
    return
  end
  if #list == 1 and list[1].attr then
    st[field] = st.attrs[field]
    return
  end
  st[field] = function(event)
    local snapshot = { compat.unpack(list) }
    for i = 1, #snapshot do
      local entry = snapshot[i]
      if not entry.removed then
        if entry.once then
          remove_entry(list, entry)
          refresh(st, field)
        end
        local fn = entry.attr and st.attrs[field] or entry.fn
        local ok, err = xpcall(fn, st.io.traceback, event)
        if not ok then listeners.report(st, field, err) end
      end
    end
  end
end

-- The list of field's listeners, made when the first listener comes: a
-- handler field set before it was assigned first, so it leads the list.
local function list_of(st, field)
  st.listening = st.listening or {}
  local list = st.listening[field]
  if not list then
    list = {}
    st.attrs = st.attrs or {}
    local attr = st[field] -- without a list, the field's own value
    st.attrs[field] = attr
    if attr ~= nil then list[1] = { attr = true } end
    st.listening[field] = list
  end
  return list
end

-- ws.onX = v (v checked by the caller).  Without listeners, the field is
-- all there is (no list is kept: the common case costs nothing).
function listeners.set_field(st, field, v)
  local list = st.listening and st.listening[field]
  if not list then
    st[field] = v
    return
  end
  local had = st.attrs[field] ~= nil
  st.attrs[field] = v
  if v ~= nil and not had then
    list[#list + 1] = { attr = true }
  elseif v == nil and had then
    for _, entry in ipairs(list) do
      if entry.attr then remove_entry(list, entry) break end
    end
  end
  refresh(st, field)
end

-- The value of handler field `field`.
function listeners.field(st, field)
  if st.listening and st.listening[field] then return st.attrs[field] end
  return st[field]
end

local function check(name, event_type, fn, opts)
  local field = type(event_type) == "string" and FIELDS[event_type]
  if not field then
    misuse.arg(1, name, "an event type expected (open, message, close, error, ping, pong, "
      .. "drain), got " .. tostring(event_type))
  end
  if not callable(fn) then misuse.arg(2, name, "function expected, got " .. type(fn)) end
  if opts ~= nil and type(opts) ~= "table" then
    misuse.arg(3, name, "table of options expected, got " .. type(opts))
  end
  return field
end

-- ws:addEventListener(type, fn [, { once = true }]) -> the field.
function listeners.add(st, event_type, fn, opts)
  local field = check("addEventListener", event_type, fn, opts)
  local list = list_of(st, field)
  for _, entry in ipairs(list) do
    if entry.fn == fn then return field end
  end
  list[#list + 1] = { fn = fn, once = opts and opts.once and true or nil }
  refresh(st, field)
  return field
end

-- ws:removeEventListener(type, fn) -> the field.
function listeners.remove(st, event_type, fn)
  local field = check("removeEventListener", event_type, fn, nil)
  local list = st.listening and st.listening[field]
  if list then
    for _, entry in ipairs(list) do
      if entry.fn == fn then remove_entry(list, entry) break end
    end
    refresh(st, field)
  end
  return field
end

return listeners

-- bench/flatjson.lua -- reads the one-line JSON objects that bench/loadgen
-- and bench/micro print: flat, strings without escapes, numbers, booleans.
-- Used by bench/run.lua and spec/bench_smoke_spec.lua (dofile).
return function(line)
  if not line or not line:match("^{") then return nil end
  local t, pos = {}, 2
  while true do
    local k, after = line:match('^%s*"([^"]*)"%s*:%s*()', pos)
    if not k then break end
    local v
    if line:sub(after, after) == '"' then
      v, pos = line:match('^"([^"]*)"()', after)
    else
      local raw
      raw, pos = line:match("^([^,}]*)()", after)
      raw = raw:match("^%s*(.-)%s*$")
      if raw == "true" then v = true elseif raw == "false" then v = false else v = tonumber(raw) end
    end
    if not pos then break end
    t[k] = v
    pos = line:match("^%s*,()", pos) or pos
  end
  return t
end

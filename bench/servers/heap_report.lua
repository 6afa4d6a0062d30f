-- bench/servers/heap_report.lua -- the Lua heap of a moonws server of the
-- benchmark, on demand: on SIGUSR2, after a full collection, the heap in
-- KiB (collectgarbage("count")) goes to $BENCH_HEAP, written whole (a
-- temporary file renamed), for bench/instr.lua's memory guard.  In a
-- server script, only when BENCH_HEAP is set:
--   if os.getenv("BENCH_HEAP") then dofile("bench/servers/heap_report.lua")(moonws) end
return function(moonws)
  local path = assert(os.getenv("BENCH_HEAP"))
  moonws.onsignal("USR2", function()
    collectgarbage()
    collectgarbage()
    local f = assert(io.open(path .. ".tmp", "w"))
    f:write(("%.3f\n"):format(collectgarbage("count")))
    f:close()
    assert(os.rename(path .. ".tmp", path))
  end)
end

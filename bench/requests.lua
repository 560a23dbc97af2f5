-- Sends the requests `hookgate-bench generate` wrote, one file per wrk thread, each in turn.
--
-- wrk -t THREADS ... -s requests.lua -- PREFIX SENTLOG RATE AT_END THREADS
--   PREFIX   request files PREFIX.0, PREFIX.1, ... (one per thread)
--   SENTLOG  each thread appends `REQUEST_ID SECONDS.NANOS` per request sent to SENTLOG.N
--   RATE     requests per second for all threads together; 0 sends as fast as answers come
--   AT_END   "wrap" starts the file again; "stop" ends the thread: every request is sent once,
--            but the thread's other connections may each send one more, a copy of one of
--            the first requests, before the stop takes hold
--   THREADS  the number given to wrk -t

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock, bench_timespec *out);
]]
local REALTIME, MONOTONIC = 0, 1
local now = ffi.new("bench_timespec")

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local file, log, at_end, interval_ms, next_slot
wraps = 0
sent = 0

local function monotonic_ms()
  ffi.C.clock_gettime(MONOTONIC, now)
  return tonumber(now.tv_sec) * 1000 + tonumber(now.tv_nsec) / 1e6
end

function init(args)
  local prefix, sentlog, rate = args[1], args[2], tonumber(args[3] or "0")
  at_end = args[4] or "wrap"
  local thread_count = tonumber(args[5] or "1")
  file = assert(io.open(prefix .. "." .. id, "rb"))
  log = assert(io.open(sentlog .. "." .. id, "w"))
  if rate > 0 then
    -- Each thread keeps its own schedule: one slot every `interval_ms`, whichever
    -- connection is free takes the next slot.
    interval_ms = 1000 * thread_count / rate
    next_slot = monotonic_ms()
  end
end

function delay()
  if not interval_ms then
    return 0
  end
  local t = monotonic_ms()
  -- Behind by more than a second: start the schedule again rather than burst.
  if next_slot < t - 1000 then
    next_slot = t
  end
  local wait = next_slot - t
  next_slot = next_slot + interval_ms
  if wait < 0 then
    return 0
  end
  return wait
end

local function next_record()
  local header = file:read("*l")
  if not header then
    wraps = wraps + 1
    if at_end == "stop" then
      -- The stop takes hold once this call returns, and a request must be returned.
      wrk.thread:stop()
    end
    file:seek("set", 0)
    header = assert(file:read("*l"), "empty request file")
  end
  local length, request_id = header:match("^(%d+) (%S+)$")
  return file:read(tonumber(length)), request_id
end

function request()
  local raw, request_id = next_record()
  ffi.C.clock_gettime(REALTIME, now)
  log:write(request_id, " ", tostring(tonumber(now.tv_sec)), ".",
    string.format("%09d", tonumber(now.tv_nsec)), "\n")
  sent = sent + 1
  return raw
end

function done(summary, latency, requests)
  local total_wraps = 0
  for _, thread in ipairs(threads) do
    total_wraps = total_wraps + (tonumber(thread:get("wraps")) or 0)
  end
  local errors = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f " ..
    "non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d wraps=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    errors.status, errors.connect, errors.read, errors.write, errors.timeout, total_wraps))
end

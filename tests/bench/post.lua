-- wrk script for tests/bench/http_bench.py: POSTs one fixed JSON body and prints
-- a machine-readable summary line at the end.
--
--   WRK_BODY_FILE=body.json wrk -t2 -c32 -d10s -s tests/bench/post.lua http://127.0.0.1:PORT/v1/loss
--
-- The body is read at the top level, so every thread's Lua state has it before
-- wrk builds its (static, pre-formatted) request.

local path = os.getenv("WRK_BODY_FILE")
if path == nil or path == "" then
   error("set WRK_BODY_FILE to the file holding the request body")
end
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

-- summary.duration and latency are in microseconds.
done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRK_RESULT requests=%d duration_us=%d bytes=%d rps=%.3f " ..
      "p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f max_us=%d " ..
      "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
      summary.requests, summary.duration, summary.bytes,
      summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.mean, latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end

-- wrk script for bench/bench.py: each connection sends its next request
-- BENCH_INTERVAL_MS after the last answer (a steady, bounded rate instead of wrk's flood),
-- and the run ends with one JSON line of counts and latencies (microseconds).
local interval = tonumber(os.getenv("BENCH_INTERVAL_MS") or "10")

function delay()
  return interval
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '\nBENCH {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
      .. '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end

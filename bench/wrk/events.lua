-- wrk script for bench/ingest.py: POST /v3/events (one event a request) or /v3/events/batch
-- (BENCH_BATCH events a request). Every event is different (its counter is in its
-- properties), so none is a duplicate; contacts cycle through BENCH_CONTACTS per thread.
-- `done` prints one JSON line the benchmark reads: counts and latency percentiles (µs).
local threads = {}
local batch = tonumber(os.getenv("BENCH_BATCH") or "0")
local contacts = tonumber(os.getenv("BENCH_CONTACTS") or "10000")
local key = os.getenv("BENCH_API_KEY")
local run = os.getenv("BENCH_RUN") or "r"

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  path = batch > 0 and "/v3/events/batch" or "/v3/events"
  headers = {["Content-Type"] = "application/json", ["api-key"] = key}
end

local function event(i)
  local c = i % contacts
  return string.format(
    '{"event_name":"cart_updated","identifiers":{"email_id":"%s-t%d-c%d@bench.example"},'
      .. '"contact_properties":{"FIRSTNAME":"Ann"},'
      .. '"event_properties":{"cart_id":"%s-t%d-%d","total":42.5,'
      .. '"items":[{"sku":"SKU-%d","name":"Mug","price":12.5,"quantity":1}]}}',
    run, tid, c, run, tid, i, i % 997)
end

function request()
  if batch == 0 then
    n = n + 1
    return wrk.format("POST", path, headers, event(n))
  end
  local parts = {}
  for j = 1, batch do
    n = n + 1
    parts[j] = event(n)
  end
  return wrk.format("POST", path, headers, '{"events":[' .. table.concat(parts, ",") .. "]}")
end

function done(summary, latency, requests)
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"timeouts":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end

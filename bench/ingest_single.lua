-- wrk script: single-event POST /ingest with unique ids, counting acknowledgements.
-- Ids are "wrk-<thread>-<n>", or "<WRK_ID_PREFIX>-<thread>-<n>" when that is set in the
-- environment (runs against one lake need distinct ids, or they are answered as duplicates).
-- done() prints one key=value line for bench/ingest.sh.
local prefix = os.getenv("WRK_ID_PREFIX") or "wrk"
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

-- globals, so that done() can read them through thread:get
n, acked, bad = 0, 0, 0
function request()
  n = n + 1
  local body = '{"events":[{"id":"' .. prefix .. '-' .. tid .. '-' .. n .. '","type":"rpc.call",' ..
    '"ts":"2026-11-25T10:00:00.123Z","do":{"id":"room-17","name":"lobby","class":"ChatRoom",' ..
    '"colo":"FRA"},"method":"sendMessage","namespace":"chat","durationMs":12.5,"success":true,' ..
    '"requestId":"9f2c4e1a-6b7d-4c3e-8a1f-2d5b6c7e8f90","user":"u-4711","bytes":1832}]}'
  return wrk.format("POST", "/ingest", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status == 200 and body:find('"accepted":1,', 1, true) then acked = acked + 1 else bad = bad + 1 end
end

function done(summary, latency, requests)
  local a, b = 0, 0
  for _, t in ipairs(threads) do a = a + t:get("acked"); b = b + t:get("bad") end
  io.write(string.format("wrk_acked=%d wrk_bad=%d req_per_s=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f seconds=%.3f\n",
    a, b, summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, summary.duration / 1e6))
end

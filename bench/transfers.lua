-- wrk script: POST /api/v1/transfers with a fresh Idempotency-Key per request.
--   wrk -t2 -c32 -d20s --timeout 30s -s bench/transfers.lua URL -- DATA_FILE [PER_THREAD_QUOTA]
-- DATA_FILE: one "token source_account_id destination_account_id" per line; each request picks one at random.
-- PER_THREAD_QUOTA > 0: a thread stops after that many responses (drain mode's fixed count) and creates
-- DATA_FILE.done.<thread>; wrk's main thread sleeps for the whole -d, so the harness sends SIGINT once every
-- thread has its file (wrk then prints its summary and runs done()).
-- done() prints one line "WRK_JSON {...}" with status counts and latency percentiles (microseconds).

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  quota = tonumber(args[2] or "0") or 0
  marker = args[1] .. ".done." .. tid
  tuples = {}
  for line in io.lines(args[1]) do
    local token, src, dst = line:match("^(%S+) (%S+) (%S+)$")
    if token then
      tuples[#tuples + 1] = {
        "Bearer " .. token,
        '{"source_account_id":"' .. src .. '","destination_account_id":"' .. dst ..
          '","amount":1,"currency":"USD","pin":"1357"}',
      }
    end
  end
  local seed = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
  math.randomseed(os.time() + tid * 7919 + seed % 100000)
  -- UUID-shaped keys: a random per-thread prefix, the thread id, then a counter.
  prefix = string.format("%08x-%04x-4%03x-%04x-", math.random(0, 0x7fffffff), math.random(0, 0xffff),
    math.random(0, 0xfff), tid)
  sent = 0
  received = 0
  counts = {}
end

function request()
  sent = sent + 1
  local t = tuples[math.random(#tuples)]
  return wrk.format("POST", "/api/v1/transfers", {
    ["Authorization"] = t[1],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = prefix .. string.format("%012x", sent),
  }, t[2])
end

function response(status, headers, body)
  local key = tostring(status)
  counts[key] = (counts[key] or 0) + 1
  received = received + 1
  if quota > 0 and received >= quota then
    local f = io.open(marker, "w")
    if f then f:close() end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts") or {}) do
      agg[k] = (agg[k] or 0) + v
    end
  end
  local status = {}
  for k, v in pairs(agg) do
    status[#status + 1] = string.format('"%s":%d', k, v)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"status":{%s},' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, table.concat(status, ","),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end

-- wrk script: POST /api/v1/transfers/batch, BATCH_SIZE transfers per request, a fresh key per item.
--   wrk -t2 -c32 -d20s --timeout 30s -s bench/batches.lua URL -- DATA_FILE PER_THREAD_QUOTA BATCH_SIZE ATOMIC
-- DATA_FILE: the plan of transfers.lua, one "token source_account_id destination_account_id" per line; each
-- request takes one customer (token and source) at random and sends BATCH_SIZE transfers of 1 to its
-- destinations picked at random. ATOMIC: 1 sends "atomic": true. PER_THREAD_QUOTA: as in transfers.lua,
-- counted in requests. done() prints "WRK_JSON {...}" as transfers.lua does, plus "items_accepted" (the
-- items answered 202, counted in the response bodies).

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  quota = tonumber(args[2] or "0") or 0
  size = tonumber(args[3] or "100") or 100
  atomic = (args[4] == "1") and "true" or "false"
  marker = args[1] .. ".done." .. tid
  local by_token, order = {}, {}
  for line in io.lines(args[1]) do
    local token, src, dst = line:match("^(%S+) (%S+) (%S+)$")
    if token then
      if not by_token[token] then
        by_token[token] = {auth = "Bearer " .. token, src = src, dsts = {}}
        order[#order + 1] = token
      end
      table.insert(by_token[token].dsts, dst)
    end
  end
  senders = {}
  for _, token in ipairs(order) do senders[#senders + 1] = by_token[token] end
  local seed = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
  math.randomseed(os.time() + tid * 7919 + seed % 100000)
  prefix = string.format("%08x-%04x-4%03x-%04x-", math.random(0, 0x7fffffff), math.random(0, 0xffff),
    math.random(0, 0xfff), tid)
  sent = 0
  keys = 0
  received = 0
  items_accepted = 0
  counts = {}
end

function request()
  sent = sent + 1
  local s = senders[math.random(#senders)]
  local items = {}
  for i = 1, size do
    keys = keys + 1
    items[i] = '{"idempotency_key":"' .. prefix .. string.format("%012x", keys) ..
      '","source_account_id":"' .. s.src .. '","destination_account_id":"' .. s.dsts[math.random(#s.dsts)] ..
      '","amount":1,"currency":"USD"}'
  end
  local body = '{"pin":"1357","atomic":' .. atomic .. ',"items":[' .. table.concat(items, ",") .. ']}'
  return wrk.format("POST", "/api/v1/transfers/batch", {
    ["Authorization"] = s.auth,
    ["Content-Type"] = "application/json",
  }, body)
end

function response(status, headers, body)
  local key = tostring(status)
  counts[key] = (counts[key] or 0) + 1
  received = received + 1
  if status == 200 and body then
    local _, n = string.gsub(body, '"status":%s*202', "")
    items_accepted = items_accepted + n
  end
  if quota > 0 and received >= quota then
    local f = io.open(marker, "w")
    if f then f:close() end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local agg, items = {}, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts") or {}) do
      agg[k] = (agg[k] or 0) + v
    end
    items = items + (t:get("items_accepted") or 0)
  end
  local status = {}
  for k, v in pairs(agg) do
    status[#status + 1] = string.format('"%s":%d', k, v)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"status":{%s},"items_accepted":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, table.concat(status, ","), items,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end

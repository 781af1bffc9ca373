-- wrk script of the bench harness. bench/loadgen.py prepends the table BENCH:
--   BENCH = { method = "POST", path = "/…", paths_file = "/tmp/…" or nil,
--             body = '… {project} … {seq} …' or nil, projects = 1000, headers = { … } }
-- Each request picks a random path from paths_file (else BENCH.path) and fills the body's
-- {project} with a random number in [0, projects) and {seq} with a unique sequence.
-- done() prints one machine-readable line: BENCH_RESULT {json}.

local threads = {}
local counter = 0
local paths = nil
local npaths = 0
non2xx = 0
codes = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + thread_id * 7919)
  for name, value in pairs(BENCH.headers) do
    wrk.headers[name] = value
  end
  if BENCH.paths_file then
    paths = {}
    for line in io.lines(BENCH.paths_file) do
      if line ~= "" then
        npaths = npaths + 1
        paths[npaths] = line
      end
    end
  end
end

function request()
  counter = counter + 1
  local path = BENCH.path
  if paths then
    path = paths[math.random(npaths)]
  end
  local body = nil
  if BENCH.body then
    local project = tostring(math.random(0, BENCH.projects - 1))
    local seq = thread_id .. "-" .. counter
    body = BENCH.body:gsub("{project}", project):gsub("{seq}", seq)
  end
  return wrk.format(BENCH.method, path, nil, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    local key = tostring(status)
    codes[key] = (codes[key] or 0) + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  local merged = {}
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
    local c = thread:get("codes")
    if c then
      for code, n in pairs(c) do
        merged[code] = (merged[code] or 0) + n
      end
    end
  end
  local parts = {}
  for code, n in pairs(merged) do
    table.insert(parts, string.format('"%s": %d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %.0f, "duration_us": %.0f, "bytes": %.0f, '
      .. '"p50_us": %.0f, "p90_us": %.0f, "p95_us": %.0f, "p99_us": %.0f, "max_us": %.0f, '
      .. '"mean_us": %.1f, "non_2xx": %.0f, "statuses": {%s}, '
      .. '"socket_errors": {"connect": %.0f, "read": %.0f, "write": %.0f, "timeout": %.0f}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean, bad, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.timeout))
end

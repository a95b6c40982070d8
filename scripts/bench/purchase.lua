-- wrk script: POST /api/v1/items/ITEM/purchase with a random shopper's token per request.
-- Reads ITEM from the environment and tokens (one per line) from TOKENS_FILE.
local tokens = {}
local item = os.getenv("ITEM")
for line in io.lines(os.getenv("TOKENS_FILE")) do
  tokens[#tokens + 1] = line
end
local counter = 0

function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end

function init(args)
  math.randomseed(seed)
end

request = function()
  counter = counter + 1
  local token = tokens[math.random(1, #tokens)]
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }
  return wrk.format("POST", "/api/v1/items/" .. item .. "/purchase", headers, '{"quantity":1}')
end

local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  io.write(string.format("p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("non-2xx/3xx: %d\n", summary.errors.status))
end

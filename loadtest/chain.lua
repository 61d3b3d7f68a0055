-- wrk script: the full filter chain with a cache miss on every request: an API key,
-- temperature 0 (cacheable) and a unique prompt per request.
--   KEY=sk-... wrk -t1 -c32 -d10s -s loadtest/chain.lua http://127.0.0.1:8080/v1/chat/completions
local model = os.getenv("MODEL") or "bench-model"
local key = os.getenv("KEY") or "sk-bench-key-0001"
local n = 0
local seed = tostring(os.time()) .. tostring(math.random(1000000))
request = function()
  n = n + 1
  local body = '{"model":"' .. model .. '","temperature":0,"messages":[{"role":"user","content":"unique ' .. seed .. '-' .. n .. '"}],"max_tokens":16}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end

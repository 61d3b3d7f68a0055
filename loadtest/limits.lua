-- wrk script: an API key with rate limits, nothing cacheable (no temperature): the
-- limits' cost alone.
--   KEY=sk-... wrk -t1 -c32 -d10s -s loadtest/limits.lua http://127.0.0.1:8080/v1/chat/completions
local model = os.getenv("MODEL") or "bench-model"
local key = os.getenv("KEY") or "sk-bench-key-0001"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Say hello in one short sentence please."}],"max_tokens":16}'

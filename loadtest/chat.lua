-- wrk script: non-streaming chat completion (the body the contract checks use).
--   wrk -t1 -c32 -d10s -s loadtest/chat.lua http://127.0.0.1:8080/v1/chat/completions
local model = os.getenv("MODEL") or "bench-model"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Say hello in one short sentence please."}],"max_tokens":16}'

-- wrk script: streaming chat completion; each request is one whole SSE stream.
--   wrk -t1 -c32 -d10s -s loadtest/stream.lua http://127.0.0.1:8080/v1/chat/completions
local model = os.getenv("MODEL") or "bench-model"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"' .. model .. '","stream":true,"messages":[{"role":"user","content":"Say hello in one short sentence please."}],"max_tokens":16}'

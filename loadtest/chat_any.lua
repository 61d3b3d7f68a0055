-- wrk script: an OpenAI chat request (STREAM=1 for a streamed one).
--   wrk -t1 -c32 -d10s -s loadtest/chat_any.lua http://127.0.0.1:8080/v1/chat/completions
local model = os.getenv("MODEL") or "bench-model"
local stream = os.getenv("STREAM") == "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"' .. model .. '",' .. (stream and '"stream":true,' or '') ..
  '"messages":[{"role":"user","content":"Say hello in one short sentence please."}],"max_tokens":16}'

-- wrk script: an Anthropic Messages request (STREAM=1 for a streamed one).
--   wrk -t1 -c32 -d10s -s loadtest/messages.lua http://127.0.0.1:8080/v1/messages
local model = os.getenv("MODEL") or "bench-model"
local stream = os.getenv("STREAM") == "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.body = '{"model":"' .. model .. '","max_tokens":16,' .. (stream and '"stream":true,' or '') ..
  '"messages":[{"role":"user","content":"Say hello in one short sentence please."}]}'

-- switchyard quota v1: takes one request from a provider's daily quota if neither the
-- request nor the token count has reached its limit.
-- KEYS[1] quota:{provider}:<yyyymmdd> (hash: req, tok)
-- ARGV[1] requests per day (0 = unlimited), ARGV[2] tokens per day (0 = unlimited),
-- ARGV[3] key TTL in seconds
-- Returns { allowed (0/1), requests used, tokens used }
local v = redis.call('HMGET', KEYS[1], 'req', 'tok')
local req = tonumber(v[1]) or 0
local tok = tonumber(v[2]) or 0
local rl, tl = tonumber(ARGV[1]), tonumber(ARGV[2])
if (rl > 0 and req >= rl) or (tl > 0 and tok >= tl) then
  return { 0, req, tok }
end
req = redis.call('HINCRBY', KEYS[1], 'req', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return { 1, req, tok }

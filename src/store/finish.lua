-- switchyard finish v1: what happens after a response, in one round trip: settle the
-- tenant's token bucket with the real usage, and store the answer in the cache.
-- Both keys carry the tenant's hash tag (one cluster slot).
-- KEYS[1] token bucket rl:{tenant}:tok ('' = no settlement)
-- KEYS[2] cache entry cache:{tenant}:<hash> ('' = nothing to store)
-- ARGV[1] tokens per minute, ARGV[2] reserved, ARGV[3] used,
-- ARGV[4] cache value, ARGV[5] cache TTL ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if KEYS[1] ~= '' then
  local limit = tonumber(ARGV[1])
  if limit > 0 then
    local reserved = tonumber(ARGV[2])
    if reserved > limit then reserved = limit end
    local used = tonumber(ARGV[3])
    local v = redis.call('HMGET', KEYS[1], 'l', 't')
    local level, at = tonumber(v[1]), tonumber(v[2])
    if level == nil or at == nil then
      level = limit
    else
      local dt = now - at
      if dt < 0 then dt = 0 end
      level = level + dt * limit / 60000
      if level > limit then level = limit end
    end
    level = level + reserved - used
    if level > limit then level = limit end
    redis.call('HSET', KEYS[1], 'l', tostring(level), 't', now)
    local wait = 0
    if level < limit then wait = math.ceil((limit - level) * 60000 / limit) end
    redis.call('PEXPIRE', KEYS[1], wait + 1000)
  end
end
if KEYS[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[4], 'PX', tonumber(ARGV[5]))
end
return 1

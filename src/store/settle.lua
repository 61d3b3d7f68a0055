-- switchyard settle v1: settles a token bucket with the real usage once a response
-- ended: level += reserved - used (capped at the capacity; debt allowed).
-- KEYS[1] token bucket rl:{tenant}:tok
-- ARGV[1] tokens per minute, ARGV[2] reserved, ARGV[3] used
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
if limit <= 0 then return 0 end
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
return 1

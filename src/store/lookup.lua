-- switchyard lookup v1: a cache entry and its remaining TTL, in one call (the mirror
-- holds a fetched answer only until the TTL it has in Redis).
-- KEYS[1] cache entry. Returns { value or false, PTTL ms }
local v = redis.call('GET', KEYS[1])
if not v then return { false, 0 } end
return { v, redis.call('PTTL', KEYS[1]) }

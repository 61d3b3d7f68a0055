-- switchyard store v1: stores an answer in the response cache and announces its key on
-- the mirror channel (src/store/mirror.rs), in one atomic call, so that every replica
-- subscribed learns that the key exists (and for how long) without asking.
-- KEYS[1] cache entry cache:{scope}:<hash>
-- ARGV[1] value, ARGV[2] TTL ms, ARGV[3] channel, ARGV[4] the key as announced
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
redis.call('PUBLISH', ARGV[3], ARGV[2] .. ' ' .. ARGV[4])
return 1

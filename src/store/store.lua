-- switchyard store v2: stores a batch of answers in the response cache and announces
-- their keys on the mirror channel (src/store/mirror.rs), in one atomic call, so every
-- replica subscribed learns which keys exist (and for how long) without asking.
-- All KEYS share one hash tag (one cluster slot).
-- KEYS[i]     cache entry cache:{scope}:<hash>
-- ARGV[1]     channel
-- ARGV[2]     announcement: "<origin>\n<ttl ms> <key>\n..." (the keys without prefix)
-- ARGV[1+2i]  value of KEYS[i]    ARGV[2+2i]  its TTL in ms
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1 + 2 * i], 'PX', tonumber(ARGV[2 + 2 * i]))
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return #KEYS

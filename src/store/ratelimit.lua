-- switchyard ratelimit v1: two token buckets (requests, tokens) taken both or neither,
-- plus an optional cache lookup, in one atomic call. The arithmetic is the same as
-- filters/src/bucket.rs (the in-memory store); the clock is the server's TIME.
--
-- KEYS[1] request bucket   (hash: l = level, t = ms)    rl:{tenant}:req
-- KEYS[2] token bucket                                   rl:{tenant}:tok
-- KEYS[3] cache entry, optional                          cache:{tenant}:<hash>
-- ARGV[1] requests per minute (0 = unlimited)
-- ARGV[2] tokens per minute (0 = unlimited)
-- ARGV[3] token cost of this request (the reservation)
--
-- Returns { allowed (0/1), refused_by (0 none, 1 requests, 2 tokens), retry_after_ms,
--           req_remaining, req_reset_ms, tok_remaining, tok_reset_ms, cached value or false,
--           tokens reserved }
-- (remaining = -1 when that bucket is unlimited). A cache hit reserves no tokens: it
-- costs no upstream tokens, and needs no settlement afterwards.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function level_of(key, limit)
  local v = redis.call('HMGET', key, 'l', 't')
  local level, at = tonumber(v[1]), tonumber(v[2])
  if level == nil or at == nil then
    return limit
  end
  local dt = now - at
  if dt < 0 then dt = 0 end
  local l = level + dt * limit / 60000
  if l > limit then l = limit end
  return l
end

local function wait_ms(level, cost, limit)
  if level >= cost then return 0 end
  return math.ceil((cost - level) * 60000 / limit)
end

local rl = tonumber(ARGV[1])
local tl = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
if tl > 0 and cost > tl then cost = tl end

local cached = false
if KEYS[3] ~= nil and KEYS[3] ~= '' then
  cached = redis.call('GET', KEYS[3])
  if cached then cost = 0 end
end

local r_level, t_level = nil, nil
local r_wait, t_wait = 0, 0
if rl > 0 then
  r_level = level_of(KEYS[1], rl)
  r_wait = wait_ms(r_level, 1, rl)
end
if tl > 0 then
  t_level = level_of(KEYS[2], tl)
  t_wait = wait_ms(t_level, cost, tl)
end

local allowed = (r_wait == 0 and t_wait == 0)
local refused = 0
if not allowed then
  if r_wait > 0 then refused = 1 else refused = 2 end
end

local function store(key, level, limit)
  redis.call('HSET', key, 'l', tostring(level), 't', now)
  -- The key may vanish once the bucket would be full again: absent means full.
  redis.call('PEXPIRE', key, wait_ms(level, limit, limit) + 1000)
end

local out = { allowed and 1 or 0, refused, math.max(r_wait, t_wait), -1, 0, -1, 0, false, 0 }
if r_level ~= nil then
  if allowed then r_level = r_level - 1 end
  store(KEYS[1], r_level, rl)
  out[4] = math.floor(math.max(r_level, 0))
  out[5] = wait_ms(r_level, rl, rl)
end
if t_level ~= nil then
  if allowed then t_level = t_level - cost end
  store(KEYS[2], t_level, tl)
  out[6] = math.floor(math.max(t_level, 0))
  out[7] = wait_ms(t_level, tl, tl)
end
if allowed then
  out[8] = cached
  if tl > 0 then out[9] = cost end
end
return out

-- switchyard lease v1: takes a slice of a tenant's two token buckets (requests, tokens)
-- in one atomic call: the request's need, both or neither, plus an extra for the
-- replica to admit later requests from locally (see src/store/lease.rs), and reads a
-- cache entry when asked. With a negative need ("give") it returns an unused slice.
-- The arithmetic is filters/src/bucket.rs'; the clock is the server's TIME.
--
-- KEYS[1] request bucket (hash: l = level, t = ms)   rl:{tenant}:req
-- KEYS[2] token bucket                                rl:{tenant}:tok
-- KEYS[3] cache entry, optional ('')                  cache:{tenant}:<hash>
-- ARGV[1] requests per minute (0 = unlimited)   ARGV[2] tokens per minute (0 = unlimited)
-- ARGV[3] requests needed (0/1)                 ARGV[4] tokens needed (the reservation)
-- ARGV[5] tokens owed (charged in any case)     ARGV[6] extra requests wanted
-- ARGV[7] extra tokens wanted                   ARGV[8] slice divisor
-- ARGV[9] mode: 'take', or 'give' (ARGV[3], ARGV[4] are then amounts returned; ARGV[4]
--         may be negative: a debt paid)
--
-- Returns { allowed (0/1), refused_by (0, 1 requests, 2 tokens), retry_after_ms,
--           req_remaining, req_reset_ms, tok_remaining, tok_reset_ms,
--           cached value or false, cached entry's PTTL, extra requests, extra tokens,
--           tokens reserved }   (remaining = -1 when that bucket is unlimited)
-- A cache hit reserves no tokens: it costs no upstream tokens.

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

local function store(key, level, limit)
  redis.call('HSET', key, 'l', tostring(level), 't', now)
  -- The key may vanish once the bucket would be full again: absent means full.
  redis.call('PEXPIRE', key, wait_ms(level, limit, limit) + 1000)
end

local rl, tl = tonumber(ARGV[1]), tonumber(ARGV[2])
local need_r, need_t, debt = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

if ARGV[9] == 'give' then
  if rl > 0 and need_r ~= 0 then
    local l = level_of(KEYS[1], rl) + need_r
    if l > rl then l = rl end
    store(KEYS[1], l, rl)
  end
  if tl > 0 and need_t ~= 0 then
    local l = level_of(KEYS[2], tl) + need_t
    if l > tl then l = tl end
    store(KEYS[2], l, tl)
  end
  return 1
end

local want_r, want_t, div = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
if tl > 0 and need_t > tl then need_t = tl end

local cached, pttl = false, 0
if KEYS[3] ~= nil and KEYS[3] ~= '' then
  cached = redis.call('GET', KEYS[3])
  if cached then
    need_t = 0
    want_t = 0
    pttl = redis.call('PTTL', KEYS[3])
  end
end

local r_level, t_level = nil, nil
local r_wait, t_wait = 0, 0
if rl > 0 then
  r_level = level_of(KEYS[1], rl)
  r_wait = wait_ms(r_level, need_r, rl)
end
if tl > 0 then
  t_level = level_of(KEYS[2], tl) - debt
  t_wait = wait_ms(t_level, need_t, tl)
end

local allowed = (r_wait == 0 and t_wait == 0)
local refused = 0
if not allowed then
  if r_wait > 0 then refused = 1 else refused = 2 end
end

-- The extra: what was asked for, at most 1/div of what is left after the need, whole
-- units only (near the limit: nothing, every request asks).
local function extra(level, need, want)
  local left = level - need
  if left <= 0 then return 0 end
  local e = math.floor(left / div)
  if e > want then e = want end
  return e
end

local out = { allowed and 1 or 0, refused, math.max(r_wait, t_wait), -1, 0, -1, 0, false, 0, 0, 0, 0 }
if r_level ~= nil then
  if allowed then
    local e = extra(r_level, need_r, want_r)
    r_level = r_level - need_r - e
    out[10] = e
    store(KEYS[1], r_level, rl)
  end
  out[4] = math.floor(math.max(r_level, 0))
  out[5] = wait_ms(r_level, rl, rl)
end
if t_level ~= nil then
  -- The debt is charged in any case (as a settlement would).
  if allowed then
    local e = extra(t_level, need_t, want_t)
    t_level = t_level - need_t - e
    out[11] = e
  end
  if allowed or debt > 0 then store(KEYS[2], t_level, tl) end
  out[6] = math.floor(math.max(t_level, 0))
  out[7] = wait_ms(t_level, tl, tl)
end
if allowed then
  out[8] = cached
  out[9] = pttl
  if tl > 0 then out[12] = need_t end
end
return out

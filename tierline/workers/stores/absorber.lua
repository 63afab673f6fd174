-- The absorber in Redis: router/absorber.py step for step, atomically, one call per op.
--
-- KEYS[1] holds  zset  "tokens:day:id" scored by expires_at_s (live holds; the member
--                       carries what expiry needs, and the client can rebuild it to settle)
-- KEYS[2] day    hash  cur, s:<day> settled, h:<day> held, o:<day> overrun
-- KEYS[3] min    hash  old (oldest kept second), ts/rs window sums, t<sec>/r<sec> buckets
-- ARGV[1] op: reserve | settle | release | usage;  ARGV[2] now_s as Python's repr
--
-- Time is the caller's clock (passed in), not Redis TIME: the same steps then run in the
-- pure core under a scripted clock, and tests compare them. Worker clocks must be NTP-synced;
-- skew only moves window edges by the skew. Redis serialises scripts, so the fleet's rate is
-- bounded by this script's run time: reads are batched (HMGET) and key lifetimes refreshed
-- once per second, not per call.

local EXP, DAY, MIN = KEYS[1], KEYS[2], KEYS[3]
local WINDOW_S = 60
local WALK_HOLDS = 1000 -- as in router/absorber.py
local KEEP_S = 3 * 86400 -- an idle scope's keys vanish after three days
local op, nowstr = ARGV[1], ARGV[2]
local now = tonumber(nowstr)

local function num(value)
  return tonumber(value) or 0
end

local function limit(value)
  if value == '' then return nil end
  return tonumber(value)
end

-- HINCRBY rejects "-0", which Lua prints for a negated zero
local function incr(key, field, delta)
  if delta ~= 0 then redis.call('HINCRBY', key, field, delta) end
end

local function touch()
  for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, KEEP_S) end
end

-- keep today's and yesterday's counters; returns the current day after the roll
local function roll(day, cur)
  if cur == nil then
    redis.call('HSET', DAY, 'cur', day)
    return day
  end
  if day <= cur then return cur end
  for _, old in ipairs({cur - 1, cur}) do
    if old < day - 1 then redis.call('HDEL', DAY, 's:' .. old, 'h:' .. old, 'o:' .. old) end
  end
  redis.call('HSET', DAY, 'cur', day)
  return day
end

-- drop holds whose holder died; returns the held tokens of `day` this freed
local function sweep(cur, day)
  local dead = redis.call('ZRANGEBYSCORE', EXP, '-inf', nowstr)
  if #dead == 0 then return 0 end
  local freed = 0
  for _, member in ipairs(dead) do
    local tokens, held_day = string.match(member, '^(%d+):(%-?%d+):')
    tokens, held_day = tonumber(tokens), tonumber(held_day)
    if held_day >= cur - 1 then
      incr(DAY, 'h:' .. held_day, -tokens)
      if held_day == day then freed = freed + tokens end
    end
  end
  redis.call('ZREMRANGEBYSCORE', EXP, '-inf', nowstr)
  return freed
end

-- age out minute buckets; returns old, ts, rs after pruning and whether all were wiped
local function prune(second, old, ts, rs)
  local low = second - WINDOW_S
  if old == nil then
    redis.call('HSET', MIN, 'old', low)
    return low, ts, rs, false
  end
  if old >= low then return old, ts, rs, false end
  if low - old > WINDOW_S + 1 then -- idle for over a minute: nothing is left
    redis.call('DEL', MIN)
    redis.call('HSET', MIN, 'old', low, 'ts', 0, 'rs', 0)
    return low, 0, 0, true
  end
  for s = old, low - 1 do
    local pair = redis.call('HMGET', MIN, 't' .. s, 'r' .. s)
    if pair[1] or pair[2] then
      ts, rs = ts - num(pair[1]), rs - num(pair[2])
      redis.call('HDEL', MIN, 't' .. s, 'r' .. s)
    end
  end
  redis.call('HSET', MIN, 'old', low, 'ts', ts, 'rs', rs)
  return low, ts, rs, false
end

-- correct a still-kept minute bucket by delta tokens, never below zero
local function adjust_bucket(second, delta)
  if delta == 0 then return end
  local field = 't' .. second
  local got = redis.call('HMGET', MIN, field, 'ts')
  if got[1] then
    local before = tonumber(got[1])
    local after = math.max(0, before + delta)
    redis.call('HSET', MIN, field, after, 'ts', num(got[2]) + after - before)
  end
end

-- seconds until the oldest buckets holding `excess` leave the window
local function minute_wait(prefix, excess, old, second)
  local fields = {}
  for s = old, second do fields[#fields + 1] = prefix .. s end
  if #fields == 0 then return WINDOW_S + 1 end
  local values = redis.call('HMGET', MIN, unpack(fields))
  local freed = 0
  for i, value in ipairs(values) do
    freed = freed + num(value)
    if freed >= excess then return old + i - 1 + WINDOW_S + 1 - now end
  end
  return WINDOW_S + 1 -- only reachable under clock skew (buckets ahead of now)
end

-- seconds until `tokens` fit if no holder settles early, and the first binding limit
local function wait(lim, tokens, day, second, settled, held, old, ts, rs)
  local best, reason = nil, nil
  local function note(wait_s, why)
    if best == nil or wait_s > best then best = wait_s end
    if reason == nil then reason = why end
  end
  if lim.tpd then
    local excess = settled + held + tokens - lim.tpd
    local midnight_s = (day + 1) * 86400 - now
    if settled + tokens > lim.tpd then
      note(midnight_s, 'day_full')
    elseif excess > 0 then
      -- an upper bound: holds usually settle (and refund) long before they expire.
      -- Walking at most WALK_HOLDS bounds the work; stopping early only hints sooner.
      local wait_s, freed = midnight_s, 0
      local rows = redis.call('ZRANGE', EXP, 0, WALK_HOLDS - 1, 'WITHSCORES')
      for i = 1, #rows, 2 do
        local held_tokens, held_day = string.match(rows[i], '^(%d+):(%-?%d+):')
        if tonumber(held_day) == day then freed = freed + tonumber(held_tokens) end
        if freed >= excess or (i + 1) / 2 == WALK_HOLDS then
          wait_s = math.min(tonumber(rows[i + 1]) - now, midnight_s)
          break
        end
      end
      note(wait_s, 'in_flight')
    end
  end
  if lim.tpm and ts + tokens > lim.tpm then
    note(minute_wait('t', ts + tokens - lim.tpm, old, second), 'tokens_per_minute')
  end
  if lim.rpm and rs + 1 > lim.rpm then
    note(minute_wait('r', rs + 1 - lim.rpm, old, second), 'requests_per_minute')
  end
  return best or 0, reason or 'granted'
end

-- ARGV: op now expires_at tpd tpm rpm day second, then id tokens pairs.
-- Returns {reason, retry_after_s or '', granted positions (1-based)...}
local function reserve()
  local expires = ARGV[3]
  local lim = {tpd = limit(ARGV[4]), tpm = limit(ARGV[5]), rpm = limit(ARGV[6])}
  local day, second = tonumber(ARGV[7]), tonumber(ARGV[8])
  local d = redis.call('HMGET', DAY, 'cur', 's:' .. day, 'h:' .. day)
  local cur = roll(day, tonumber(d[1])) -- a roll never drops `day` itself
  local settled, held = num(d[2]), num(d[3]) - sweep(cur, day)
  local m = redis.call('HMGET', MIN, 'old', 'ts', 'rs', 't' .. second, 'r' .. second)
  local old, ts, rs, wiped = prune(second, tonumber(m[1]), num(m[2]), num(m[3]))
  local room_t, room_r = math.huge, math.huge
  if lim.tpd then room_t = lim.tpd - settled - held end
  if lim.tpm then room_t = math.min(room_t, lim.tpm - ts) end
  if lim.rpm then room_r = lim.rpm - rs end
  local out, scores = {'granted', ''}, {}
  local total, count, smallest = 0, 0, nil
  for i = 9, #ARGV, 2 do
    local id, tokens = ARGV[i], tonumber(ARGV[i + 1])
    if tokens <= room_t and room_r >= 1 then
      room_t, room_r = room_t - tokens, room_r - 1
      scores[#scores + 1] = expires
      scores[#scores + 1] = tokens .. ':' .. day .. ':' .. id
      total, count = total + tokens, count + 1
      out[#out + 1] = (i - 7) / 2
    elseif smallest == nil or tokens < smallest then
      smallest = tokens
    end
  end
  if count > 0 then
    redis.call('ZADD', EXP, unpack(scores))
    if day >= cur - 1 then
      held = held + total
      redis.call('HSET', DAY, 'h:' .. day, held)
    end
    ts, rs = ts + total, rs + count
    -- a bucket below the oldest kept one only exists under clock skew; count it there
    local bucket = math.max(second, old)
    if bucket == second then -- pruning never drops the current second's bucket
      local tb, rb = m[4], m[5]
      if wiped then tb, rb = false, false end
      redis.call('HSET', MIN, 't' .. second, num(tb) + total, 'r' .. second, num(rb) + count,
                 'ts', ts, 'rs', rs)
      if not tb then touch() end -- first hold of this second: refresh key lifetimes
    else
      redis.call('HINCRBY', MIN, 't' .. bucket, total)
      redis.call('HINCRBY', MIN, 'r' .. bucket, count)
      redis.call('HSET', MIN, 'ts', ts, 'rs', rs)
    end
  end
  if smallest ~= nil then
    local wait_s, reason = wait(lim, smallest, day, second, settled, held, old, ts, rs)
    out[1], out[2] = reason, string.format('%.17g', wait_s)
  end
  return out
end

-- ARGV: op now day second, then (tokens res_day res_second id actual) per reservation.
-- Returns {live, refunded, overrun} per reservation, flattened.
local function settle()
  local day, second = tonumber(ARGV[3]), tonumber(ARGV[4])
  local cur = roll(day, tonumber(redis.call('HGET', DAY, 'cur')))
  sweep(cur, day)
  local m = redis.call('HMGET', MIN, 'old', 'ts', 'rs')
  prune(second, tonumber(m[1]), num(m[2]), num(m[3]))
  local out = {}
  for i = 5, #ARGV, 5 do
    local tokens, res_day, res_second = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), ARGV[i + 2]
    local actual = tonumber(ARGV[i + 4])
    local live = redis.call('ZREM', EXP, tokens .. ':' .. res_day .. ':' .. ARGV[i + 3])
    local delta = actual - tokens
    if res_day >= cur - 1 then
      incr(DAY, 's:' .. res_day, actual)
      if live == 1 then incr(DAY, 'h:' .. res_day, -tokens) end
      if delta > 0 then incr(DAY, 'o:' .. res_day, delta) end
    end
    adjust_bucket(res_second, delta)
    out[#out + 1] = live
    out[#out + 1] = math.max(0, -delta)
    out[#out + 1] = math.max(0, delta)
  end
  return out
end

-- ARGV: op now, then (tokens res_day res_second id) per reservation. Returns 1/0 per
-- reservation: whether its hold was live.
local function release()
  local cur = num(redis.call('HGET', DAY, 'cur'))
  local out = {}
  for i = 3, #ARGV, 4 do
    local tokens, res_day = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
    local live = redis.call('ZREM', EXP, tokens .. ':' .. res_day .. ':' .. ARGV[i + 3])
    if live == 1 then
      if res_day >= cur - 1 then incr(DAY, 'h:' .. res_day, -tokens) end
      adjust_bucket(ARGV[i + 2], -tokens) -- the request itself stays counted
    end
    out[#out + 1] = live
  end
  return out
end

-- ARGV: op now day second. Returns {settled, held, overrun, in_flight, window tokens, requests}
local function usage()
  local day, second = tonumber(ARGV[3]), tonumber(ARGV[4])
  local cur = roll(day, tonumber(redis.call('HGET', DAY, 'cur')))
  sweep(cur, day)
  local m = redis.call('HMGET', MIN, 'old', 'ts', 'rs')
  local _, ts, rs = prune(second, tonumber(m[1]), num(m[2]), num(m[3]))
  local d = redis.call('HMGET', DAY, 's:' .. day, 'h:' .. day, 'o:' .. day)
  return {num(d[1]), num(d[2]), num(d[3]), redis.call('ZCARD', EXP), ts, rs}
end

local ops = {reserve = reserve, settle = settle, release = release, usage = usage}
return ops[op]()

-- The absorber in Redis: router/absorber.py step for step, atomically, one call per op.
--
-- KEYS[1] res  hash  reservation id -> "tokens:day"        (live holds)
-- KEYS[2] exp  zset  reservation id scored by expires_at_s  (finds dead holds)
-- KEYS[3] day  hash  cur, s:<day> settled, h:<day> held, o:<day> overrun
-- KEYS[4] min  hash  old (oldest kept second), ts/rs window sums, t<sec>/r<sec> buckets
-- ARGV[1] op: reserve | settle | release | usage;  ARGV[2] now_s as Python's repr
--
-- Time is the caller's clock (passed in), not Redis TIME: the same steps then run in the
-- pure core under a scripted clock, and tests compare them. Worker clocks must be NTP-synced;
-- skew only moves window edges by the skew.

local RES, EXP, DAY, MIN = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local WINDOW_S = 60
local KEEP_S = 3 * 86400 -- an idle scope vanishes after three days
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

local function cur_day()
  return num(redis.call('HGET', DAY, 'cur'))
end

local function add_day(kind, day, tokens)
  if day >= cur_day() - 1 then
    incr(DAY, kind .. ':' .. day, tokens)
  end
end

local function roll(day)
  local cur = tonumber(redis.call('HGET', DAY, 'cur'))
  if cur == nil then
    redis.call('HSET', DAY, 'cur', day)
  elseif day > cur then
    for _, old in ipairs({cur - 1, cur}) do
      if old < day - 1 then
        redis.call('HDEL', DAY, 's:' .. old, 'h:' .. old, 'o:' .. old)
      end
    end
    redis.call('HSET', DAY, 'cur', day)
  end
end

local function sweep()
  local dead = redis.call('ZRANGEBYSCORE', EXP, '-inf', nowstr)
  if #dead == 0 then return end
  for _, id in ipairs(dead) do
    local rec = redis.call('HGET', RES, id)
    if rec then
      local tokens, day = string.match(rec, '^(%d+):(%-?%d+)$')
      add_day('h', tonumber(day), -tonumber(tokens))
      redis.call('HDEL', RES, id)
    end
  end
  redis.call('ZREMRANGEBYSCORE', EXP, '-inf', nowstr)
end

local function prune(second)
  local low = second - WINDOW_S
  local old = tonumber(redis.call('HGET', MIN, 'old'))
  if old == nil then
    redis.call('HSET', MIN, 'old', low)
    return
  end
  if old >= low then return end
  if low - old > WINDOW_S + 1 then
    redis.call('DEL', MIN)
  else
    local dt, dr = 0, 0
    for s = old, low - 1 do
      local pair = redis.call('HMGET', MIN, 't' .. s, 'r' .. s)
      if pair[1] or pair[2] then
        dt, dr = dt + num(pair[1]), dr + num(pair[2])
        redis.call('HDEL', MIN, 't' .. s, 'r' .. s)
      end
    end
    incr(MIN, 'ts', -dt)
    incr(MIN, 'rs', -dr)
  end
  redis.call('HSET', MIN, 'old', low)
end

local function advance(day, second)
  roll(day)
  sweep()
  prune(second)
end

local function adjust_bucket(second, delta)
  local field = 't' .. second
  local before = redis.call('HGET', MIN, field)
  if before and delta ~= 0 then
    local after = math.max(0, tonumber(before) + delta)
    redis.call('HSET', MIN, field, after)
    incr(MIN, 'ts', after - tonumber(before))
  end
end

local function touch()
  for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, KEEP_S) end
end

local function minute_wait(prefix, excess, second)
  local start = tonumber(redis.call('HGET', MIN, 'old')) or second
  local freed = 0
  for s = start, second do
    freed = freed + num(redis.call('HGET', MIN, prefix .. s))
    if freed >= excess then return s + WINDOW_S + 1 - now end
  end
  return WINDOW_S + 1
end

-- seconds until `tokens` fit if no holder settles early, and the first binding limit
local function wait(tpd, tpm, rpm, tokens, day, second)
  local best, reason = nil, nil
  local function note(wait_s, why)
    if best == nil or wait_s > best then best = wait_s end
    if reason == nil then reason = why end
  end
  if tpd then
    local settled = num(redis.call('HGET', DAY, 's:' .. day))
    local excess = settled + num(redis.call('HGET', DAY, 'h:' .. day)) + tokens - tpd
    local midnight_s = (day + 1) * 86400 - now
    if settled + tokens > tpd then
      note(midnight_s, 'day_full')
    elseif excess > 0 then
      local wait_s, freed = midnight_s, 0
      local rows = redis.call('ZRANGE', EXP, 0, -1, 'WITHSCORES')
      for i = 1, #rows, 2 do
        local rec = redis.call('HGET', RES, rows[i])
        local held, held_day = string.match(rec or '0:0', '^(%d+):(%-?%d+)$')
        if tonumber(held_day) == day then
          freed = freed + tonumber(held)
          if freed >= excess then
            wait_s = math.min(tonumber(rows[i + 1]) - now, midnight_s)
            break
          end
        end
      end
      note(wait_s, 'in_flight')
    end
  end
  local ts, rs = num(redis.call('HGET', MIN, 'ts')), num(redis.call('HGET', MIN, 'rs'))
  if tpm and ts + tokens > tpm then
    note(minute_wait('t', ts + tokens - tpm, second), 'tokens_per_minute')
  end
  if rpm and rs + 1 > rpm then
    note(minute_wait('r', rs + 1 - rpm, second), 'requests_per_minute')
  end
  return best or 0, reason or 'granted'
end

-- ARGV: op now expires_at tpd tpm rpm day second, then id tokens pairs. Returns
-- {reason, retry_after_s or '', granted indices (1-based)...}
local function reserve()
  local expires = ARGV[3]
  local tpd, tpm, rpm = limit(ARGV[4]), limit(ARGV[5]), limit(ARGV[6])
  local day, second = tonumber(ARGV[7]), tonumber(ARGV[8])
  advance(day, second)
  local room_t, room_r = math.huge, math.huge
  if tpd then
    room_t = tpd - num(redis.call('HGET', DAY, 's:' .. day)) - num(redis.call('HGET', DAY, 'h:' .. day))
  end
  if tpm then room_t = math.min(room_t, tpm - num(redis.call('HGET', MIN, 'ts'))) end
  if rpm then room_r = rpm - num(redis.call('HGET', MIN, 'rs')) end
  local out, holds, scores = {'granted', ''}, {}, {}
  local total, count, smallest = 0, 0, nil
  for i = 9, #ARGV, 2 do
    local id, tokens = ARGV[i], tonumber(ARGV[i + 1])
    if tokens <= room_t and room_r >= 1 then
      room_t, room_r = room_t - tokens, room_r - 1
      table.insert(holds, id)
      table.insert(holds, tokens .. ':' .. day)
      table.insert(scores, expires)
      table.insert(scores, id)
      total, count = total + tokens, count + 1
      out[#out + 1] = (i - 7) / 2
    elseif smallest == nil or tokens < smallest then
      smallest = tokens
    end
  end
  if count > 0 then
    redis.call('HSET', RES, unpack(holds))
    redis.call('ZADD', EXP, unpack(scores))
    add_day('h', day, total)
    -- a bucket below the oldest kept one only exists under clock skew; count it there
    local bucket = math.max(second, num(redis.call('HGET', MIN, 'old')))
    redis.call('HINCRBY', MIN, 't' .. bucket, total) -- created even for 0, as in the core
    incr(MIN, 'r' .. bucket, count)
    incr(MIN, 'ts', total)
    incr(MIN, 'rs', count)
    touch()
  end
  if smallest ~= nil then
    local wait_s, reason = wait(tpd, tpm, rpm, smallest, day, second)
    out[1], out[2] = reason, string.format('%.17g', wait_s)
  end
  return out
end

-- ARGV: op now id tokens res_day res_second actual day second. Returns {live, refund, overrun}
local function settle()
  local id, tokens = ARGV[3], tonumber(ARGV[4])
  local res_day, res_second, actual = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  advance(tonumber(ARGV[8]), tonumber(ARGV[9]))
  local live = redis.call('HDEL', RES, id)
  redis.call('ZREM', EXP, id)
  local delta = actual - tokens
  add_day('s', res_day, actual)
  if live == 1 then add_day('h', res_day, -tokens) end
  if delta > 0 then add_day('o', res_day, delta) end
  adjust_bucket(res_second, delta)
  touch()
  return {live, math.max(0, -delta), math.max(0, delta)}
end

-- ARGV: op now id tokens res_day res_second. Returns 1 when the hold was live.
local function release()
  local id, tokens = ARGV[3], tonumber(ARGV[4])
  if redis.call('HDEL', RES, id) == 0 then return 0 end
  redis.call('ZREM', EXP, id)
  add_day('h', tonumber(ARGV[5]), -tokens)
  adjust_bucket(tonumber(ARGV[6]), -tokens) -- the request itself stays counted
  return 1
end

-- ARGV: op now day second. Returns {settled, held, overrun, in_flight, window tokens, requests}
local function usage()
  local day = tonumber(ARGV[3])
  advance(day, tonumber(ARGV[4]))
  local function get(key, field) return num(redis.call('HGET', key, field)) end
  return {get(DAY, 's:' .. day), get(DAY, 'h:' .. day), get(DAY, 'o:' .. day),
          redis.call('ZCARD', EXP), get(MIN, 'ts'), get(MIN, 'rs')}
end

local ops = {reserve = reserve, settle = settle, release = release, usage = usage}
return ops[op]()

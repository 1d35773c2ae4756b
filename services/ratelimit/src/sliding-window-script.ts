/**
 * Checks and counts one request against every limit that applies to it, in
 * one atomic step: a sliding log per counter, so "N per window" admits at
 * most N hits in any window-long span, and a refused request counts nowhere.
 *
 * KEYS, per counter i (1-based): KEYS[2i-1] its log (a sorted set: one
 * member `<ms>:<seq>:<hits>` per admitted request, scored by its time in ms),
 * KEYS[2i] the sum of the hits in the log; the last key is the member
 * sequence. ARGV: [1] the hits this request adds, then per counter
 * ARGV[2i] its limit and ARGV[2i+1] its window in ms.
 *
 * Returns { admitted (1|0), then per counter: over (1|0), remaining, ms until
 * reset }. For an admitted request, "reset" is when its oldest hit leaves the
 * window (the budget grows again); for a refused one, when enough hits have
 * left for this request to fit (the whole window when it never can).
 * The time is Redis's, so every replica counts on the same clock.
 */
export const SLIDING_WINDOW_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hits = tonumber(ARGV[1])
local n = (#KEYS - 1) / 2
local totals = {}
local admitted = true
local function count(member)
  return tonumber(string.match(member, ':(%d+)$'))
end
for i = 1, n do
  local log, sum = KEYS[2 * i - 1], KEYS[2 * i]
  local limit, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local total = tonumber(redis.call('GET', sum) or '0')
  local expired = redis.call('ZRANGEBYSCORE', log, '-inf', now - window)
  if #expired > 0 then
    for _, member in ipairs(expired) do total = total - count(member) end
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
    if total <= 0 or redis.call('ZCARD', log) == 0 then
      total = 0
      redis.call('DEL', sum)
    else
      redis.call('SET', sum, total, 'KEEPTTL')
    end
  end
  totals[i] = total
  if total + hits > limit then admitted = false end
end
local result = { admitted and 1 or 0 }
local seq = 0
if admitted then seq = redis.call('INCR', KEYS[#KEYS]) end
for i = 1, n do
  local log, sum = KEYS[2 * i - 1], KEYS[2 * i]
  local limit, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local total = totals[i]
  local over = 0
  local reset = window
  if admitted then
    redis.call('ZADD', log, now, now .. ':' .. seq .. ':' .. hits)
    total = total + hits
    redis.call('SET', sum, total, 'PX', window)
    redis.call('PEXPIRE', log, window)
    local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
    reset = tonumber(oldest[2]) + window - now
  elseif total + hits > limit then
    over = 1
    if hits <= limit then
      -- Every member holds at least one hit: the oldest 'need' members free enough.
      local need = total + hits - limit
      local members = redis.call('ZRANGE', log, 0, need - 1, 'WITHSCORES')
      local freed = 0
      for j = 1, #members, 2 do
        freed = freed + count(members[j])
        if freed >= need then
          reset = tonumber(members[j + 1]) + window - now
          break
        end
      end
    end
  else
    local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
    if #oldest > 0 then reset = tonumber(oldest[2]) + window - now end
  end
  local remaining = limit - total
  if remaining < 0 then remaining = 0 end
  table.insert(result, over)
  table.insert(result, remaining)
  table.insert(result, reset)
end
return result
`;

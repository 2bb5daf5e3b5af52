-- due(): scheduled and retrying jobs due by the Redis clock, oldest first:
-- {now, {set, member, score}...}, at most 1000.
local now = now_ms()
local out = {}
for _, set in ipairs({'schedule', 'retry'}) do
  local m = redis.call('ZRANGEBYSCORE', set, '-inf', secs(now), 'WITHSCORES', 'LIMIT', 0, 1000 - #out)
  for i = 1, #m, 2 do out[#out + 1] = {set, m[i], m[i + 1]} end
end
return {now, out}

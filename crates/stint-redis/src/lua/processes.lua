-- processes(): the live processes by the Redis clock, as
-- {{id, info JSON, beat ms, busy, quiet}...}.
local now = now_ms()
local out = {}
for _, P in ipairs(redis.call('ZRANGEBYSCORE', 'stint:procs', now, '+inf')) do
  local h = redis.call('HMGET', 'stint:proc:' .. P, 'info', 'beat', 'busy', 'quiet')
  if h[1] then out[#out + 1] = {P, h[1], h[2] or '0', h[3] or '0', h[4] or '0'} end
end
return out

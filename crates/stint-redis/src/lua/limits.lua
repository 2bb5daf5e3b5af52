-- limits(): every key with limits that has running or parked jobs
-- (lua/flow.lua): {{key, concurrency, rate, period, running,
-- waiting_limit, waiting_rate}...}; limits as its jobs last said them, ''
-- for none.
local out = {}
for _, k in ipairs(redis.call('SMEMBERS', 'stint:limit-keys')) do
  local running = redis.call('HLEN', 'stint:limit-running:' .. k)
  local wl = redis.call('ZCARD', 'stint:limit-parked:' .. k)
  local wr = redis.call('ZCARD', 'stint:rate-parked:' .. k)
  if running + wl + wr > 0 then
    local c, r, p = flow_noted(k)
    out[#out + 1] = {k, c, r, p, running, wl, wr}
  end
end
return out

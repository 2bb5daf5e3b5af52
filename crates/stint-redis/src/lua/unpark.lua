-- unpark(): flow control's part of promote_due (lua/flow.lua). Jobs
-- parked for a rate whose time has come go back to the head of their
-- queues, the oldest to be fetched first. Then, per key, a safety net:
-- running entries whose lease is gone are dropped, unparked entries no
-- longer enqueued are dropped, and the oldest jobs parked for a slot are
-- unparked while the key's running jobs and its unparked jobs not yet
-- fetched are fewer than its concurrency (a limit raised, any drift); a
-- key with nothing left is forgotten. Returns how many were unparked.
local now = now_ms()
local n = 0

-- Unparks `jids` (oldest first) so that the oldest is at the head.
local function unpark_all(jids)
  for i = #jids, 1, -1 do
    flow_unpark(jids[i], now)
    n = n + 1
  end
end

local due = redis.call('ZRANGEBYSCORE', 'stint:rate-parked', '-inf', now, 'LIMIT', 0, 1000)
if #due > 0 then
  local order = {}
  for _, jid in ipairs(due) do
    order[#order + 1] = {jid, tonumber(redis.call('HGET', 'stint:job:' .. jid, 'pseq')) or 0}
  end
  table.sort(order, function(a, b) return a[2] < b[2] end)
  local jids = {}
  for i, o in ipairs(order) do jids[i] = o[1] end
  unpark_all(jids)
end

for _, k in ipairs(redis.call('SMEMBERS', 'stint:limit-keys')) do
  local run, un = 'stint:limit-running:' .. k, 'stint:limit-unparked:' .. k
  local parked = 'stint:limit-parked:' .. k
  local all = redis.call('HGETALL', run)
  for i = 1, #all, 2 do
    if redis.call('HEXISTS', 'stint:leases:' .. all[i + 1], all[i]) == 0 then
      redis.call('HDEL', run, all[i])
    end
  end
  for _, jid in ipairs(redis.call('SMEMBERS', un)) do
    if redis.call('HGET', 'stint:job:' .. jid, 'state') ~= 'enqueued' or
      redis.call('SISMEMBER', 'stint:parked', jid) == 1 then
      redis.call('SREM', un, jid)
    end
  end
  local conc = tonumber((flow_noted(k)))
  local running, waiting = redis.call('HLEN', run), redis.call('SCARD', un)
  if conc and running + waiting < conc then
    unpark_all(redis.call('ZRANGE', parked, 0, conc - running - waiting - 1))
  end
  if redis.call('HLEN', run) + redis.call('ZCARD', parked) + redis.call('SCARD', un) +
    redis.call('ZCARD', 'stint:rate-parked:' .. k) == 0 then
    redis.call('SREM', 'stint:limit-keys', k)
    redis.call('HDEL', 'stint:limits', k)
    redis.call('DEL', 'stint:limit:' .. k)
  end
end
if n > 0 then redis.call('PUBLISH', 'stint:pushed', '') end
return n

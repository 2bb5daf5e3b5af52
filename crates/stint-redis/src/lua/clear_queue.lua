-- clear_queue(ARGV: queue): deletes the queue's jobs (and their hashes,
-- its parked jobs included),
-- keeping, in their order, the children of split parents that wait for
-- them. Returns how many were deleted.
local q = 'queue:' .. ARGV[1]
local kept, gone = {}, 0
for _, payload in ipairs(redis.call('LRANGE', q, 0, -1)) do
  local jid = string.match(payload, '"jid":"([^"\\]+)"')
  local parent = jid and redis.call('HGET', 'stint:job:' .. jid, 'parent')
  if parent and redis.call('HGET', 'stint:job:' .. parent, 'state') == 'waiting' then
    kept[#kept + 1] = payload
  else
    if jid then redis.call('DEL', 'stint:job:' .. jid) end
    gone = gone + 1
  end
end
redis.call('DEL', q)
call_many('RPUSH', q, kept)
-- Its jobs parked by their keys' limits (lua/flow.lua) go too.
for _, jid in ipairs(redis.call('SMEMBERS', 'stint:parked')) do
  local key = 'stint:job:' .. jid
  local h = redis.call('HMGET', key, 'queue', 'parent')
  local waited = h[2] and redis.call('HGET', 'stint:job:' .. h[2], 'state') == 'waiting'
  if h[1] == ARGV[1] and not waited then
    flow_forget(jid)
    redis.call('DEL', key)
    gone = gone + 1
  end
end
return gone

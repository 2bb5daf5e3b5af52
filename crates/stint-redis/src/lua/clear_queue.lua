-- clear_queue(ARGV: queue): deletes the queue's jobs (and their hashes),
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
return gone

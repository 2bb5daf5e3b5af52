-- checkpoint(ARGV: jid, process, stint, checkpoint JSON, done): saves a
-- running job's checkpoint, fenced by its lease. More items done than the
-- saved checkpoint clears the recovery count (which counts recoveries in
-- a row without progress; see stint_core::lifecycle::recovery).
-- Returns {0} when the lease is not current, else {1, pending control}.
local key = 'stint:job:' .. ARGV[1]
local L = lease_unpack(redis.call('HGET', 'stint:leases:' .. ARGV[2], ARGV[1]))
if not L or L.stint ~= ARGV[3] then
  return {0}
end
unfresh(ARGV[2], ARGV[1], L)
local h = redis.call('HMGET', key, 'done', 'control')
if tonumber(ARGV[5]) > (tonumber(h[1]) or 0) then
  redis.call('HSET', key, 'cp', ARGV[4], 'done', ARGV[5], 'recoveries', 0)
else
  redis.call('HSET', key, 'cp', ARGV[4], 'done', ARGV[5])
end
return {1, h[2] or ''}

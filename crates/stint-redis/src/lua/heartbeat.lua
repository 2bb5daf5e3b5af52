-- heartbeat(ARGV: process, ttl ms, busy, quiet): renews the process's
-- leases. Returns 0 when the process is unknown (its leases expired and
-- its jobs were recovered): the caller registers again.
local P = ARGV[1]
if not redis.call('ZSCORE', 'stint:procs', P) then return 0 end
local now = now_ms()
redis.call('ZADD', 'stint:procs', now + tonumber(ARGV[2]), P)
redis.call('HSET', 'stint:proc:' .. P, 'beat', now, 'busy', ARGV[3], 'quiet', ARGV[4])
sidekiq_beat(P, redis.call('HGET', 'stint:proc:' .. P, 'sidekiq'), ARGV[3], ARGV[4], now)
return 1

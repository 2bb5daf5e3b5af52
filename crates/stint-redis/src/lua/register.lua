-- register(ARGV: process, ttl ms, stint info JSON, Sidekiq info JSON, busy,
-- quiet): records a live process whose leases expire ttl after now.
local P = ARGV[1]
local now = now_ms()
redis.call('ZADD', 'stint:procs', now + tonumber(ARGV[2]), P)
redis.call('DEL', 'stint:proc:' .. P)
redis.call('HSET', 'stint:proc:' .. P, 'info', ARGV[3], 'sidekiq', ARGV[4], 'beat', now,
  'busy', ARGV[5], 'quiet', ARGV[6])
sidekiq_beat(P, ARGV[4], ARGV[5], ARGV[6], now)
return 1

-- promote(ARGV: per job 5 values: set, member, new payload, queue, jid):
-- moves each job that is still in its set to the tail of its queue. The
-- ZREM of the exact member is the guard: a job another process promoted
-- (or an operator moved) is skipped. Returns how many moved.
local now = now_ms()
local n = 0
for i = 1, #ARGV, 5 do
  if redis.call('ZREM', ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('LPUSH', 'queue:' .. ARGV[i + 3], ARGV[i + 2])
    redis.call('SADD', 'queues', ARGV[i + 3])
    local key = 'stint:job:' .. ARGV[i + 4]
    if redis.call('EXISTS', key) == 1 then
      redis.call('HSET', key, 'state', 'enqueued', 'payload', ARGV[i + 2], 'enq', now)
    end
    n = n + 1
  end
end
-- Idle workers listening are woken (wake.rs).
if n > 0 then redis.call('PUBLISH', 'stint:pushed', '') end
return n

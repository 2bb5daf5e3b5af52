-- split(ARGV: jid, process, stint, checkpoint JSON, done, step, reason,
-- then per child 4 values: jid, queue, payload, schedule score or ''):
-- parks the running job as `waiting` (fenced by its lease; its stint ends
-- as "split", its checkpoint saved) and enqueues its children, all at
-- once. Returns {0} when the lease is not current (nothing written), else
-- {1, the parent's pending command}.
local jid, P, stint, cp, done, step, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local key = 'stint:job:' .. jid
local L = lease_unpack(redis.call('HGET', 'stint:leases:' .. P, jid))
if not L or L.stint ~= stint then return {0} end
local control = redis.call('HGET', key, 'control') or ''
local now = now_ms()
local n = (#ARGV - 7) / 4
local payload = lease_payload(P, jid)
release(P, {jid})
-- Waiting, it no longer counts as running for its key's limit.
if L.limited then flow_stopped(jid, payload, now) end
redis.call('SADD', 'stint:waiting', jid)
redis.call('HSET', key, 'state', 'waiting', 'stints', stint, 'payload', payload, 'queue', L.queue,
  'cp', cp, 'done', done, 'process', '', 'control', '', 'reason', reason, 'open', n,
  'h' .. stint, stint_record(stint, P, L.started, now, 'split', reason, done))
local kids = {}
for i = 8, #ARGV, 4 do
  local cjid, q, payload, score = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local state = 'enqueued'
  if score == '' then
    redis.call('LPUSH', 'queue:' .. q, payload)
    redis.call('SADD', 'queues', q)
  else
    state = 'scheduled'
    redis.call('ZADD', 'schedule', score, payload)
  end
  redis.call('HSET', 'stint:job:' .. cjid, 'state', state, 'parent', jid, 'step', step, 'queue', q,
    'payload', payload)
  kids[#kids + 1] = cjid
end
call_many('RPUSH', 'stint:children:' .. jid, kids)
return {1, control}

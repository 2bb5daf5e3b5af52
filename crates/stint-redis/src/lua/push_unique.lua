-- push_unique(ARGV: per job 8 values: jid, queue, payload, schedule score
-- or '', unique key or '', scope, ttl ms or '', created ms): a push with
-- unique keys (JobOptions::unique), whole in one script so that the
-- holder's state is read in the same atomic step as the push. A push
-- without keys takes the faster MULTI of transitions.rs instead.
-- First, as lua/push.lua: when a jid is one stint knows already (or twice
-- in this push), nothing is written. Then each job in order: when its
-- key's holder (stint:unique:UKEY, "jid NL created ms") refuses it, as
-- Unique::refuses rules, or an earlier job of this push holds the key,
-- nothing is stored for it; otherwise it is stored (LPUSH to its queue,
-- or ZADD to `schedule`) and, with a key, gets a hash (state, payload,
-- queue: its state is then known before it first runs) and holds its key.
-- Returns {'', {'' (stored) or the holder's jid, per job}}, or {the known
-- jid} when nothing was written. (The holder's rules: lua/flow.lua,
-- unique_holder and unique_hold.)
local now = now_ms()
local holders = redis.call('SMEMBERS', 'stint:holders')

local seen = {}
for i = 1, #ARGV, 8 do
  local jid = ARGV[i]
  if seen[jid] or redis.call('EXISTS', 'stint:job:' .. jid, 'stint:ok:' .. jid) > 0 then
    return {jid}
  end
  for _, P in ipairs(holders) do
    if redis.call('HEXISTS', 'stint:leases:' .. P, jid) == 1 then return {jid} end
  end
  seen[jid] = true
end

local answers, batch, queues = {}, {}, {}
for i = 1, #ARGV, 8 do
  local jid, q, payload, score = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local ukey, scope, ttl, created = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local holder
  if ukey ~= '' then
    holder = batch[ukey] or unique_holder(ukey, scope, ttl, now, holders)
  end
  if holder then
    answers[#answers + 1] = holder
  else
    answers[#answers + 1] = ''
    local state = 'enqueued'
    if score == '' then
      redis.call('LPUSH', 'queue:' .. q, payload)
      if not queues[q] then
        queues[q] = true
        redis.call('SADD', 'queues', q)
      end
    else
      state = 'scheduled'
      redis.call('ZADD', 'schedule', score, payload)
    end
    if ukey ~= '' then
      batch[ukey] = jid
      unique_hold(ukey, ttl, jid, created, state, payload, q)
    end
  end
end
-- Idle workers listening are woken (wake.rs).
for q in pairs(queues) do redis.call('PUBLISH', 'stint:pushed', q) end
return {'', answers}

-- push(ARGV: per job 4 values: jid, queue, score ('' = now), payload):
-- stores the jobs in one step, as Sidekiq's push_bulk does: LPUSH on
-- queue:NAME per queue (in the order given) and SADD `queues`, ZADD
-- `schedule` for jobs that run later, then announces the queues on
-- stint:pushed (wake.rs). Unless a jid is one stint knows already (leased
-- by a process, with a hash or a success record, or twice in this push):
-- then nothing is stored. (A job pushed and not taken yet has no record
-- of its own: it is not seen here.)
-- Returns {} or {the duplicate jid}.
local n = #ARGV / 4
local jids, jobs, oks, seen = {}, {}, {}, {}
for k = 1, n do
  local jid = ARGV[4 * k - 3]
  if seen[jid] then return {jid} end
  seen[jid] = true
  jids[k], jobs[k], oks[k] = jid, 'stint:job:' .. jid, 'stint:ok:' .. jid
end
for s = 1, n, 1000 do
  local e = math.min(s + 999, n)
  if redis.call('EXISTS', unpack(jobs, s, e)) + redis.call('EXISTS', unpack(oks, s, e)) > 0 then
    for k = s, e do
      if redis.call('EXISTS', jobs[k], oks[k]) > 0 then return {jids[k]} end
    end
  end
  for _, P in ipairs(redis.call('SMEMBERS', 'stint:holders')) do
    local got = redis.call('HMGET', 'stint:leases:' .. P, unpack(jids, s, e))
    for i = 1, e - s + 1 do
      if got[i] then return {jids[s + i - 1]} end
    end
  end
end
local order, lists, later = {}, {}, {}
for k = 1, n do
  local q, score, payload = ARGV[4 * k - 2], ARGV[4 * k - 1], ARGV[4 * k]
  if score == '' then
    if not lists[q] then
      lists[q] = {}
      order[#order + 1] = q
    end
    local l = lists[q]
    l[#l + 1] = payload
  else
    later[#later + 1] = score
    later[#later + 1] = payload
  end
end
for _, q in ipairs(order) do
  redis.call('SADD', 'queues', q)
  call_many('LPUSH', 'queue:' .. q, lists[q])
end
if #later > 0 then call_many('ZADD', 'schedule', later) end
for _, q in ipairs(order) do redis.call('PUBLISH', 'stint:pushed', q) end
return {}

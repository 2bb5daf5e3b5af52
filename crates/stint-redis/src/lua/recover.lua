-- recover(ARGV: max recoveries, succeeded ttl s, max succeeded records):
-- takes back the running jobs of processes whose leases expired by the
-- Redis clock (or that are gone from the registry), recoveries + 1 (unless
-- the process was stopping: mark_stopping), each
-- where core's recovery rule sends it (recovery_verdict, in the generated
-- prelude): the head of its queue with its checkpoint, `dead`, or paused /
-- cancelled when an operator asked. Expired processes are removed
-- (stint's registry and Sidekiq's).
-- Returns {{jid, kind, process, recoveries, state}...}.
local max = tonumber(ARGV[1])
local now = now_ms()
local out = {}
local delta = {}

local function with_error(payload, msg)
  local body = string.match(payload, '^(.*)}%s*$')
  if not body then return payload end
  return body .. ',"error_message":' .. cjson.encode(msg) ..
    ',"error_class":"stint::PoisonPill","failed_at":' .. secs(now) .. '}'
end

local function forget_process(P)
  return_landed(P)
  redis.call('ZREM', 'stint:procs', P)
  redis.call('DEL', 'stint:proc:' .. P, 'stint:leases:' .. P, 'stint:payloads:' .. P, P,
    P .. ':workers', P .. ':work')
  redis.call('SREM', 'processes', P)
  redis.call('SREM', 'stint:holders', P)
end

for _, P in ipairs(redis.call('SMEMBERS', 'stint:holders')) do
  local exp = tonumber(redis.call('ZSCORE', 'stint:procs', P))
  if not exp or exp < now then
    local all = redis.call('HGETALL', 'stint:leases:' .. P)
    -- A process told to stop (mark_stopping) was killed by whoever stopped
    -- it: recovery_verdict does not count its jobs' recoveries.
    local stopping = redis.call('HGET', 'stint:proc:' .. P, 'stopping') == '1'
    for k = 1, #all, 2 do
      local jid, L = all[k], lease_unpack(all[k + 1])
      if L then
        local key = 'stint:job:' .. jid
        local h = redis.call('HMGET', key, 'recoveries', 'control', 'done')
        local state, reason, rec = recovery_verdict((tonumber(h[1]) or 0) + 1, h[2] or '', max, P,
          stopping)
        local payload = lease_payload(P, jid)
        if state == 'dead' then payload = with_error(payload, reason) end
        -- Its key's slot is freed before it goes back to the head of its
        -- queue (lua/flow.lua).
        if L.limited then flow_stopped(jid, payload, now) end
        local f = {'state', state, 'stints', L.stint, 'recoveries', rec, 'process', '', 'control', '',
          'reason', reason, 'payload', payload, 'queue', L.queue,
          'h' .. L.stint, stint_record(L.stint, P, L.started, now, RECOVERED_LABEL, recovered_stint(P), h[3])}
        if state == 'enqueued' then
          redis.call('RPUSH', 'queue:' .. L.queue, payload)
          redis.call('SADD', 'queues', L.queue)
          f[#f + 1] = 'enq'; f[#f + 1] = now
        elseif state == 'dead' then
          redis.call('ZADD', 'dead', secs(now), payload)
          f[#f + 1] = 'finished'; f[#f + 1] = now
        elseif state == 'paused' then
          redis.call('SADD', 'stint:paused', jid)
        else
          redis.call('ZADD', 'stint:cancelled', now, jid)
          f[#f + 1] = 'finished'; f[#f + 1] = now
        end
        redis.call('HSET', key, unpack(f))
        if FINAL_STATE[state] then
          redis.call('EXPIRE', key, DEAD_KEEP_MS / 1000)
          child_finished(key, L.parent, now)
        end
        count(delta, L.class, L.queue, 'recovered', 1)
        out[#out + 1] = {jid, L.class, P, rec, state}
      end
    end
    forget_process(P)
  end
end
for _, P in ipairs(redis.call('ZRANGEBYSCORE', 'stint:procs', '-inf', '(' .. now)) do
  forget_process(P)
end
write_counts(delta)
-- Every worker runs this each second: old records of succeeded jobs go
-- here too when no job completes.
trim_succeeded(now, tonumber(ARGV[2]), tonumber(ARGV[3]))
return out

-- complete(ARGV: succeeded ttl s, max succeeded records, date, then the
-- ends of stints, each fenced by its lease (the leases of a process are
-- read in one HMGET):
--   K jid process stint okrecord        succeeded, its record built by the
--                                       store (see ok_unpack)
--   F jid process stint code label reason checkpoint done payload
--     retry-score error result record   any end; code S succeeded, R retry,
--                                       D dead, Q requeue (head of the
--                                       queue), P paused, C cancelled
-- A pause or cancel still pending when a stint ends as R or Q wins. Empty
-- checkpoint, done or payload: keep the stored one; empty record: written
-- here. Returns the jids whose lease was not current (nothing written).
local ttl = tonumber(ARGV[1])
local keep_max = tonumber(ARGV[2])
local date = ARGV[3]
local now = now_ms()
local refused, released, dels, oks = {}, {}, {}, {}
local succeeded, cancelled = {}, {}
local processed, failed, dead_n = 0, 0, 0
local delta = {}

-- The ends, and the fence: every lease named, one HMGET per process.
local ends, by_process = {}, {}
local i = 4
while i <= #ARGV do
  local e = {jid = ARGV[i + 1], P = ARGV[i + 2], stint = ARGV[i + 3]}
  if ARGV[i] == 'K' then
    e.code, e.okrec = 'S', ARGV[i + 4]
    i = i + 5
  else
    e.code, e.label, e.reason, e.cp, e.done = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
    e.payload, e.score, e.err, e.result, e.rec = ARGV[i + 9], ARGV[i + 10], ARGV[i + 11], ARGV[i + 12], ARGV[i + 13]
    i = i + 14
  end
  ends[#ends + 1] = e
  by_process[e.P] = by_process[e.P] or {}
  table.insert(by_process[e.P], e)
end
for P, es in pairs(by_process) do
  for s = 1, #es, 1000 do
    local fields = {}
    for k = s, math.min(s + 999, #es) do fields[#fields + 1] = es[k].jid end
    local vals = redis.call('HMGET', 'stint:leases:' .. P, unpack(fields))
    for k = 1, #fields do es[s + k - 1].L = lease_unpack(vals[k]) end
  end
end

for _, e in ipairs(ends) do
  local jid, P, stint, code, L = e.jid, e.P, e.stint, e.code, e.L
  local key = 'stint:job:' .. jid
  if not L or L.stint ~= stint then
    refused[#refused + 1] = jid
  else
    released[P] = released[P] or {}
    table.insert(released[P], jid)
    local child = L.parent ~= ''
    local state
    if e.okrec then
      state = 'succeeded'
      if L.fresh and not child and ttl > 0 then
        -- The common case, a job done in its first stint: one string key,
        -- written with the others of the batch in one MSET.
        oks[#oks + 1] = 'stint:ok:' .. jid
        oks[#oks + 1] = e.okrec
      elseif not child and ttl <= 0 then
        dels[#dels + 1] = key
      else
        local _, _, _, _, _, cp, result, payload = ok_unpack(e.okrec)
        e.cp, e.result, e.payload = cp, result, payload
        e.label, e.reason, e.done, e.rec = 'succeeded', '', string.match(cp, '"done":(%d+)') or '0', ''
      end
    else
      local ctl = ''
      if code == 'R' or code == 'Q' then ctl = redis.call('HGET', key, 'control') or '' end
      if code == 'S' then
        state = 'succeeded'
      elseif code == 'D' then
        state = 'dead'
      elseif code == 'P' then
        state = 'paused'
      elseif code == 'C' then
        state = 'cancelled'
      elseif ctl == 'pause' then
        state = 'paused'
      elseif ctl == 'cancel' then
        state = 'cancelled'
      elseif code == 'R' then
        state = 'retrying'
      else
        state = 'enqueued'
      end
      if state == 'succeeded' and ttl <= 0 and not child then dels[#dels + 1] = key end
    end
    if code == 'S' or code == 'R' or code == 'D' then processed = processed + 1 end
    if code == 'R' or code == 'D' then failed = failed + 1 end
    local counter = 'interrupted'
    if code == 'S' then counter = 'processed' elseif code == 'R' or code == 'D' then counter = 'failed' end
    count_stint(delta, L.class, L.queue, counter, math.max(now - L.started, 0))

    -- Anything but a one-string record: the job's hash.
    if e.label and not (state == 'succeeded' and ttl <= 0 and not child) then
      local payload = e.payload
      if payload == '' then payload = lease_payload(P, jid) end
      local done, rec = e.done, e.rec
      if done == '' and rec == '' then done = redis.call('HGET', key, 'done') or '0' end
      if rec == '' then rec = stint_record(stint, P, L.started, now, e.label, e.reason, done) end
      local f = {'state', state, 'stints', stint, 'process', '', 'control', '', 'reason', e.reason,
        'h' .. stint, rec, 'payload', payload, 'queue', L.queue}
      if e.cp ~= '' then
        f[#f + 1] = 'cp'; f[#f + 1] = e.cp; f[#f + 1] = 'done'; f[#f + 1] = done
      end
      if e.result ~= '' then f[#f + 1] = 'result'; f[#f + 1] = e.result end
      if e.err ~= nil and e.err ~= '' then
        f[#f + 1] = 'error'; f[#f + 1] = e.err; f[#f + 1] = 'e' .. stint; f[#f + 1] = e.err
      end
      if state == 'succeeded' or state == 'dead' or state == 'cancelled' then
        f[#f + 1] = 'finished'; f[#f + 1] = now
      end
      if state == 'enqueued' then f[#f + 1] = 'enq'; f[#f + 1] = now end
      redis.call('HSET', key, unpack(f))
      if state == 'succeeded' then
        redis.call('EXPIRE', key, child and DEAD_KEEP_MS / 1000 or ttl)
      elseif state == 'retrying' then
        redis.call('ZADD', 'retry', e.score, payload)
      elseif state == 'dead' then
        redis.call('ZADD', 'dead', secs(now), payload)
        redis.call('EXPIRE', key, DEAD_KEEP_MS / 1000)
        dead_n = dead_n + 1
      elseif state == 'enqueued' then
        redis.call('RPUSH', 'queue:' .. L.queue, payload)
        redis.call('SADD', 'queues', L.queue)
      elseif state == 'paused' then
        redis.call('SADD', 'stint:paused', jid)
      elseif state == 'cancelled' then
        redis.call('EXPIRE', key, DEAD_KEEP_MS / 1000)
        cancelled[#cancelled + 1] = now
        cancelled[#cancelled + 1] = jid
      end
    end
    if state == 'succeeded' and (ttl > 0 or child) then
      succeeded[#succeeded + 1] = now
      succeeded[#succeeded + 1] = jid
    end
    if state == 'succeeded' or state == 'dead' or state == 'cancelled' then
      child_finished(key, L.parent, now)
    end
  end
end

for P, jids in pairs(released) do release(P, jids) end
for s = 1, #dels, 1000 do redis.call('DEL', unpack(dels, s, math.min(s + 999, #dels))) end
for s = 1, #oks, 1000 do redis.call('MSET', unpack(oks, s, math.min(s + 999, #oks))) end
if #succeeded > 0 then
  call_many('ZADD', 'stint:succeeded', succeeded)
  trim_succeeded(now, ttl, keep_max)
end
if #cancelled > 0 then
  call_many('ZADD', 'stint:cancelled', cancelled)
  redis.call('ZREMRANGEBYSCORE', 'stint:cancelled', '-inf', '(' .. (now - DEAD_KEEP_MS))
  redis.call('ZREMRANGEBYRANK', 'stint:cancelled', 0, -DEAD_MAX - 1)
end
if dead_n > 0 then
  redis.call('ZREMRANGEBYSCORE', 'dead', '-inf', '(' .. secs(now - DEAD_KEEP_MS))
  redis.call('ZREMRANGEBYRANK', 'dead', 0, -DEAD_MAX - 1)
end
write_counts(delta)
if processed > 0 then
  redis.call('INCRBY', 'stat:processed', processed)
  redis.call('INCRBY', 'stat:processed:' .. date, processed)
end
if failed > 0 then
  redis.call('INCRBY', 'stat:failed', failed)
  redis.call('INCRBY', 'stat:failed:' .. date, failed)
end
return refused

-- complete(ARGV: succeeded ttl s, max succeeded records, date, then the
-- ends of stints:
--   K jid process lease group okrecord limitkey
--       the common end, a success in the first stint of a job that is no
--       split child (fetch.lua's fresh lease): fenced by the lease entry,
--       compared whole (when a checkpoint changed it since, by its stint
--       number, and written as an F); group = "started NL queue NL class"
--       (its metrics); its record is built by the store (see ok_unpack);
--       limitkey: the key whose slot it frees (lease 'L1'; the job's
--       hash, if it has one, only said it was parked: it is deleted), or ''
--   F jid process stint code label reason checkpoint done payload
--     retry-score error result record
--       any end, fenced by the stint number; code S succeeded, R retry,
--       D dead, Q requeue (head of the queue), P paused, C cancelled,
--       Z snoozed (`schedule` at retry-score, attempts unchanged)
-- The leases of a process are read in one HMGET. The state each end leads
-- to, with or without a pending pause or cancel, is AFTER_STINT's (core's
-- rule, in the generated prelude). Empty checkpoint, done or
-- payload: keep the stored one; empty record: written here. Returns the
-- jids whose lease was not current (nothing written).
local ttl = tonumber(ARGV[1])
local keep_max = tonumber(ARGV[2])
local date = ARGV[3]
local now = now_ms()
local now_s = tostring(now)
local refused, released, dels, oks = {}, {}, {}, {}
local succeeded, cancelled = {}, {}
local processed, failed, dead_n = 0, 0, 0
local delta = {}

-- The ends: the ARGV index of each K by process, a table for each F.
local ends, fast, by_process = {}, {}, {}
local i = 4
while i <= #ARGV do
  local P = ARGV[i + 2]
  if ARGV[i] == 'K' then
    local f = fast[P]
    if not f then f = {}; fast[P] = f end
    f[#f + 1] = i
    i = i + 7
  else
    local e = {jid = ARGV[i + 1], P = P, stint = ARGV[i + 3]}
    e.code, e.label, e.reason, e.cp, e.done = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
    e.payload, e.score, e.err, e.result, e.rec = ARGV[i + 9], ARGV[i + 10], ARGV[i + 11], ARGV[i + 12], ARGV[i + 13]
    i = i + 14
    ends[#ends + 1] = e
    by_process[P] = by_process[P] or {}
    table.insert(by_process[P], e)
  end
end

-- The fast path: a lease entry equal to the one fetched is current. The
-- slots its jobs held are freed per key (`freed`: key -> jids).
local groups, freed = {}, {}
for P, idx in pairs(fast) do
  local rel = released[P]
  if not rel then rel = {}; released[P] = rel end
  for s = 1, #idx, 1000 do
    local fields = {}
    for k = s, math.min(s + 999, #idx) do fields[#fields + 1] = ARGV[idx[k] + 1] end
    local vals = redis.call('HMGET', 'stint:leases:' .. P, unpack(fields))
    for k = 1, #fields do
      local a, jid = idx[s + k - 1], fields[k]
      if vals[k] == ARGV[a + 3] then
        rel[#rel + 1] = jid
        if ttl > 0 then
          local n = #oks
          oks[n + 1], oks[n + 2] = 'stint:ok:' .. jid, ARGV[a + 5]
          n = #succeeded
          succeeded[n + 1], succeeded[n + 2] = now_s, jid
        end
        local g = ARGV[a + 4]
        groups[g] = (groups[g] or 0) + 1
        processed = processed + 1
        local lk = ARGV[a + 6]
        if lk ~= '' then
          local f = freed[lk]
          if not f then f = {}; freed[lk] = f end
          f[#f + 1] = jid
          -- The hash of a job that was parked before it ran (fetch.lua).
          dels[#dels + 1] = 'stint:job:' .. jid
        end
      else
        -- Changed since the fetch (a checkpoint wrote the job's hash): the
        -- same stint still holds it when the stint number matches, and the
        -- end is written as any other.
        local L, stint = lease_unpack(vals[k]), string.match(ARGV[a + 3], '^([^\n]*)')
        if L and L.stint == stint then
          local _, _, _, _, _, cp, result, payload = ok_unpack(ARGV[a + 5])
          ends[#ends + 1] = {jid = jid, P = P, stint = stint, L = L, code = 'S', label = 'succeeded',
            reason = '', cp = cp, done = string.match(cp, '"done":(%d+)') or '0', payload = payload,
            score = '', err = '', result = result, rec = ''}
        else
          refused[#refused + 1] = jid
        end
      end
    end
  end
end
-- One read for all keys: with no job parked anywhere (the common case),
-- no key has one to unpark.
if next(freed) then
  local none_parked = redis.call('SCARD', 'stint:parked') == 0
  for k, jids in pairs(freed) do flow_stopped_many(k, jids, now, none_parked) end
end
for g, n in pairs(groups) do
  local started, queue, class = string.match(g, '^([^\n]*)\n([^\n]*)\n(.*)$')
  count_stint(delta, class or '', queue or '', 'processed', math.max(now - (tonumber(started) or now), 0), n)
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
    -- The state after the end, by core's rule; the pending control is
    -- read only for the ends it can change.
    local rule = AFTER_STINT[code]
    local ctl = ''
    if rule.pause ~= rule[''] or rule.cancel ~= rule[''] then
      ctl = redis.call('HGET', key, 'control') or ''
    end
    local state = rule[ctl] or rule['']
    if state == 'succeeded' and ttl <= 0 and not child then dels[#dels + 1] = key end
    if code == 'S' or code == 'R' or code == 'D' then processed = processed + 1 end
    if code == 'R' or code == 'D' then failed = failed + 1 end
    local counter = 'interrupted'
    if code == 'S' then counter = 'processed' elseif code == 'R' or code == 'D' then counter = 'failed' end
    count_stint(delta, L.class, L.queue, counter, math.max(now - L.started, 0))

    -- A job with a limit frees its slot (lua/flow.lua) before a requeued
    -- job goes back to the head of its queue.
    if L.limited then
      flow_stopped(jid, e.payload ~= '' and e.payload or lease_payload(P, jid), now)
    end

    -- The job's hash (unless nothing of a success is kept).
    if not (state == 'succeeded' and ttl <= 0 and not child) then
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
      if FINAL_STATE[state] then
        f[#f + 1] = 'finished'; f[#f + 1] = now
      end
      if state == 'enqueued' then f[#f + 1] = 'enq'; f[#f + 1] = now end
      redis.call('HSET', key, unpack(f))
      if state == 'succeeded' then
        redis.call('EXPIRE', key, child and DEAD_KEEP_MS / 1000 or ttl)
      elseif state == 'retrying' then
        redis.call('ZADD', 'retry', e.score, payload)
      elseif state == 'scheduled' then
        redis.call('ZADD', 'schedule', e.score, payload)
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
      succeeded[#succeeded + 1] = now_s
      succeeded[#succeeded + 1] = jid
    end
    if FINAL_STATE[state] then
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

-- job(ARGV: jid): one consistent read of a job. A running job is read from
-- its lease (and its hash); a job in a place only stint has (waiting,
-- paused, succeeded, cancelled) from its hash; a job in one of Sidekiq's places is found there (its hash, if any,
-- holds stint's extras): its queue, `schedule`, `retry` or `dead`, by its
-- recorded payload or by reading the ends of each (bounded, below). Returns {state, payload, score, hash
-- fields and values...} (score: the sorted-set score, or the queue of an
-- enqueued job), or {} when the job is nowhere.
local jid = ARGV[1]
local key = 'stint:job:' .. jid
local hash = redis.call('HGETALL', key)
local state = redis.call('HGET', key, 'state')

local function reply(st, payload, score)
  local out = {st, payload, score or ''}
  for _, v in ipairs(hash) do out[#out + 1] = v end
  return out
end

-- Running: leased by a process (the lease says which stint, since when).
for _, P in ipairs(redis.call('SMEMBERS', 'stint:holders')) do
  local L = lease_unpack(redis.call('HGET', 'stint:leases:' .. P, jid))
  if L then
    local out = reply('running', lease_payload(P, jid))
    for _, v in ipairs({'stints', L.stint, 'started', L.started, 'process', P, 'queue', L.queue,
        'parent', L.parent}) do
      out[#out + 1] = v
    end
    return out
  end
end

-- Succeeded in its first stint: its record is one string (ok_unpack).
local ok = redis.call('GET', 'stint:ok:' .. jid)
if ok then
  local stint, started, finished, P, queue, cp, result, payload = ok_unpack(ok)
  local done = string.match(cp, '"done":(%d+)') or '0'
  hash = {'stints', stint, 'finished', finished, 'queue', queue, 'cp', cp, 'result', result,
    'state', 'succeeded',
    'h' .. stint, stint_record(stint, P, started, tonumber(finished), 'succeeded', '', done)}
  return reply('succeeded', payload)
end

-- Parked by its key's limit (lua/flow.lua): enqueued, out of its queue.
if state == 'enqueued' and redis.call('SISMEMBER', 'stint:parked', jid) == 1 then
  local h = redis.call('HMGET', key, 'payload', 'queue')
  return reply('enqueued', h[1], h[2])
end

if state == 'waiting' or state == 'paused' or state == 'succeeded' or state == 'cancelled' then
  return reply(state, redis.call('HGET', key, 'payload'))
end

local function is_it(member)
  if not string.find(member, jid, 1, true) then return false end
  local ok, job = pcall(cjson.decode, member)
  return ok and type(job) == 'table' and job.jid == jid
end

-- Sidekiq's places are read in a bounded way (never a scan of a whole
-- queue or set on a request path): the LOOK entries at each end of each
-- queue and set. A job stint has a hash for is found by its recorded
-- payload at once (ZSCORE) when in a sorted set; a job pushed by another
-- client (or by stint) that sits deeper than that in a queue is not found
-- until it is fetched ("not found, or not yet seen by stint").
local LOOK = 1000

local function ends(len)
  if len <= 2 * LOOK then return {{0, len - 1}} end
  return {{0, LOOK - 1}, {len - LOOK, len - 1}}
end

local function in_list(k)
  for _, r in ipairs(ends(redis.call('LLEN', k))) do
    if r[2] >= r[1] then
      for _, m in ipairs(redis.call('LRANGE', k, r[1], r[2])) do
        if is_it(m) then return m end
      end
    end
  end
end

local function in_zset(k)
  for _, r in ipairs(ends(redis.call('ZCARD', k))) do
    if r[2] >= r[1] then
      local m = redis.call('ZRANGE', k, r[1], r[2], 'WITHSCORES')
      for j = 1, #m, 2 do
        if is_it(m[j]) then return m[j], m[j + 1] end
      end
    end
  end
end

local recorded = redis.call('HGET', key, 'payload')
local places = {{'scheduled', 'schedule'}, {'retrying', 'retry'}, {'dead', 'dead'}}
if recorded then
  for _, place in ipairs(places) do
    local score = redis.call('ZSCORE', place[2], recorded)
    if score then return reply(place[1], recorded, score) end
  end
end
local queues = redis.call('SMEMBERS', 'queues')
local hint = redis.call('HGET', key, 'queue')
if hint then table.insert(queues, 1, hint) end
for _, q in ipairs(queues) do
  local m = in_list('queue:' .. q)
  if m then return reply('enqueued', m, q) end
end
-- Taken from its queue by an idle process's blocking pop and about to be
-- leased (landing.rs): still enqueued.
for _, P in ipairs(redis.call('SMEMBERS', 'stint:holders')) do
  for _, q in ipairs(redis.call('SMEMBERS', 'stint:landings:' .. P)) do
    local m = in_list(landing_key(P, q))
    if m then return reply('enqueued', m, q) end
  end
end
for _, place in ipairs(places) do
  local m, score = in_zset(place[2])
  if m then return reply(place[1], m, score) end
end
return {}

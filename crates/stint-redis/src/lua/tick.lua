-- tick(ARGV: name, spec, tick_ms, next_run_ms or '', overlap, jid, queue,
-- payload, kept, unique key or '', scope, ttl ms or '', now ms): one tick
-- of a periodic schedule, recorded once with its push. A tick whose job's
-- unique key another job holds (lua/flow.lua, unique_holder) stores
-- nothing: the holder is its run. Keys: stint:crons (set of names), stint:cron:NAME (hash: spec,
-- next, last_tick, last_jid, last_payload, last_queue, enqueued, skipped), stint:cron-ticks:NAME
-- (zset of "tick:e|s:jid" scored by tick, trimmed to `kept`).
-- Returns {'enqueued', jid}, {'skipped', unfinished} or {'done', jid or ''}.
local name, spec, tick = ARGV[1], ARGV[2], tonumber(ARGV[3])
local nxt, overlap, jid, queue, payload = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local kept = tonumber(ARGV[9])
local ukey, scope, ttl, now = ARGV[10] or '', ARGV[11] or '', ARGV[12] or '', tonumber(ARGV[13])
local key = 'stint:cron:' .. name
local ticks = 'stint:cron-ticks:' .. name

redis.call('SADD', 'stint:crons', name)
-- The next run only moves forward, unless the spec changed.
local changed = redis.call('HGET', key, 'spec') ~= spec
redis.call('HSET', key, 'spec', spec)
if nxt ~= '' and (changed or tonumber(nxt) > tonumber(redis.call('HGET', key, 'next') or '-1')) then
  redis.call('HSET', key, 'next', nxt)
end

local last = redis.call('HGET', key, 'last_tick')
if last and tonumber(last) >= tick then
  local m = redis.call('ZRANGEBYSCORE', ticks, tick, tick)
  local done = ''
  if m[1] then done = string.match(m[1], '^[^:]*:.:(.*)$') or '' end
  return {'done', done}
end

local function record(kind, id)
  redis.call('ZADD', ticks, tick, string.format('%d:%s:%s', tick, kind, id))
  local n = redis.call('ZCARD', ticks)
  if n > kept then redis.call('ZREMRANGEBYRANK', ticks, 0, n - kept - 1) end
  redis.call('HSET', key, 'last_tick', tick)
end

local prev = redis.call('HGET', key, 'last_jid')
if overlap == 'skip' and prev then
  -- A run found nowhere was deleted (or its success record expired).
  local state = run_state(key, prev)
  if state and not FINAL_STATE[state] then
    record('s', prev)
    redis.call('HINCRBY', key, 'skipped', 1)
    return {'skipped', prev}
  end
end

if ukey ~= '' then
  local holder = unique_holder(ukey, scope, ttl, now, redis.call('SMEMBERS', 'stint:holders'))
  if holder then
    record('e', holder)
    redis.call('HSET', key, 'last_jid', holder)
    redis.call('HDEL', key, 'last_payload', 'last_queue')
    redis.call('HINCRBY', key, 'enqueued', 1)
    return {'enqueued', holder}
  end
  unique_hold(ukey, ttl, jid, now, 'enqueued', payload, queue)
end
redis.call('SADD', 'queues', queue)
redis.call('LPUSH', 'queue:' .. queue, payload)
redis.call('PUBLISH', 'stint:pushed', queue)
record('e', jid)
-- The run's payload as pushed: run_state finds it in its queue by it.
redis.call('HSET', key, 'last_jid', jid, 'last_payload', payload, 'last_queue', queue)
redis.call('HINCRBY', key, 'enqueued', 1)
return {'enqueued', jid}

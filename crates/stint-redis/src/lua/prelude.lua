-- Shared by every stint script (prepended by scripts.rs, after the rules
-- generated from stint_core::lifecycle: AFTER_STINT, recovery_verdict,
-- RECOVERED_LABEL, recovered_stint, FINAL_STATE, CHILDREN_FINISHED).
-- Times are the Redis server's clock, in epoch milliseconds: leases never
-- depend on the clocks of worker machines.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Sidekiq's float seconds, exact to the millisecond.
local function secs(ms)
  return string.format('%.3f', ms / 1000)
end

-- Dead jobs and cancelled records are kept as Sidekiq keeps its dead set.
local DEAD_KEEP_MS = 180 * 24 * 3600 * 1000
local DEAD_MAX = 10000

-- One ended stint, as stint history records it (JSON of StintRecord).
local function stint_record(number, process, started, ended, outcome, reason, done)
  local r = ''
  if reason and reason ~= '' then r = ',"reason":' .. cjson.encode(reason) end
  return string.format(
    '{"number":%d,"process":%s,"started_at_ms":%d,"ended_at_ms":%d,"outcome":%s,"done":%d%s}',
    tonumber(number) or 0, cjson.encode(process or ''), tonumber(started) or ended, ended,
    cjson.encode(outcome), tonumber(done) or 0, r)
end

-- Calls `cmd key ...` with the items of `list`, in slices small enough for
-- Lua's stack.
local function call_many(cmd, key, list)
  for i = 1, #list, 1000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
  end
end

-- A lease: the entry of a running job in the hash stint:leases:PROCESS,
-- "stint NL started ms NL fetch id NL parent jid NL queue NL fresh NL
-- class" (the fence every write of the stint is checked against); its
-- payload is in the hash stint:payloads:PROCESS. Fresh: the job has no
-- hash (its first stint, nothing recorded about it yet), so that a success
-- can be recorded in one string ('0': it has a hash). A job that counts
-- towards a key's limits (lua/flow.lua) has 'L1' (fresh) or 'L' instead.
local function lease_pack(stint, started, fid, parent, queue, fresh, class)
  return stint .. '\n' .. started .. '\n' .. fid .. '\n' .. parent .. '\n' .. queue .. '\n' ..
    fresh .. '\n' .. class
end

local function lease_unpack(v)
  if not v then return nil end
  local stint, started, fid, parent, queue, fresh, class =
    string.match(v, '^([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n(.*)$')
  if not stint then return nil end
  return {stint = stint, started = tonumber(started) or 0, fid = fid, parent = parent,
    queue = queue, fresh = fresh == '1' or fresh == 'L1', limited = string.byte(fresh) == 76,
    class = class}
end

local function lease_payload(P, jid)
  return redis.call('HGET', 'stint:payloads:' .. P, jid) or ''
end

-- Ends the leases of `jids` held by P.
local function release(P, jids)
  call_many('HDEL', 'stint:leases:' .. P, jids)
  call_many('HDEL', 'stint:payloads:' .. P, jids)
end

-- The lease of `jid` held by P, no longer fresh (its hash is being written).
local function unfresh(P, jid, L)
  if L.fresh then
    redis.call('HSET', 'stint:leases:' .. P, jid,
      lease_pack(L.stint, L.started, L.fid, L.parent, L.queue, L.limited and 'L' or '0', L.class))
  end
end

-- The record of a job that succeeded in its first stint, kept in one
-- string key stint:ok:JID (written for a whole batch in one MSET; deleted
-- when trimmed from stint:succeeded), built by the store (ok_record in
-- completion.rs): "stint NL started ms NL finished ms NL process NL queue
-- NL checkpoint NL result NL payload".
local function ok_unpack(v)
  return string.match(v, '^([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n(.*)$')
end

-- Trims the index of succeeded jobs to `ttl` seconds and `keep_max`
-- entries, deleting the one-string records of the jobs trimmed (a hash
-- record expires on its own).
local function trim_succeeded(now, ttl, keep_max)
  local old = redis.call('ZRANGEBYSCORE', 'stint:succeeded', '-inf', '(' .. (now - ttl * 1000), 'LIMIT', 0, 10000)
  local over = redis.call('ZCARD', 'stint:succeeded') - #old - keep_max
  if over > 0 then
    for _, j in ipairs(redis.call('ZRANGE', 'stint:succeeded', #old, #old + over - 1)) do
      old[#old + 1] = j
    end
  end
  if #old == 0 then return end
  local keys = {}
  for k, j in ipairs(old) do keys[k] = 'stint:ok:' .. j end
  for s = 1, #old, 1000 do
    redis.call('DEL', unpack(keys, s, math.min(s + 999, #keys)))
    redis.call('ZREM', 'stint:succeeded', unpack(old, s, math.min(s + 999, #old)))
  end
end

-- Writes Sidekiq's view of process P (its `processes` entry, its heartbeat
-- hash and its busy jobs), so Ruby's ProcessSet and WorkSet list it.
local function sidekiq_beat(P, info, busy, quiet, now)
  redis.call('SADD', 'processes', P)
  redis.call('HSET', P, 'info', info or '{}', 'busy', busy, 'beat', secs(now),
    'quiet', quiet == '1' and 'true' or 'false', 'rss', 0, 'rtt_us', 0)
  redis.call('EXPIRE', P, 60)
  local wk6, wk7 = P .. ':workers', P .. ':work'
  redis.call('DEL', wk6, wk7)
  local all = redis.call('HGETALL', 'stint:leases:' .. P)
  for k = 1, #all, 2 do
    local L = lease_unpack(all[k + 1])
    if L then
      local w = cjson.encode({queue = L.queue, payload = lease_payload(P, all[k]),
        run_at = math.floor(L.started / 1000)})
      redis.call('HSET', wk6, all[k], w)
      redis.call('HSET', wk7, all[k], w)
    end
  end
  redis.call('EXPIRE', wk6, 60)
  redis.call('EXPIRE', wk7, 60)
end

-- After the job of hash `key` reached a final state: when it is a child of
-- a split job and the last one of its parent's children to finish, the
-- waiting parent goes to the head of its queue.
local function child_finished(key, parent, now)
  if not parent or parent == '' then return end
  local pkey = 'stint:job:' .. parent
  local open = redis.call('HINCRBY', pkey, 'open', -1)
  if open <= 0 and redis.call('HGET', pkey, 'state') == 'waiting' then
    local h = redis.call('HMGET', pkey, 'queue', 'payload')
    redis.call('RPUSH', 'queue:' .. h[1], h[2])
    redis.call('SADD', 'queues', h[1])
    redis.call('SREM', 'stint:waiting', parent)
    redis.call('HSET', pkey, 'state', 'enqueued', 'enq', now, 'reason', CHILDREN_FINISHED)
  end
end

-- Metrics (stint_core::metrics): counters by kind and queue in the hash
-- stint:metrics, field "kind NL queue NL counter", added up in tables
-- during a script and written once per field at its end. The bounds of the
-- stint-duration histogram, in ms, are STINT_SECONDS_BUCKETS's.
local STINT_MS_BUCKETS = {100, 500, 1000, 5000, 10000, 30000, 60000, 300000, 900000, 1800000, 3600000, 14400000}

-- The counters of one (kind, queue) in `delta`.
local function counters(delta, kind, queue)
  local byk = delta[kind]
  if not byk then
    byk = {}
    delta[kind] = byk
  end
  local c = byk[queue]
  if not c then
    c = {n = {}, b = {}}
    byk[queue] = c
  end
  return c
end

local function count(delta, kind, queue, name, n)
  local c = counters(delta, kind, queue)
  c.n[name] = (c.n[name] or 0) + n
end

-- `n` (default 1) stints of `ms` milliseconds each that ended as `name`
-- (processed, failed, interrupted).
local function count_stint(delta, kind, queue, name, ms, n)
  n = n or 1
  local c = counters(delta, kind, queue)
  c.n[name] = (c.n[name] or 0) + n
  c.n.stint_count = (c.n.stint_count or 0) + n
  c.n.stint_sum_ms = (c.n.stint_sum_ms or 0) + ms * n
  local b = #STINT_MS_BUCKETS
  for i, le in ipairs(STINT_MS_BUCKETS) do
    if ms <= le then b = i - 1; break end
  end
  c.b[b] = (c.b[b] or 0) + n
end

local function write_counts(delta)
  for kind, byk in pairs(delta) do
    for queue, c in pairs(byk) do
      local kq = kind .. '\n' .. queue .. '\n'
      for name, n in pairs(c.n) do redis.call('HINCRBY', 'stint:metrics', kq .. name, n) end
      for b, n in pairs(c.b) do redis.call('HINCRBY', 'stint:metrics', kq .. 'stint_bucket_' .. b, n) end
    end
  end
end

-- Wake on any push (landing.rs): an idle process's blocking BLMOVE moves a
-- job from queue:Q into its landing list stint:landing:P:Q (left end: the
-- oldest is at the right); stint:landings:P lists the queues it has one for.
local function landing_key(P, q)
  return 'stint:landing:' .. P .. ':' .. q
end

-- Up to `want` jobs of queue q for P, oldest first: what landed for P, then
-- from the queue's right end.
local function take_queued(P, q, want)
  local items = redis.call('RPOP', landing_key(P, q), want)
  if not items then return redis.call('RPOP', 'queue:' .. q, want) end
  if #items < want then
    local more = redis.call('RPOP', 'queue:' .. q, want - #items)
    if more then
      for _, x in ipairs(more) do items[#items + 1] = x end
    end
  end
  return items
end

-- Puts what landed for P in queue q back at the head of the queue, the
-- oldest at the head. Returns how many.
local function hand_back_landed(P, q)
  local key, n = landing_key(P, q), 0
  while redis.call('LMOVE', key, 'queue:' .. q, 'LEFT', 'RIGHT') do n = n + 1 end
  return n
end

-- Puts back everything that landed for P (a process gone), and forgets
-- its landing lists.
local function return_landed(P)
  local set = 'stint:landings:' .. P
  for _, q in ipairs(redis.call('SMEMBERS', set)) do
    if hand_back_landed(P, q) > 0 then redis.call('SADD', 'queues', q) end
  end
  redis.call('DEL', set)
end

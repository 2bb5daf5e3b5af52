-- Flow control (stint_core::model::flow), shared by the scripts after the
-- prelude: per-key concurrency and rate limits, and unique keys. Keys
-- (KEY a limit key, UKEY a unique key):
--   stint:limit-keys          set     keys whose jobs ran or were parked
--   stint:limits              hash    KEY -> "concurrency rate period": as its
--                                     jobs last said ('' for none)
--   stint:limit-running:KEY   hash    its running jobs: jid -> process
--   stint:limit-starts:KEY    zset    its stint starts (jid#stint) by ms
--   stint:limit-parked:KEY    zset    jobs parked for its concurrency limit,
--                                     by park sequence (their queue order)
--   stint:rate-parked:KEY     zset    jobs parked for its rate, by until ms
--   stint:rate-parked         zset    the same for every key (promote_due)
--   stint:limit-unparked:KEY  set     jobs unparked and not fetched yet (the
--                                     safety net of lua/unpark.lua counts them)
--   stint:parked              set     every parked job (listing, stats, clear_queue)
--   stint:park-seq            string  the last park sequence number
--   stint:unique:UKEY         string  the jid of the job that holds UKEY
-- A parked job is out of its queue; its hash has state `enqueued`, its
-- payload and queue, blocked (limit | rate), bkey (the key), buntil (rate:
-- until ms) and pseq (its park sequence, kept for a later park: a job
-- parked again is as old as it was). A running job of a key has a lease
-- whose fresh field is 'L1' or 'L' (lease_unpack: L.limited), and its
-- end frees its slot (flow_stopped, or flow_stopped_many for the fast
-- path of complete.lua).

-- The limit of a payload (its "stint" object's "limit", JobOptions' serde
-- form), or nil. A payload without the word "limit" costs one search. One
-- that stint wrote with a concurrency limit alone opens with it
-- (payload.rs, with_stint_first) and is read there by one match; any
-- other is decoded. (The match is exact: `"stint":{` can only be a member
-- name there, of the top-level object, and the limit's object ends at the
-- brace after its number.)
local function flow_limit(payload)
  if not payload or not string.find(payload, '"limit":', 1, true) then return nil end
  local key, conc = string.match(payload,
    '^{"stint":{"limit":{"key":"([^"\\]*)","concurrency":(%d+)}')
  if key then return {key = key, conc = tonumber(conc)} end
  local ok, job = pcall(cjson.decode, payload)
  if not ok or type(job) ~= 'table' or type(job.stint) ~= 'table' then return nil end
  local l = job.stint.limit
  if type(l) ~= 'table' or type(l.key) ~= 'string' then return nil end
  local rate, period
  local r = l.rate
  if type(r) == 'table' then
    rate, period = tonumber(r.limit), tonumber(r.period_ms)
    if not (rate and period) then rate, period = nil, nil end
  end
  return {key = l.key, conc = tonumber(l.concurrency), rate = rate, period = period}
end

-- The key's limits as this job says them ("concurrency rate period"), for
-- limits() and the safety net of lua/unpark.lua: the field KEY of
-- stint:limits, written only when it differs from what is stored. What is
-- stored is read once per key and script call (`seen`, as flow_admit's):
-- by flow_read_noted for all the keys a fetch meets in one call, else
-- here. KEY is in stint:limit-keys while it has a field (lua/unpark.lua
-- forgets both).
local function flow_note(seen, l)
  local s = seen and seen[l.key]
  if not s then
    s = {}
    if seen then seen[l.key] = s end
  end
  -- (A number is concatenated as tostring writes it.)
  local said = (l.conc or '') .. ' ' .. (l.rate or '') .. ' ' .. (l.period or '')
  if s.noted == said then return end
  if s.noted == nil then
    s.noted = redis.call('HGET', 'stint:limits', l.key) or false
    if s.noted == said then return end
  end
  redis.call('SADD', 'stint:limit-keys', l.key)
  redis.call('HSET', 'stint:limits', l.key, said)
  s.noted = said
end

-- Reads the noted limits of `keys` (distinct) into `seen`, one HMGET.
local function flow_read_noted(seen, keys)
  for from = 1, #keys, 1000 do
    local to = math.min(from + 999, #keys)
    local v = redis.call('HMGET', 'stint:limits', unpack(keys, from, to))
    for i = from, to do
      local s = seen[keys[i]]
      if not s then
        s = {}
        seen[keys[i]] = s
      end
      s.noted = v[i - from + 1] or false
    end
  end
end

-- Key k's noted concurrency, rate and period, as text ('' for none).
-- (A key noted before stint:limits existed has a hash stint:limit:KEY
-- instead, read when the field is missing.)
local function flow_noted(k)
  local said = redis.call('HGET', 'stint:limits', k)
  if said then
    local c, r, p = string.match(said, '^(%S*) (%S*) (%S*)$')
    return c or '', r or '', p or ''
  end
  local h = redis.call('HMGET', 'stint:limit:' .. k, 'concurrency', 'rate', 'period')
  return h[1] or '', h[2] or '', h[3] or ''
end

-- Mirrors Limit::admit (stint_core::model::flow) for one job of a fetch:
-- nil (start), 'limit' (wait for a slot) or 'rate', until ms. `seen`
-- carries each key's running count and recent starts through the fetch,
-- the jobs it leased included (flow_started).
local function flow_admit(seen, l, now)
  local s = seen[l.key]
  if not s then
    s = {}
    seen[l.key] = s
  end
  if not s.running then s.running = redis.call('HLEN', 'stint:limit-running:' .. l.key) end
  if l.conc and s.running >= l.conc then return 'limit' end
  if l.rate then
    if not s.starts then
      s.starts = {}
      local m = redis.call('ZRANGE', 'stint:limit-starts:' .. l.key, 0, -1, 'WITHSCORES')
      for i = 2, #m, 2 do s.starts[#s.starts + 1] = tonumber(m[i]) end
    end
    local from, inside = now - l.period, {}
    for _, t in ipairs(s.starts) do
      if t > from then inside[#inside + 1] = t end
    end
    if #inside >= l.rate then
      table.sort(inside)
      -- The window has room again when enough starts leave it.
      return 'rate', inside[#inside - l.rate + 1] + l.period
    end
  end
  return nil
end

-- Job `jid` of limit `l` starts its stint `stint` in process P. Its
-- entries in its key's running jobs and starts are collected in `seen`
-- and written by flow_write_starts once per key after the batch, one HSET
-- and one ZADD (flow_admit reads them only before the key's first start
-- in the batch, and counts the batch's starts itself).
local function flow_started(seen, l, jid, stint, P, now)
  local s = seen[l.key]
  s.running = s.running + 1
  local run = s.run
  if not run then run = {}; s.run = run end
  run[#run + 1], run[#run + 2] = jid, P
  if l.rate then
    if s.starts then s.starts[#s.starts + 1] = now end
    local z = s.zadd
    if not z then z = {}; s.zadd = z; s.cuts = {} end
    z[#z + 1], z[#z + 2] = now, jid .. '#' .. stint
    s.cuts[#s.cuts + 1] = now - l.period
    s.expire = l.period
  end
  flow_note(seen, l)
end

-- Writes what flow_started collected in `seen`. A key's starts are left
-- as a ZADD, prune (up to the window's cutoff) and PEXPIRE per start would
-- leave them: the starts from before pruned by the highest cutoff, a new
-- one kept unless the cutoff of its own start or of a later one reaches it
-- (only a window of 0 ms or less does), the expiry the last start's.
local function flow_write_starts(seen)
  for key, s in pairs(seen) do
    if s.run then call_many('HSET', 'stint:limit-running:' .. key, s.run) end
    if s.zadd then
      local starts, z, cuts = 'stint:limit-starts:' .. key, s.zadd, s.cuts
      local keep, drop, cut = {}, {}, cuts[#cuts]
      for i = #cuts, 1, -1 do
        if cuts[i] > cut then cut = cuts[i] end
        if z[2 * i - 1] > cut then
          keep[#keep + 1], keep[#keep + 2] = z[2 * i - 1], z[2 * i]
        else
          drop[#drop + 1] = z[2 * i]
        end
      end
      redis.call('ZREMRANGEBYSCORE', starts, '-inf', cut)
      if #drop > 0 then call_many('ZREM', starts, drop) end
      if #keep > 0 then call_many('ZADD', starts, keep) end
      redis.call('PEXPIRE', starts, s.expire)
    end
  end
end

-- What flow_park adds to the sets of parked jobs, written by flow_parked
-- once per set: all (jids), limit and rate (key -> score, jid, ...), due
-- (the same for stint:rate-parked).
local function flow_parks()
  return {all = {}, limit = {}, rate = {}, due = {}}
end

-- Parks job `jid` (its payload taken from queue q) for `reason` of limit
-- `l` (until ms for a rate); `seen` as flow_admit's; `pseq` the park
-- sequence the job keeps (its hash's, as read by the caller), else a new
-- one is taken. Its entries in the sets of parked jobs go to `parks`
-- (flow_parks), for flow_parked: nothing reads them before.
local function flow_park(jid, payload, q, l, reason, until_ms, seen, pseq, parks)
  local seq = pseq or redis.call('INCR', 'stint:park-seq')
  redis.call('HSET', 'stint:job:' .. jid, 'state', 'enqueued', 'payload', payload, 'queue', q,
    'blocked', reason, 'bkey', l.key, 'buntil', until_ms or '', 'pseq', seq)
  parks.all[#parks.all + 1] = jid
  local by, score = parks.limit, seq
  if reason ~= 'limit' then
    by, score = parks.rate, until_ms
    local due = parks.due
    due[#due + 1], due[#due + 2] = until_ms, jid
  end
  local z = by[l.key]
  if not z then z = {}; by[l.key] = z end
  z[#z + 1], z[#z + 2] = score, jid
  flow_note(seen, l)
end

-- Writes what flow_park collected in `parks`.
local function flow_parked(parks)
  if #parks.all == 0 then return end
  call_many('SADD', 'stint:parked', parks.all)
  for k, z in pairs(parks.limit) do call_many('ZADD', 'stint:limit-parked:' .. k, z) end
  for k, z in pairs(parks.rate) do call_many('ZADD', 'stint:rate-parked:' .. k, z) end
  if #parks.due > 0 then call_many('ZADD', 'stint:rate-parked', parks.due) end
end

-- Takes job `jid` out of the parked jobs (an operator's command, or its
-- unparking). Returns its hash's payload and queue when it was parked.
local function flow_forget(jid)
  if redis.call('SREM', 'stint:parked', jid) == 0 then return nil end
  local key = 'stint:job:' .. jid
  local h = redis.call('HMGET', key, 'payload', 'queue', 'bkey', 'blocked')
  if h[3] and h[4] ~= 'rate' then redis.call('ZREM', 'stint:limit-parked:' .. h[3], jid) end
  if h[4] ~= 'limit' then
    if h[3] then redis.call('ZREM', 'stint:rate-parked:' .. h[3], jid) end
    redis.call('ZREM', 'stint:rate-parked', jid)
  end
  redis.call('HDEL', key, 'blocked', 'bkey', 'buntil')
  return h[1] or '', h[2], h[3]
end

-- Unparks job `jid`: back to the head of its queue (fetched next), in
-- queue order when several are unparked newest first.
local function flow_unpark(jid, now)
  local payload, q, k = flow_forget(jid)
  if payload and q then
    if k then redis.call('SADD', 'stint:limit-unparked:' .. k, jid) end
    redis.call('RPUSH', 'queue:' .. q, payload)
    redis.call('SADD', 'queues', q)
    redis.call('HSET', 'stint:job:' .. jid, 'enq', now)
  end
end

-- A running job of a key stops running (any stint end, a split, a
-- recovery; `payload`: what it ran with): it leaves the key's running
-- jobs, and the key's oldest job parked for a slot is unparked. Call it
-- before a stopped job goes back to the head of its queue, which is then
-- fetched first.
local function flow_stopped(jid, payload, now)
  local l = flow_limit(payload)
  if not l then return end
  if redis.call('HDEL', 'stint:limit-running:' .. l.key, jid) == 0 then return end
  local oldest = redis.call('ZRANGE', 'stint:limit-parked:' .. l.key, 0, 0)[1]
  if oldest then flow_unpark(oldest, now) end
end

-- Running jobs `jids` of key `k` stop running (complete.lua's fast path,
-- many at once): as many of the key's oldest jobs parked for a slot as
-- were running are unparked, the oldest at the head of its queue.
-- `none_parked`: the caller knows stint:parked is empty, so no key has a
-- job to unpark (a job parked for a slot is in stint:parked until
-- flow_forget takes it out of both), and the key's parked jobs are not read.
local function flow_stopped_many(k, jids, now, none_parked)
  local n = 0
  for s = 1, #jids, 1000 do
    n = n + redis.call('HDEL', 'stint:limit-running:' .. k, unpack(jids, s, math.min(s + 999, #jids)))
  end
  if n == 0 or none_parked then return end
  local oldest = redis.call('ZRANGE', 'stint:limit-parked:' .. k, 0, n - 1)
  for i = #oldest, 1, -1 do flow_unpark(oldest[i], now) end
end

-- Unique keys: stint:unique:UKEY is "jid NL created ms" of the job that
-- holds UKEY (lua/push_unique.lua, lua/tick.lua).

-- The state and started stints of job `jid` (`holders`: the members of
-- stint:holders), or nil when it is gone (deleted, trimmed, expired): that
-- frees its key.
local function unique_state_of(jid, holders)
  for _, P in ipairs(holders) do
    local L = lease_unpack(redis.call('HGET', 'stint:leases:' .. P, jid))
    if L then return 'running', tonumber(L.stint) or 1 end
  end
  if redis.call('EXISTS', 'stint:ok:' .. jid) == 1 then return 'succeeded', 1 end
  local h = redis.call('HMGET', 'stint:job:' .. jid, 'state', 'stints')
  if not h[1] then return nil end
  return h[1], tonumber(h[2]) or 0
end

-- Mirrors Unique::refuses and UniqueScope::holds (stint_core::model::flow):
-- does a holder in `state` with `stints` started, pushed at `created`,
-- refuse a push of scope `scope` and ttl `ttl` at `now`?
local function unique_refuses(scope, ttl, state, stints, created, now)
  if ttl ~= '' and now >= created + tonumber(ttl) then return false end
  if scope == 'while_enqueued' then
    return state == 'scheduled' or state == 'enqueued' or state == 'retrying'
  elseif scope == 'until_started' then
    return stints == 0 and not FINAL_STATE[state]
  elseif scope == 'while_running' then
    return state == 'running' or state == 'waiting'
  end
  return not FINAL_STATE[state]
end

-- The jid of the job that holds unique key `ukey` against a push of
-- `scope` and `ttl` at `now`, or nil when the key is free to take.
local function unique_holder(ukey, scope, ttl, now, holders)
  local rec = redis.call('GET', 'stint:unique:' .. ukey)
  local hjid, hcreated = string.match(rec or '', '^([^\n]*)\n(.*)$')
  if not hjid then return nil end
  local state, stints = unique_state_of(hjid, holders)
  if state and unique_refuses(scope, ttl, state, stints, tonumber(hcreated) or 0, now) then
    return hjid
  end
  return nil
end

-- Job `jid`, pushed at `created` (ms) into queue q in `state`, takes unique
-- key `ukey` (ttl ms or ''); its hash says its state before it first runs.
local function unique_hold(ukey, ttl, jid, created, state, payload, q)
  -- (With a ttl, the record goes when the key is free anyway.)
  if ttl ~= '' and ttl ~= '0' and #ttl <= 15 then
    redis.call('SET', 'stint:unique:' .. ukey, jid .. '\n' .. created, 'PX', ttl)
  else
    redis.call('SET', 'stint:unique:' .. ukey, jid .. '\n' .. created)
  end
  redis.call('HSET', 'stint:job:' .. jid, 'state', state, 'payload', payload, 'queue', q)
end

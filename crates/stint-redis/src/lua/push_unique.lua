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
-- jid} when nothing was written.
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

-- The state and started stints of job `jid`, or nil when it is gone
-- (deleted, trimmed, expired): that frees its key.
local function state_of(jid)
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
local function refuses(scope, ttl, state, stints, created)
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

local answers, batch, queues = {}, {}, {}
for i = 1, #ARGV, 8 do
  local jid, q, payload, score = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local ukey, scope, ttl, created = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local holder
  if ukey ~= '' then
    holder = batch[ukey]
    if not holder then
      local rec = redis.call('GET', 'stint:unique:' .. ukey)
      local hjid, hcreated = string.match(rec or '', '^([^\n]*)\n(.*)$')
      if hjid then
        local state, stints = state_of(hjid)
        if state and refuses(scope, ttl, state, stints, tonumber(hcreated) or 0) then
          holder = hjid
        end
      end
    end
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
      -- (With a ttl, the record goes when the key is free anyway.)
      if ttl ~= '' and ttl ~= '0' and #ttl <= 15 then
        redis.call('SET', 'stint:unique:' .. ukey, jid .. '\n' .. created, 'PX', ttl)
      else
        redis.call('SET', 'stint:unique:' .. ukey, jid .. '\n' .. created)
      end
      redis.call('HSET', 'stint:job:' .. jid, 'state', state, 'payload', payload, 'queue', q)
    end
  end
end
-- Idle workers listening are woken (wake.rs).
for q in pairs(queues) do redis.call('PUBLISH', 'stint:pushed', q) end
return {'', answers}

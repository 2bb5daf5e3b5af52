-- command(ARGV: jid, seen, from, member, to, payload, queue, kind, reason,
-- reset): an operator's move of one job (decided by core's rules,
-- commands.rs), guarded by where the caller saw it, in state `seen`:
--   from = list:KEY | zset:KEY  the exact member must still be there (and is
--                               removed), or
--          state:STATE          the job's hash must be in that state, or
--          parked:              the job must be parked by its key's limit, or
--          running:STINT:PROCESS  the job must run that stint there.
--   to   = paused | cancelled | head | tail (of the queue) | control:pause |
--          control:cancel | control: (withdraw) | delete (the job and its
--          history).
-- reset = 1 gives a dead job its recoveries back (its attempts are in the
-- payload). Returns 1 when done, 0 when the guard failed (the job moved
-- meanwhile: read it again).
local jid, seen, from, member, to = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local payload, q, kind, reason, reset = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local key = 'stint:job:' .. jid
local now = now_ms()
local how, where = string.match(from, '^(%a+):(.*)$')

local ok = false
local lease
if how == 'list' then
  ok = redis.call('LREM', where, 1, member) == 1
elseif how == 'zset' then
  ok = redis.call('ZREM', where, member) == 1
elseif how == 'state' then
  ok = redis.call('HGET', key, 'state') == where
    or (where == 'succeeded' and redis.call('EXISTS', 'stint:ok:' .. jid) == 1)
elseif how == 'parked' then
  -- Parked by its key's limit (lua/flow.lua): it leaves the parked jobs.
  ok = flow_forget(jid) ~= nil
elseif how == 'running' then
  local stint, P = string.match(where, '^(%d+):(.*)$')
  local L = lease_unpack(redis.call('HGET', 'stint:leases:' .. (P or ''), jid))
  ok = L ~= nil and L.stint == stint
  if ok then unfresh(P, jid, L) end
end
if not ok then return 0 end

if string.sub(to, 1, 8) == 'control:' then
  redis.call('HSET', key, 'control', string.sub(to, 9))
  return 1
end

if how == 'state' and where == 'paused' then redis.call('SREM', 'stint:paused', jid) end
if how == 'state' and where == 'cancelled' then redis.call('ZREM', 'stint:cancelled', jid) end
if how == 'state' and where == 'succeeded' then redis.call('ZREM', 'stint:succeeded', jid) end
if how == 'state' and where == 'waiting' then redis.call('SREM', 'stint:waiting', jid) end
local parent = redis.call('HGET', key, 'parent')
if to == 'delete' then
  redis.call('DEL', key, 'stint:ok:' .. jid)
  if parent then redis.call('LREM', 'stint:children:' .. parent, 0, jid) end
  return 1
end
-- A child of a split job leaving a final state is unfinished again; one
-- reaching it may be the last its parent waits for.
local was_final = FINAL_STATE[seen] == true
local target = ({paused = 'paused', cancelled = 'cancelled', head = 'enqueued', tail = 'enqueued'})[to]
local is_final = FINAL_STATE[target] == true
if parent and was_final and not is_final then
  redis.call('HINCRBY', 'stint:job:' .. parent, 'open', 1)
end

local f = {'payload', payload, 'queue', q, 'kind', kind, 'process', '', 'control', ''}
if reset == '1' then f[#f + 1] = 'recoveries'; f[#f + 1] = 0 end
if to == 'paused' then
  redis.call('SADD', 'stint:paused', jid)
  redis.call('PERSIST', key)
  f[#f + 1] = 'state'; f[#f + 1] = 'paused'; f[#f + 1] = 'reason'; f[#f + 1] = reason
elseif to == 'cancelled' then
  redis.call('ZADD', 'stint:cancelled', now, jid)
  f[#f + 1] = 'state'; f[#f + 1] = 'cancelled'; f[#f + 1] = 'reason'; f[#f + 1] = reason
  f[#f + 1] = 'finished'; f[#f + 1] = now
else
  if to == 'head' then
    redis.call('RPUSH', 'queue:' .. q, payload)
  else
    redis.call('LPUSH', 'queue:' .. q, payload)
  end
  redis.call('SADD', 'queues', q)
  redis.call('PERSIST', key)
  redis.call('HDEL', key, 'finished')
  f[#f + 1] = 'state'; f[#f + 1] = 'enqueued'; f[#f + 1] = 'enq'; f[#f + 1] = now
end
redis.call('HSET', key, unpack(f))
if is_final then
  redis.call('EXPIRE', key, DEAD_KEEP_MS / 1000)
  if not was_final then child_finished(key, parent, now) end
end
return 1

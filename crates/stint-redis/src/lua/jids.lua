-- Jids at fetch (included in fetch.lua and unreadable.lua, after the
-- prelude): which payloads can be leased under their jid, and the dead job
-- that keeps a payload that cannot.

-- A jid stint can look up and show: 1 to 64 letters, digits, '-', '_',
-- '.' or ':' (Jid::parse says the same).
local function valid_jid(jid)
  return #jid <= 64 and string.find(jid, '^[%w%-_%.:]+$') ~= nil
end
local JID_RULE = 'no usable "jid" (1 to 64 letters, digits, "-", "_", ".", ":")'

-- The payload with its queue: a payload pushed without "queue" (another
-- client) belongs to the queue it was fetched from, and keeps it through
-- retries, requeues and recoveries.
local function with_queue(payload, q)
  if string.find(payload, '"queue":', 1, true) then return payload end
  local b = string.find(payload, '{', 1, true)
  if not b then return payload end
  return string.sub(payload, 1, b) .. '"queue":' .. cjson.encode(q) .. ',' ..
    string.sub(payload, b + 1)
end

-- The payload as it was pushed, before with_queue(payload, q).
local function without_added_queue(payload, q)
  local b = string.find(payload, '{', 1, true)
  if not b then return payload end
  local added = '"queue":' .. cjson.encode(q) .. ','
  if string.sub(payload, b + 1, b + #added) ~= added or
    string.find(payload, '"queue":', b + #added + 1, true) then
    return payload
  end
  return string.sub(payload, 1, b) .. string.sub(payload, b + #added + 1)
end

-- The top-level "class" of a payload, or '?'.
local function class_of(payload)
  local ok, job = pcall(cjson.decode, payload or '')
  if ok and type(job) == 'table' and type(job.class) == 'string' then return job.class end
  return '?'
end

-- Stores `payload`, taken from queue q, as a dead job of its own under a
-- fresh jid (its text kept as args[0]), visible to `stint show` and `stint
-- jobs --state dead`; it never touches another job. `taken` ({jid, kind,
-- state}) when its jid belongs to another job; else `why` says what is
-- wrong with it. Returns the new jid and the reason recorded.
local function keep_dead(payload, q, now, salt, why, taken)
  local jid = string.sub(redis.sha1hex(payload .. ':' .. now .. ':' .. salt), 1, 24)
  local class, msg = 'stint::MalformedPayload', nil
  if taken then
    class = 'stint::JidTaken'
    msg = 'jid ' .. taken.jid .. ' is already used by job ' .. taken.jid .. ' (kind ' ..
      taken.kind .. ', state ' .. taken.state .. '); this payload was kept under jid ' .. jid ..
      ' (queue:' .. q .. '; its text is args[0] of this dead job)'
  else
    msg = 'malformed payload in queue:' .. q .. ': ' .. why ..
      '; the original text is kept as args[0] of this dead job'
  end
  local wrapper = cjson.encode({
    class = class, args = {payload}, jid = jid, queue = q,
    retry = false, created_at = now / 1000, failed_at = now / 1000,
    error_class = class, error_message = msg})
  redis.call('ZADD', 'dead', secs(now), wrapper)
  redis.call('HSET', 'stint:job:' .. jid, 'state', 'dead', 'payload', wrapper, 'queue', q,
    'kind', class, 'reason', msg, 'finished', now)
  redis.call('EXPIRE', 'stint:job:' .. jid, DEAD_KEEP_MS / 1000)
  return jid, msg
end

-- States of a job's hash in which it is in none of Sidekiq's places: a
-- payload in a queue with its jid is another job's.
local NOT_QUEUED = {running = true, waiting = true, paused = true, succeeded = true,
  cancelled = true}

-- For fetched payloads (parallel arrays: jids, classes, queues, payloads), which
-- jids already belong to another job stint knows: running (a lease of any
-- process, or a payload earlier in this batch that is not taken itself),
-- succeeded or in one of stint's own places (waiting, paused, cancelled),
-- or with a hash whose
-- payload is another kind's (a
-- job stint moved to `retry` or `dead` may come back re-encoded by Ruby:
-- the same kind is taken for the same job). Returns {[k] = {jid, kind,
-- state}} for those, then the payloads' hash keys ('stint:job:JID'), how
-- many of them exist and, when some do, what was read of each hash
-- ({[k] = its state, payload, kind, stints, cp, recoveries, parent,
-- pseq}, for every k not taken by a lease or a success record): the
-- fetch's own read of what a job did before, so that a job with a hash (an
-- unparked one, say) costs one HMGET, not two. A batch of jobs no one
-- knows costs one SMEMBERS, one HMGET per process holding leases, and two
-- EXISTS (one of which the fetch needs anyway).
local function taken_jids(pj, pc, pq, pp)
  local n, taken = #pj, {}
  if n == 0 then return taken, {}, 0 end
  for _, P in ipairs(redis.call('SMEMBERS', 'stint:holders')) do
    for s = 1, n, 1000 do
      local e = math.min(s + 999, n)
      local got = redis.call('HMGET', 'stint:leases:' .. P, unpack(pj, s, e))
      for i = 1, e - s + 1 do
        local k = s + i - 1
        if got[i] and not taken[k] then
          local L = lease_unpack(got[i])
          taken[k] = {jid = pj[k], kind = L and L.class or '?', state = 'running'}
        end
      end
    end
  end
  local jobs, oks = {}, {}
  for k = 1, n do
    jobs[k] = 'stint:job:' .. pj[k]
    oks[k] = 'stint:ok:' .. pj[k]
  end
  local known, ok = 0, 0
  for s = 1, n, 1000 do
    local e = math.min(s + 999, n)
    known = known + redis.call('EXISTS', unpack(jobs, s, e))
    ok = ok + redis.call('EXISTS', unpack(oks, s, e))
  end
  if ok > 0 then
    for k = 1, n do
      local v = not taken[k] and redis.call('GET', oks[k])
      if v then
        local _, _, _, _, _, _, _, payload = ok_unpack(v)
        taken[k] = {jid = pj[k], kind = class_of(payload), state = 'succeeded'}
      end
    end
  end
  local hashes
  if known > 0 then
    hashes = {}
    for k = 1, n do
      if not taken[k] then
        local h = redis.call('HMGET', jobs[k], 'state', 'payload', 'kind', 'stints', 'cp',
          'recoveries', 'parent', 'pseq')
        hashes[k] = h
        local state, payload = h[1], h[2]
        if state and (NOT_QUEUED[state] or (payload and payload ~= with_queue(pp[k], pq[k]))) then
          local kind = h[3] or class_of(payload)
          if NOT_QUEUED[state] or kind ~= pc[k] then
            taken[k] = {jid = pj[k], kind = kind, state = state}
          end
        end
      end
    end
  end
  -- A jid twice in this batch: the first payload that is leased has it,
  -- the later ones are taken. One that is taken itself claims nothing: a
  -- payload reusing a job's jid may come first (pushed to the head, or
  -- landed for a process before the job was put back at the head) and
  -- must not make the job itself, right behind it, look taken.
  local leased = {}
  for k = 1, n do
    if not taken[k] then
      local first = leased[pj[k]]
      if first then
        taken[k] = {jid = pj[k], kind = pc[first], state = 'running'}
      else
        leased[pj[k]] = k
      end
    end
  end
  return taken, jobs, known, hashes
end

-- fetch(ARGV: process, limit, fetch id, replay, queue...): moves up to
-- `limit` jobs from the right (oldest) end of the queues, in the order
-- given (for each queue, what landed for the process first: landing.rs), into leases held by the process (a field of stint:leases:PROCESS
-- and one of stint:payloads:PROCESS each, written in one HSET per hash),
-- marked with the fetch id. A job's own hash is only read, and only when it has one: a new job's
-- first stint writes nothing per job until it ends. With replay = 1 (the
-- caller lost the reply of an earlier call with this id, as when Redis
-- died before answering), the jobs that call leased are returned instead,
-- if it ran; otherwise it runs now. A payload that is not a job, or whose
-- jid belongs to another job, is moved to `dead` inside a well-formed
-- wrapper job with a jid of its own (its text kept as args[0]), never
-- dropped. A payload without "queue" gets the queue it came from. A job
-- with a limit that may not start now is parked instead of leased
-- (lua/flow.lua): it stays enqueued, out of its queue, until unparked.
-- Returns {now, {payload, meta, lease, payload, meta, lease...}, {{wrapper
-- jid, queue, why}...}, how many were parked}, meta = "stints NL recoveries NL queue NL jid NL
-- checkpoint", lease as written (the fence complete.lua's fast path checks
-- by equality).
local P = ARGV[1]
local limit = tonumber(ARGV[2])
local fid = ARGV[3]
local now = now_ms()
local leases = 'stint:leases:' .. P
local jobs, bad, entries, payloads = {}, {}, {}, {}

if ARGV[4] == '1' then
  local all = redis.call('HGETALL', leases)
  for k = 1, #all, 2 do
    local L = lease_unpack(all[k + 1])
    if L and L.fid == fid then
      local h = redis.call('HMGET', 'stint:job:' .. all[k], 'cp', 'recoveries')
      jobs[#jobs + 1] = lease_payload(P, all[k])
      jobs[#jobs + 1] = L.stint .. '\n' .. (h[2] or '0') .. '\n' .. L.queue .. '\n' .. all[k] .. '\n' .. (h[1] or '')
      jobs[#jobs + 1] = all[k + 1]
      now = L.started
    end
  end
  if #jobs > 0 then return {now, jobs, bad} end
end

-- (keep_dead, in lua/jids.lua; `taken`: the job that already has the jid.)
local function dead_letter(payload, q, why, taken)
  local jid, msg = keep_dead(payload, q, now, #bad, why, taken)
  bad[#bad + 1] = {jid, q, taken and msg or why}
end

-- The jid and class of a payload. The common case (each key once, plain
-- strings without escapes) is read with plain searches, without decoding
-- the JSON; anything else is decoded.
local find, sub, byte = string.find, string.sub, string.byte
local function plain_string(payload, key)
  local _, e = find(payload, key, 1, true)
  if not e or byte(payload, e + 1) ~= 34 then return nil end
  local q = find(payload, '"', e + 2, true)
  if not q or find(payload, key, q, true) then return nil end
  local v = sub(payload, e + 2, q - 1)
  if find(v, '\\', 1, true) then return nil end
  return v
end

local function ids(payload)
  local jid, class = plain_string(payload, '"jid":'), plain_string(payload, '"class":')
  if jid and class then return jid, class end
  local ok, job = pcall(cjson.decode, payload)
  if not ok then return nil, nil, 'not valid JSON' end
  if type(job) ~= 'table' then return nil, nil, 'not a JSON object' end
  if type(job.class) ~= 'string' then return nil, nil, 'no "class" string' end
  if type(job.jid) ~= 'string' then return nil, nil, 'no "jid" string' end
  return job.jid, job.class
end

-- Pop, and check the payloads (parallel arrays: jid, class, queue, payload).
local pj, pc, pq, pp = {}, {}, {}, {}
for i = 5, #ARGV do
  local want = limit - #pj
  if want <= 0 then break end
  local q = ARGV[i]
  if redis.call('SISMEMBER', 'stint:paused-queues', q) == 1 then
    -- Landed (landing.rs) before the queue was paused: back to its head.
    hand_back_landed(P, q)
  else
    local items = take_queued(P, q, want)
    if items then
      for _, payload in ipairs(items) do
        local jid, class, why = ids(payload)
        if jid and not valid_jid(jid) then jid, why = nil, JID_RULE end
        if jid then
          local n = #pj + 1
          -- An ActiveJob's kind is its ActiveJob class (active_job.rs).
          class = plain_string(payload, '"wrapped":') or class
          if find(class, '\n', 1, true) then class = string.gsub(class, '\n', ' ') end
          pj[n], pc[n], pq[n], pp[n] = jid, class, q, payload
        else
          dead_letter(payload, q, why)
        end
      end
    end
  end
end

-- A payload whose jid is another job's (a client reused it) must not touch
-- that job: it is kept as a dead job of its own (lua/jids.lua). Only its
-- own top-level jid counts: a payload whose only "jid" is nested is
-- malformed.
local taken, _, _, hashes = taken_jids(pj, pc, pq, pp)
if next(taken) then
  local kj, kc, kq, kp, kh = {}, {}, {}, {}, hashes and {}
  for k = 1, #pj do
    if taken[k] then
      local ok, job = pcall(cjson.decode, pp[k])
      if ok and type(job) == 'table' and job.jid == pj[k] then
        dead_letter(pp[k], pq[k], nil, taken[k])
      else
        dead_letter(pp[k], pq[k], 'no top-level "jid" string')
      end
    else
      local n = #kj + 1
      kj[n], kc[n], kq[n], kp[n] = pj[k], pc[k], pq[k], pp[k]
      if kh then kh[n] = hashes[k] end
    end
  end
  pj, pc, pq, pp, hashes = kj, kc, kq, kp, kh
end
-- A payload without "queue" belongs to the queue it came from.
for k = 1, #pp do pp[k] = with_queue(pp[k], pq[k]) end

-- Jobs with a hash have run before (or were paused, split...): their
-- stints so far, checkpoint and recoveries were read by taken_jids
-- (`hashes`, nil when none of the batch has a hash, as for a queue of new
-- jobs: one EXISTS told).
-- `now` as text once (a number is formatted anew at each concatenation).
local started = tostring(now)
-- Jobs with a limit start when Limit::admit says so (flow_admit, counting
-- this fetch's starts), else are parked, out of the queue (lua/flow.lua).
-- A job without a hash was never parked, so is not among its key's
-- unparked jobs either. A job whose hash only says it was parked (never
-- run, no checkpoint) starts fresh too ('L1'): its success takes
-- complete.lua's fast path, which deletes that hash. Nothing in the batch
-- reads the sets of unparked and parked jobs, so they are written once
-- per key after it: `fetched` (key -> its jobs with a hash, out of its
-- unparked jobs now), `parks` (flow_park's) and the starts flow_started
-- keeps in `flow_seen`.
local flow_seen, parked, fetched, parks = {}, 0, {}, flow_parks()
-- The jobs' limits, and what is noted of their keys (one read for all).
local limits, keys = {}, {}
for k = 1, #pj do
  local l = flow_limit(pp[k])
  limits[k] = l or false
  if l and not flow_seen[l.key] then
    flow_seen[l.key] = {}
    keys[#keys + 1] = l.key
  end
end
flow_read_noted(flow_seen, keys)
for k = 1, #pj do
  local jid, q = pj[k], pq[k]
  local stints, rec, cp, parent, fresh = '1', '0', '', '', '1'
  -- h: state, payload, kind, stints, cp, recoveries, parent, pseq
  local h = hashes and hashes[k]
  if h and (h[4] or h[7] or h[1]) then fresh = '0' end
  local limit, wait, until_ms = limits[k] or nil, nil, nil
  local hashed = h and (fresh == '0' or h[5] or h[6]) and true or false
  if limit then
    if hashed then
      local f = fetched[limit.key]
      if not f then f = {}; fetched[limit.key] = f end
      f[#f + 1] = jid
      if h[1] == 'enqueued' and h[8] and not (h[4] or h[5] or h[6] or h[7]) then fresh = '1' end
    end
    wait, until_ms = flow_admit(flow_seen, limit, now)
  end
  if wait then
    flow_park(jid, pp[k], q, limit, wait, until_ms, flow_seen, hashed and h[8], parks)
    parked = parked + 1
  else
    if h then
      stints, cp, rec, parent = (tonumber(h[4]) or 0) + 1, h[5] or '', h[6] or '0', h[7] or ''
    end
    if limit then
      fresh = fresh == '1' and 'L1' or 'L'
      flow_started(flow_seen, limit, jid, stints, P, now)
    end
    local lease = lease_pack(stints, started, fid, parent, q, fresh, pc[k])
    local meta = stints .. '\n' .. rec .. '\n' .. q .. '\n' .. jid .. '\n' .. cp
    local e = #entries
    entries[e + 1], entries[e + 2] = jid, lease
    payloads[e + 1], payloads[e + 2] = jid, pp[k]
    local j = #jobs
    jobs[j + 1], jobs[j + 2], jobs[j + 3] = pp[k], meta, lease
  end
end
for key, jids in pairs(fetched) do call_many('SREM', 'stint:limit-unparked:' .. key, jids) end
flow_parked(parks)
flow_write_starts(flow_seen)
if #entries > 0 then
  call_many('HSET', leases, entries)
  call_many('HSET', 'stint:payloads:' .. P, payloads)
  redis.call('SADD', 'stint:holders', P)
end
return {now, jobs, bad, parked}

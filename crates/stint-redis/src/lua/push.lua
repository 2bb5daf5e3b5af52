-- push check (ARGV: number of queues, per queue: name, count; number of
-- scheduled jobs, their payloads; then the jids): run by EVAL inside the
-- push's MULTI, after its LPUSHes and ZADD (transitions.rs), so that the
-- jobs are written by Redis itself (no payload passes through Lua) and
-- the push stays one atomic step. When a jid is one stint knows already
-- (leased by a process, with a hash or a success record, or twice in this
-- push), the push is undone: the jobs it put at the left end of each queue
-- are popped, its scheduled jobs removed. (A job pushed and not taken yet
-- has no record of its own: it is not seen here.)
-- Returns {} or {the duplicate jid}.
local nq = tonumber(ARGV[1])
local ns = tonumber(ARGV[2 + 2 * nq])
local first = 3 + 2 * nq + ns
local jids, keys, seen = {}, {}, {}
local dup
for i = first, #ARGV do
  local jid = ARGV[i]
  if seen[jid] then dup = jid break end
  seen[jid] = true
  jids[#jids + 1] = jid
  keys[#keys + 1] = 'stint:job:' .. jid
  keys[#keys + 1] = 'stint:ok:' .. jid
end
local n = #jids
local holders = redis.call('SMEMBERS', 'stint:holders')
for s = 1, n, 1000 do
  if dup then break end
  local e = math.min(s + 999, n)
  if redis.call('EXISTS', unpack(keys, 2 * s - 1, 2 * e)) > 0 then
    for k = s, e do
      if redis.call('EXISTS', keys[2 * k - 1], keys[2 * k]) > 0 then dup = jids[k] break end
    end
  end
  for _, P in ipairs(holders) do
    if dup then break end
    local got = redis.call('HMGET', 'stint:leases:' .. P, unpack(jids, s, e))
    for i = 1, e - s + 1 do
      if got[i] then dup = jids[s + i - 1] break end
    end
  end
end
if not dup then return {} end
for q = 1, nq do
  local key, count = 'queue:' .. ARGV[2 * q], tonumber(ARGV[2 * q + 1])
  while count > 0 do
    local take = math.min(count, 1000)
    redis.call('LPOP', key, take)
    count = count - take
  end
end
for i = 3 + 2 * nq, 2 + 2 * nq + ns do redis.call('ZREM', 'schedule', ARGV[i]) end
return {dup}

-- unreadable(ARGV: process, then per payload: jid, why): payloads a fetch
-- leased under a jid that the payload does not read as (its only "jid" is
-- nested in its args, say) end their lease and are kept as dead jobs of
-- their own (keep_dead, lua/jids.lua): nothing is written under the jid
-- they were leased as. A lease no longer there is skipped.
-- Returns {{new jid, queue, reason}...}.
local P = ARGV[1]
local now = now_ms()
local out = {}
for i = 2, #ARGV, 2 do
  local jid, why = ARGV[i], ARGV[i + 1]
  local L = lease_unpack(redis.call('HGET', 'stint:leases:' .. P, jid))
  local payload = redis.call('HGET', 'stint:payloads:' .. P, jid)
  if L and payload then
    release(P, {jid})
    local kept, msg = keep_dead(without_added_queue(payload, L.queue), L.queue, now, i, why)
    out[#out + 1] = {kept, L.queue, msg}
  end
end
return out

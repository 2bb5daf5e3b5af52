-- controls(ARGV: process): pending pause / cancel commands of the jobs the
-- process runs, as {{jid, command}...}.
local out = {}
for _, jid in ipairs(redis.call('HKEYS', 'stint:leases:' .. ARGV[1])) do
  local c = redis.call('HGET', 'stint:job:' .. jid, 'control')
  if c and c ~= '' then out[#out + 1] = {jid, c} end
end
return out

-- schedules(ARGV: none): every schedule's hash and its last run's state,
-- as {name, state or '', field, value, ..., '', name, ...}: each schedule's
-- fields end with an empty string.
local out = {}
for _, name in ipairs(redis.call('SORT', 'stint:crons', 'ALPHA')) do
  local key = 'stint:cron:' .. name
  local prev = redis.call('HGET', key, 'last_jid')
  local state = ''
  if prev then state = run_state(key, prev) or '' end
  out[#out + 1] = name
  out[#out + 1] = state
  for _, v in ipairs(redis.call('HGETALL', key)) do out[#out + 1] = v end
  out[#out + 1] = ''
end
return out

-- process_command(ARGV: process, command): keeps an operator's command
-- (quiet, stop) for a live process, which reads it with its heartbeats; a
-- stop is never replaced by a quiet. Returns 0 when no live process has
-- the id.
local P = ARGV[1]
local exp = tonumber(redis.call('ZSCORE', 'stint:procs', P))
if not exp or exp < now_ms() then return 0 end
if redis.call('HGET', 'stint:proc:' .. P, 'command') ~= 'stop' then
  redis.call('HSET', 'stint:proc:' .. P, 'command', ARGV[2])
end
return 1

-- stopping(ARGV: process): marks a live process as stopping (told to stop,
-- handing its jobs back): recover.lua does not count the recoveries of its
-- jobs (recovery_verdict's `stopping`). An unknown process is left alone.
-- Returns 1, or 0 when the process is unknown.
local P = ARGV[1]
if not redis.call('ZSCORE', 'stint:procs', P) then return 0 end
redis.call('HSET', 'stint:proc:' .. P, 'stopping', '1')
return 1

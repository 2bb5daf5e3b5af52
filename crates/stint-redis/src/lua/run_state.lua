-- run_state(key, jid): the state of a periodic schedule's last run `jid`
-- (schedule hash `key`), or nil when it is gone (deleted, or its success
-- record expired). Where `job_where` does not look (it reads the ends of
-- each queue, never a whole one), a run still waiting deep in its queue
-- is found by its exact payload, as the tick pushed it (LPOS, in C).
local function run_state(key, jid)
  local state = job_where({jid})[1]
  if state then return state end
  local payload = redis.call('HGET', key, 'last_payload')
  local queue = redis.call('HGET', key, 'last_queue')
  if payload and queue and redis.call('LPOS', 'queue:' .. queue, payload) then
    return 'enqueued'
  end
  return nil
end

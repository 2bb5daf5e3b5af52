# Prints, as JSON, what Ruby's Sidekiq API lists: retries, dead and
# scheduled jobs, live processes, busy work, queues and stats.
require "sidekiq/api"
require "json"

entry = ->(e) { {"jid" => e.jid, "class" => e.klass, "args" => e.args, "error_message" => e["error_message"], "retry_count" => e["retry_count"], "at" => e.at.to_f} }
stats = Sidekiq::Stats.new
out = {
  "retry" => Sidekiq::RetrySet.new.map(&entry),
  "dead" => Sidekiq::DeadSet.new.map(&entry),
  "scheduled" => Sidekiq::ScheduledSet.new.map(&entry),
  "processes" => Sidekiq::ProcessSet.new.map { |p|
    {"identity" => p["identity"], "queues" => p["queues"], "busy" => p["busy"], "tag" => p["tag"],
     "concurrency" => p["concurrency"], "quiet" => p.stopping?}
  },
  "busy" => Sidekiq::Workers.new.map { |process, _tid, work| {"process" => process, "jid" => work["payload"]["jid"], "queue" => work["queue"]} },
  "queues" => Sidekiq::Queue.all.map { |q| {"name" => q.name, "size" => q.size} },
  "stats" => {"processed" => stats.processed, "failed" => stats.failed}
}
puts JSON.generate(out)

# Pushes N Stamp jobs with Ruby's Sidekiq client, one every 20 ms (the
# worker is idle at each push), each with its push time in epoch µs as its
# argument: `ruby stamp_push.rb N`. The benchmark's push-to-start latency.
require "sidekiq"

n = Integer(ARGV[0] || "100")
n.times do
  now_us = (Time.now.to_r * 1_000_000).to_i
  Sidekiq::Client.push("class" => "Stamp", "args" => [now_us], "queue" => "default")
  sleep 0.02
end

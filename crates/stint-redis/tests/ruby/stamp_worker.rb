# Sidekiq's side of the push-to-start benchmark: `sidekiq -r ./stamp_worker.rb`.
# Each Stamp job records how long after its push (its argument, epoch µs)
# it started, in µs, in the list test:latency.
require "sidekiq"

Sidekiq.logger.level = Logger::WARN

class Stamp
  include Sidekiq::Worker

  def perform(pushed_us)
    now_us = (Time.now.to_r * 1_000_000).to_i
    Sidekiq.redis { |r| r.rpush("test:latency", now_us - pushed_us) }
  end
end

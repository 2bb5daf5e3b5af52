# A no-op Sidekiq worker for the benchmark: `sidekiq -r ./noop_worker.rb`.
require "sidekiq"

# Per-job log lines would cost Sidekiq time that stint's worker (logging
# at warn in the benchmark) does not spend.
Sidekiq.logger.level = Logger::WARN

class NoopWorker
  include Sidekiq::Worker

  def perform(*_args); end
end

# A Rails worker for stint's ActiveJob pushes: `sidekiq -r ./active_job_worker.rb`.
# EchoJob records its arguments in the list test:rails_ran.
require "active_job"
require "sidekiq"
require "json"

ActiveJob::Base.queue_adapter = :sidekiq
ActiveJob::Base.logger = Logger.new(nil)
Sidekiq.logger.level = Logger::WARN

class EchoJob < ActiveJob::Base
  def perform(*args)
    record = {"job_id" => job_id, "args" => args, "executions" => executions, "queue" => queue_name}
    Sidekiq.redis { |r| r.rpush("test:rails_ran", JSON.generate(record)) }
  end
end

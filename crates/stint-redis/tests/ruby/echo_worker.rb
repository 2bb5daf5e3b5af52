# A Ruby Sidekiq worker for stint-pushed jobs: `sidekiq -r ./echo_worker.rb`.
# Appends {"jid", "args"} of each job it runs to the list test:ruby_ran.
require "sidekiq"
require "json"

class RubyEcho
  include Sidekiq::Worker

  def perform(*args)
    Sidekiq.redis { |c| c.rpush("test:ruby_ran", JSON.generate("jid" => jid, "args" => args)) }
  end
end

# Enqueues ActiveJob jobs with Rails' Sidekiq adapter (Debian's
# ruby-activejob, Rails 6.1): `ruby active_job.rb` prints their jids as
# JSON {"import": jid, "user": jid}. ImportJob gets one argument of each
# kind ActiveJob serializes; UserJob gets a GlobalID (a record).
require "active_job"
require "active_support/core_ext/integer/time"
require "sidekiq"
require "json"
require "globalid"

ActiveJob::Base.queue_adapter = :sidekiq
ActiveJob::Base.logger = Logger.new(nil)
Time.zone = "UTC"
GlobalID.app = "app"

class ImportJob < ActiveJob::Base
  queue_as :default
  def perform(*args); end
end

class UserJob < ActiveJob::Base
  queue_as :default
  def perform(user); end
end

# A model GlobalID can locate: enough for serialization.
class User
  include GlobalID::Identification
  attr_reader :id
  def initialize(id) = @id = id
  def self.find(id) = new(id)
end

import = ImportJob.perform_later(42, "x", {a: 1}, :sym, Time.now, 2.days)
times = ImportJob.perform_later(Time.zone.now, Date.new(2024, 2, 29), DateTime.new(2024, 2, 29, 12, 30), {"k" => [:v, 1.5]}, key: "w")
user = UserJob.perform_later(User.new(1))
puts JSON.generate("import" => import.provider_job_id, "times" => times.provider_job_id, "user" => user.provider_job_id)

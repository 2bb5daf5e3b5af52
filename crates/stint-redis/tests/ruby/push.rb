# Pushes HardWorker jobs the three ways a Ruby app does, and prints their
# jids as JSON: {"push": jid, "push_bulk": [jid, jid], "perform_in": jid}.
require "sidekiq"
require "json"

class HardWorker
  include Sidekiq::Worker
  sidekiq_options queue: "interop"
end

one = Sidekiq::Client.push("class" => "HardWorker", "args" => [1, "x"], "queue" => "interop")
bulk = Sidekiq::Client.push_bulk("class" => "HardWorker", "args" => [[2, "y"], [3, "z"]], "queue" => "interop")
later = HardWorker.perform_in(1, 4, "w")
unknown = Sidekiq::Client.push("class" => "NoSuchWorker", "args" => [], "queue" => "interop", "retry" => 1)
puts JSON.generate("push" => one, "push_bulk" => bulk, "perform_in" => later, "unknown" => unknown)

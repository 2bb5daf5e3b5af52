# Pushes a job with a jid of the caller's choosing, as any Ruby app may:
# ruby push_jid.rb CLASS QUEUE JID. Prints the jid Sidekiq returned.
require "sidekiq"

puts Sidekiq::Client.push("class" => ARGV[0], "queue" => ARGV[1], "args" => ["dup"], "jid" => ARGV[2])

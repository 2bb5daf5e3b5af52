-- hand_back(ARGV: process, queue): puts the jobs in the process's landing
-- list for the queue (landing.rs) back at the head of the queue, the
-- oldest at the head. Returns how many.
return hand_back_landed(ARGV[1], ARGV[2])

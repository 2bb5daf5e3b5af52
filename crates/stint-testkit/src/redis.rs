//! Written by the Redis store's work.

//! Helpers for the end-to-end tests: the test jobs (shared by the worker
//! binary and the tests that push them) and a harness that starts real
//! worker processes and signals them.

pub mod harness;
pub mod jobs;
pub mod split_jobs;

//! Helpers for the end-to-end tests: the test jobs (shared by the worker
//! binary and the tests that push them), a harness that starts real
//! worker processes on any store and signals them, and, for the dashboard,
//! an HTTP client and a headless Chromium.

pub mod browser;
pub mod chaos_jobs;
pub mod flow_jobs;
pub mod harness;
pub mod http;
pub mod jobs;
pub mod pg_jobs;
pub mod redis_jobs;
pub mod split_jobs;

//! Written by the PostgreSQL store's work.

//! W3C trace context (`traceparent`) across pushes and stints.
//!
//! A job may carry the `traceparent` of the span that pushed it (Ruby's
//! opentelemetry-instrumentation-sidekiq writes one as a top-level key of
//! the job hash; so do stint's Redis pushes): `JobRecord::traceparent`.
//! The runtime records it as the `traceparent` field of the stint's span
//! and, when a tracing back end is installed (the facade's `otel`
//! feature: `stint::otel::layer`), makes it the parent of that span; and a
//! push made inside a traced span carries the span's context.
//!
//! This module holds the hooks between them: without a back end installed,
//! the field is recorded and nothing else happens.

use std::sync::OnceLock;

/// What a tracing back end provides (installed once per process).
#[derive(Clone, Copy)]
pub struct TraceHooks {
    /// The `traceparent` of the current span, if it is traced.
    pub current: fn() -> Option<String>,
    /// Makes the context `traceparent` the parent of `span`.
    pub set_parent: fn(&tracing::Span, &str),
}

static HOOKS: OnceLock<TraceHooks> = OnceLock::new();

/// Installs the back end's hooks; the first installation wins.
pub fn install(hooks: TraceHooks) {
    let _ = HOOKS.set(hooks);
}

/// The `traceparent` of the current span, when a back end is installed and
/// the span is traced: what a push writes into the job.
pub fn current_traceparent() -> Option<String> {
    HOOKS.get().and_then(|h| (h.current)())
}

/// Records `traceparent` on the stint's `span` (its `traceparent` field)
/// and makes it the span's parent when a back end is installed. An
/// invalid value is ignored.
pub fn adopt(span: &tracing::Span, traceparent: &str) {
    if !is_valid(traceparent) {
        return;
    }
    span.record("traceparent", tracing::field::display(traceparent));
    if let Some(h) = HOOKS.get() {
        (h.set_parent)(span, traceparent);
    }
}

/// Whether `tp` is a W3C `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`,
/// trace and span ids not all zeros.
pub fn is_valid(tp: &str) -> bool {
    let parts: Vec<&str> = tp.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() >= 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3c_traceparents_are_told_from_garbage() {
        assert!(is_valid(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid(
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid("not a traceparent"));
    }
}

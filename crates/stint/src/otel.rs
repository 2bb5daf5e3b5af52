//! OpenTelemetry (feature `otel`): stint's spans exported over OTLP/HTTP.
//!
//! Every stint runs in a `stint` span with `jid`, `kind`, `queue`,
//! `attempt` and `stint` (the stint number); the runtime's events and the
//! job's own `tracing` events are inside it. [`layer`] turns those spans
//! into OpenTelemetry spans sent to a collector; the application installs
//! it in its subscriber, next to its log output:
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt as _;
//! use tracing_subscriber::util::SubscriberInitExt as _;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // OTLP/HTTP to $OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318)
//! let (otel, _flush_at_exit) = stint::otel::layer("import-worker")?;
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::EnvFilter::new("info"))
//!     .with(tracing_subscriber::fmt::layer())
//!     .with(otel)
//!     .init();
//! // … Worker::builder(store)…run().await
//! # Ok(()) }
//! ```
//!
//! Trace context: a job carrying a W3C `traceparent` (pushed inside a
//! traced span by stint, or by a Ruby app with
//! opentelemetry-instrumentation-sidekiq) runs its stint's span as a child
//! of the pusher's span, and a stint push inside a traced span writes the
//! span's `traceparent` into the job (once [`layer`] has been called; see
//! `stint_core::trace`).
//!
//! The exporter reads the standard `OTEL_EXPORTER_OTLP_*` variables
//! (endpoint, headers, timeout); `OTEL_SERVICE_NAME` overrides the service
//! name given here.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::registry::LookupSpan;

pub use opentelemetry_otlp::ExporterBuildError;

/// Flushes the spans not yet sent and stops the exporter when dropped:
/// keep it until the worker has stopped.
#[must_use = "dropping the guard stops the exporter"]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl OtelGuard {
    /// The tracer provider, for spans of the application's own.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("stint: OpenTelemetry exporter did not shut down cleanly: {e}");
        }
    }
}

/// A `tracing` layer exporting spans over OTLP/HTTP (protobuf) in batches,
/// as service `service_name`, and the guard that flushes them at exit.
pub fn layer<S>(
    service_name: &str,
) -> Result<(OpenTelemetryLayer<S, SdkTracer>, OtelGuard), ExporterBuildError>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("stint");
    stint_core::trace::install(stint_core::trace::TraceHooks {
        current: current_traceparent,
        set_parent,
    });
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        OtelGuard { provider },
    ))
}

/// The W3C `traceparent` of the current span, when it is traced: what a
/// push inside it writes into the job.
fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes the trace context `traceparent` (a job's) the parent of `span`
/// (its stint's).
fn set_parent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    // Fails only when the span is not exported (no OpenTelemetry layer).
    let _ = span.set_parent(cx);
}

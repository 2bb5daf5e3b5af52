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
//! The exporter reads the standard `OTEL_EXPORTER_OTLP_*` variables
//! (endpoint, headers, timeout); `OTEL_SERVICE_NAME` overrides the service
//! name given here.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
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
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        OtelGuard { provider },
    ))
}

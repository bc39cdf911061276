//! OpenTelemetry tracing of checks: one span per check, parented by the W3C `traceparent` the
//! proxy forwarded, exported over OTLP/HTTP (protobuf) when `tracing` is configured.
//!
//! Off by default. When off, [`Tracing`] is never built and the gate's hot path is one branch on
//! an `Option`: no span object, no header parsing.
//!
//! Only facts the server decided are recorded (decision, reason, rule, the normalized method):
//! never a token, a certificate or a header value. Only `traceparent` is read; `tracestate` (free
//! text a client may choose) is not propagated.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

use mesh_authz_core::check::{Decision, DenyStatus, Request};
use mesh_authz_core::config::TracingConfig;

/// The span every check gets.
pub const SPAN_NAME: &str = "mesh_authz.check";
/// Attribute: `allow` or `deny`.
pub const ATTR_DECISION: &str = "mesh_authz.decision";
/// Attribute: the reason (`ok` on allow), as in `mesh_authz_checks_total`.
pub const ATTR_REASON: &str = "mesh_authz.reason";
/// Attribute: the name of the rule that decided, when one matched.
pub const ATTR_RULE: &str = "mesh_authz.rule";
/// Attribute: the request method, normalized as OpenTelemetry's HTTP conventions say.
pub const ATTR_METHOD: &str = "http.request.method";

/// How long an export may take before the batch is dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest shutdown waits for the last spans to be exported.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("tracing.otlp_endpoint: {0}")]
pub struct TracingError(String);

/// The tracer provider and its tracer, built once at start (a restart-only setting).
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing").finish_non_exhaustive()
    }
}

impl Tracing {
    /// Builds the OTLP/HTTP exporter and a batching tracer provider for `config`. Spans go to
    /// `{otlp_endpoint}/v1/traces`; a trace whose parent was sampled is sampled, a new trace with
    /// probability `sample_ratio`.
    pub fn new(config: &TracingConfig) -> Result<Self, TracingError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_url(&config.otlp_endpoint))
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TracingError(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("mesh-authz");
        Ok(Self {
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
        })
    }

    /// Starts the span of one check, child of the request's `traceparent` when it has a valid
    /// one (otherwise the root of a new trace).
    pub fn start(&self, req: &Request) -> CheckSpan {
        let parent = self
            .propagator
            .extract_with_context(&Context::new(), &TraceparentOnly(&req.headers));
        let span = self
            .tracer
            .span_builder(SPAN_NAME)
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new(ATTR_METHOD, method(&req.method))])
            .start_with_context(&self.tracer, &parent);
        let trace_id = span.span_context().trace_id().to_string();
        CheckSpan { span, trace_id }
    }

    /// Exports what is buffered and stops the exporter, waiting at most [`SHUTDOWN_TIMEOUT`] for
    /// an unreachable collector (blocking; call off the async runtime).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(error = %e, "tracing exporter shutdown failed");
        }
    }
}

/// The span of one check in progress.
pub struct CheckSpan {
    span: opentelemetry_sdk::trace::Span,
    trace_id: String,
}

impl CheckSpan {
    /// The trace id, 32 lower-case hex digits (for the log line).
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// Records the decision and ends the span.
    pub fn finish(mut self, decision: &Decision) {
        let (name, rule) = match decision {
            Decision::Allow(a) => ("allow", a.rule.as_deref()),
            Decision::Deny(d) => ("deny", d.rule.as_deref()),
        };
        self.span.set_attribute(KeyValue::new(ATTR_DECISION, name));
        self.span
            .set_attribute(KeyValue::new(ATTR_REASON, decision.reason()));
        if let Some(rule) = rule {
            self.span
                .set_attribute(KeyValue::new(ATTR_RULE, rule.to_string()));
        }
        // A dependency failure is an error of ours; an ordinary denial is not.
        if let Decision::Deny(d) = decision
            && d.status == DenyStatus::Unavailable
        {
            self.span.set_status(Status::error(d.reason));
        }
        self.span.end();
    }
}

/// `{endpoint}/v1/traces`, as OTLP/HTTP names the traces path under a base endpoint.
fn traces_url(endpoint: &str) -> String {
    format!("{}/v1/traces", endpoint.trim_end_matches('/'))
}

/// The method as OpenTelemetry's HTTP conventions record it: a known method as is, any other
/// `_OTHER` (the method is client-chosen; an arbitrary string would be stored verbatim).
fn method(m: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN.iter().find(|k| **k == m).copied().unwrap_or("_OTHER")
}

/// Shows the propagator `traceparent` and nothing else.
struct TraceparentOnly<'a>(&'a HashMap<String, String>);

impl Extractor for TraceparentOnly<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == "traceparent" {
            self.0.get(key).map(String::as_str)
        } else {
            None
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_path_is_appended_once() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
    }

    #[test]
    fn unknown_methods_are_other() {
        assert_eq!(method("GET"), "GET");
        assert_eq!(method("get"), "_OTHER");
        assert_eq!(method("X-BEARER-eyJhbGciOi"), "_OTHER");
    }
}

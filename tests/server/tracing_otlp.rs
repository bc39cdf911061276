//! Tracing end to end: a real mesh-authz server exports its check spans over OTLP/HTTP to a
//! receiver this test runs, parented by the `traceparent` of each check; the denial log line
//! names the trace id; with `tracing` absent nothing is exported and `traceparent` is not read.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::common::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const SPIFFE_OK: &str = "spiffe://cluster.local/ns/shop/sa/frontend";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// Received spans, each with its resource's `service.name`.
type Spans = Arc<Mutex<Vec<(String, Span)>>>;

/// An OTLP/HTTP (protobuf) traces receiver: every span POSTed to `/v1/traces`, with the
/// `service.name` of its resource.
struct Receiver {
    addr: SocketAddr,
    spans: Spans,
}

impl Receiver {
    async fn start() -> Receiver {
        let spans: Spans = Arc::default();
        let app = axum::Router::new()
            .route("/v1/traces", post(receive))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, spans }
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let mut spans = spans.lock().unwrap();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.clone());
        let service = match service {
            Some(AnyValue::StringValue(s)) => s,
            _ => String::new(),
        };
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push((service.clone(), span));
            }
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

/// The span's string attributes.
fn attributes(span: &Span) -> Vec<(String, String)> {
    span.attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                Some(AnyValue::StringValue(s)) => s,
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    attributes(span)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Every log line of this test binary, as JSON, captured by one global subscriber.
fn logs() -> &'static crate::common::logs::Logs {
    crate::common::logs::Logs::global()
}

/// The `check denied` lines whose request id is `request_id`.
fn denials(request_id: &str) -> Vec<serde_json::Value> {
    let text = String::from_utf8(logs().buffer().lock().unwrap().clone()).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"] == "check denied" && v["fields"]["request_id"] == request_id
        })
        .collect()
}

fn config(jwks_uri: &str, tracing: &str) -> String {
    format!(
        r#"
server: {{ drain_delay: 0s }}
providers:
  - name: corp
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ uri: "{jwks_uri}" }}
identity:
  trust_domains: [cluster.local]
{tracing}
rules:
  - name: api
    match: {{ path_prefix: /api }}
    require: {{ token: true, peer: true }}
default_action: deny
"#
    )
}

fn traceparent(span_id: &str) -> String {
    format!("00-{TRACE_ID}-{span_id}-01")
}

#[tokio::test]
async fn check_spans_are_exported_as_children_of_the_traceparent() {
    logs();
    let receiver = Receiver::start().await;
    let tracing = format!(
        "tracing: {{ otlp_endpoint: \"http://{}\", service_name: authz-test }}",
        receiver.addr
    );
    let mut e = Env::start(|uri| config(uri, &tracing)).await;
    let token = mint(&e.key, "alice", |_| {});

    let allowed = Req::get("/api/orders")
        .bearer(&token)
        .principal(SPIFFE_OK)
        .header("traceparent", &traceparent(PARENT_ID));
    assert_eq!(verdict(&check(&mut e.client, allowed).await).0, 200);
    // Denied (a token is required); the request still carries the token in another header.
    let denied = Req::get("/api/orders")
        .method("DELETE")
        .principal(SPIFFE_OK)
        .header("x-leak", &token)
        .header("traceparent", &traceparent("00f067aa0ba902b8"));
    assert_eq!(verdict(&check(&mut e.client, denied).await).0, 401);
    // A malformed traceparent: a new root trace, not an error.
    let bad = Req::get("/api/orders")
        .bearer(&token)
        .principal(SPIFFE_OK)
        .method("BREW")
        .header("traceparent", "00-zz-1-01");
    assert_eq!(verdict(&check(&mut e.client, bad).await).0, 200);

    // Shutdown exports what the batch processor still holds.
    e.server.shutdown().await;
    let spans = receiver.spans();
    assert_eq!(spans.len(), 3, "{spans:?}");
    let hex = |b: &[u8]| hex::encode(b);
    for (service, span) in &spans {
        assert_eq!(service, "authz-test");
        assert_eq!(span.name, "mesh_authz.check");
        for (k, v) in attributes(span) {
            assert!(!v.contains(&token), "attribute {k} carries the token");
            assert!(!v.contains(&token[..20]), "attribute {k} carries the token");
        }
    }
    let by_parent = |p: &str| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| hex(&s.parent_span_id) == p)
            .unwrap_or_else(|| panic!("no span with parent {p}: {spans:?}"))
    };
    let allow = by_parent(PARENT_ID);
    assert_eq!(hex(&allow.trace_id), TRACE_ID);
    assert_eq!(
        attribute(allow, "mesh_authz.decision").as_deref(),
        Some("allow")
    );
    assert_eq!(attribute(allow, "mesh_authz.reason").as_deref(), Some("ok"));
    assert_eq!(attribute(allow, "mesh_authz.rule").as_deref(), Some("api"));
    assert_eq!(
        attribute(allow, "http.request.method").as_deref(),
        Some("GET")
    );

    let deny = by_parent("00f067aa0ba902b8");
    assert_eq!(hex(&deny.trace_id), TRACE_ID);
    assert_eq!(
        attribute(deny, "mesh_authz.decision").as_deref(),
        Some("deny")
    );
    assert_eq!(
        attribute(deny, "mesh_authz.reason").as_deref(),
        Some("token_missing")
    );
    assert_eq!(attribute(deny, "mesh_authz.rule").as_deref(), Some("api"));
    assert_eq!(
        attribute(deny, "http.request.method").as_deref(),
        Some("DELETE")
    );

    let root = by_parent("");
    assert_ne!(hex(&root.trace_id), TRACE_ID);
    assert_eq!(hex(&root.trace_id).len(), 32);
    assert_eq!(
        attribute(root, "http.request.method").as_deref(),
        Some("_OTHER")
    );
}

#[tokio::test]
async fn the_denial_log_line_names_the_trace_id() {
    logs();
    let receiver = Receiver::start().await;
    let tracing = format!("tracing: {{ otlp_endpoint: \"http://{}\" }}", receiver.addr);
    let mut e = Env::start(|uri| config(uri, &tracing)).await;
    let denied = Req::get("/api/orders")
        .principal(SPIFFE_OK)
        .header("x-request-id", "traced-denial")
        .header("traceparent", &traceparent(PARENT_ID));
    assert_eq!(verdict(&check(&mut e.client, denied).await).0, 401);
    let lines = denials("traced-denial");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["fields"]["trace_id"], TRACE_ID, "{}", lines[0]);
    e.server.shutdown().await;
    assert_eq!(receiver.spans().len(), 1);
}

#[tokio::test]
async fn with_tracing_off_nothing_is_exported_and_traceparent_is_not_read() {
    logs();
    let receiver = Receiver::start().await;
    let mut e = Env::start(|uri| config(uri, "")).await;
    let token = mint(&e.key, "alice", |_| {});
    let allowed = Req::get("/api/orders")
        .bearer(&token)
        .principal(SPIFFE_OK)
        .header("traceparent", &traceparent(PARENT_ID));
    assert_eq!(verdict(&check(&mut e.client, allowed).await).0, 200);
    let denied = Req::get("/api/orders")
        .principal(SPIFFE_OK)
        .header("x-request-id", "untraced-denial")
        .header("traceparent", &traceparent(PARENT_ID));
    assert_eq!(verdict(&check(&mut e.client, denied).await).0, 401);
    let lines = denials("untraced-denial");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["fields"]["trace_id"], "", "{}", lines[0]);
    e.server.shutdown().await;
    assert!(receiver.spans().is_empty());
}

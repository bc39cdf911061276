//! Envoy ext_authz v3 over gRPC: `envoy.service.auth.v3.Authorization/Check`.
//!
//! Converts a `CheckRequest` into a [`check::Request`] and a [`Decision`] into a `CheckResponse`.
//! Every decision, bad input and dependency failure included, is an `Ok(CheckResponse)`: a gRPC
//! error status is what Envoy's `failure_mode_allow` would turn into an allow.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value as PbValue, value::Kind};
use envoy_types::pb::google::rpc;
use serde_json::Value;
use tonic::{Request as GrpcRequest, Response, Status};

use super::gate::{Gate, parse_grpc_timeout};
use crate::check::{self, Decision, DenyStatus, PeerInfo};

/// gRPC status codes (google.rpc.Code) used in `CheckResponse.status`.
const CODE_OK: i32 = 0;
const CODE_PERMISSION_DENIED: i32 = 7;
const CODE_UNAVAILABLE: i32 = 14;
const CODE_UNAUTHENTICATED: i32 = 16;

/// Namespace of our dynamic metadata, for Envoy's access logs and later filters.
pub const METADATA_KEY: &str = "mesh_authz";

/// The gRPC deadline header a client (Envoy) sends with each call.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The ext_authz gRPC service.
pub struct AuthzService {
    gate: Arc<Gate>,
}

impl AuthzService {
    /// Serves checks through `gate` (the current checker, concurrency limit and deadline).
    pub fn new(gate: Arc<Gate>) -> Self {
        Self { gate }
    }
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    async fn check(
        &self,
        request: GrpcRequest<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        // Envoy's ext_authz `timeout` arrives as `grpc-timeout`; the answer must beat it.
        let deadline = request
            .metadata()
            .get(GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let req = to_check_request(request.into_inner());
        let decision = self.gate.check(&req, deadline).await;
        Ok(Response::new(to_check_response(decision)))
    }
}

pub use crate::clock::unix_now;

/// Converts Envoy's attributes to the transport-free request. Missing parts stay empty, which
/// no path rule matches (so the default action, deny unless configured, applies).
pub fn to_check_request(req: CheckRequest) -> check::Request {
    let attrs = req.attributes.unwrap_or_default();
    let source = attrs.source.unwrap_or_default();
    let http = attrs.request.and_then(|r| r.http).unwrap_or_default();
    let mut headers: HashMap<String, String> = http
        .headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    // With `encode_raw_headers`, Envoy sends `header_map` (bytes) instead of `headers`. Values that
    // are not UTF-8 are kept lossily: they can only fail the checks that read them.
    if let Some(map) = http.header_map {
        for h in map.headers {
            let value = if h.raw_value.is_empty() {
                h.value
            } else {
                String::from_utf8_lossy(&h.raw_value).into_owned()
            };
            headers
                .entry(h.key.to_ascii_lowercase())
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(&value);
                })
                .or_insert(value);
        }
    }
    let path = match http.path.split_once('?') {
        Some((p, _)) => p.to_string(),
        None => http.path,
    };
    let request_id = if http.id.is_empty() {
        headers.get("x-request-id").cloned()
    } else {
        Some(http.id)
    };
    let host = if http.host.is_empty() {
        headers.get(":authority").cloned().unwrap_or_default()
    } else {
        http.host
    };
    check::Request {
        method: http.method.to_ascii_uppercase(),
        host,
        path,
        headers,
        peer: PeerInfo {
            principal: source.principal,
            certificate: source.certificate,
        },
        request_id,
    }
}

/// Converts a decision to Envoy's response.
pub fn to_check_response(decision: Decision) -> CheckResponse {
    match decision {
        Decision::Allow(allow) => CheckResponse {
            status: Some(rpc::Status {
                code: CODE_OK,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: allow
                    .set_headers
                    .into_iter()
                    .map(|(k, v)| overwrite(k, v))
                    .collect(),
                headers_to_remove: allow.remove_headers,
                ..Default::default()
            })),
            dynamic_metadata: if allow.metadata.is_empty() {
                None
            } else {
                Some(metadata(Value::Object(allow.metadata)))
            },
        },
        Decision::Deny(deny) => {
            let code = match deny.status {
                DenyStatus::Unauthorized => CODE_UNAUTHENTICATED,
                DenyStatus::Forbidden => CODE_PERMISSION_DENIED,
                DenyStatus::Unavailable => CODE_UNAVAILABLE,
            };
            let mut headers = vec![overwrite("content-type".into(), "application/json".into())];
            if let Some(challenge) = deny.www_authenticate {
                headers.push(overwrite("www-authenticate".into(), challenge.into()));
            }
            let mut facts = serde_json::Map::new();
            facts.insert("reason".into(), Value::String(deny.reason.into()));
            if let Some(rule) = deny.rule {
                facts.insert("rule".into(), Value::String(rule));
            }
            CheckResponse {
                status: Some(rpc::Status {
                    code,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus {
                        code: i32::from(deny.status.code()),
                    }),
                    headers,
                    body: deny.status.body().to_string(),
                })),
                dynamic_metadata: Some(metadata(Value::Object(facts))),
            }
        }
    }
}

/// A header mutation that replaces any client-sent copy (the protobuf default appends).
fn overwrite(key: String, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key,
            value,
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

fn metadata(facts: Value) -> Struct {
    let mut fields = HashMap::new();
    fields.insert(METADATA_KEY.to_string(), to_pb(facts));
    Struct { fields }
}

/// JSON → protobuf `Value`.
fn to_pb(v: Value) -> PbValue {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(to_pb).collect(),
        }),
        Value::Object(map) => Kind::StructValue(Struct {
            fields: map.into_iter().map(|(k, v)| (k, to_pb(v))).collect(),
        }),
    };
    PbValue { kind: Some(kind) }
}

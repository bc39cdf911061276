//! Envoy ext_authz v3 over gRPC: `envoy.service.auth.v3.Authorization/Check`.
//!
//! Converts a `CheckRequest` into a [`check::Request`] and a [`Decision`] into a `CheckResponse`.
//! Every outcome, bad input and dependency failure included, is a `CheckResponse` with gRPC
//! status OK: a gRPC error status is what Envoy's `failure_mode_allow` would turn into an allow.
//!
//! That is why Check is not served by tonic's generated server: tonic answers a message it cannot
//! decode (a string that is not UTF-8, nesting past prost's depth limit, a message over its size
//! limit, a compressed one) and a body that arrives after its `grpc-timeout` with gRPC errors,
//! before any handler runs. [`serve_check`] reads and decodes the request itself, under its own
//! size limit and under the deadline the [`Gate`] sets when the headers arrive, and answers each of
//! those with a deny: 403 [`REASON_REQUEST_INVALID`] or 503 `deadline_exceeded`.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue as HttpHeaderValue, StatusCode, header};
use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue,
    HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value as PbValue, value::Kind};
use envoy_types::pb::google::rpc;
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::Frame;
use prost::Message;
use serde_json::Value;
use tokio::time::Instant;

pub(crate) use super::gate::REASON_REQUEST_INVALID;
use super::gate::{Gate, REASON_DEADLINE, parse_grpc_timeout, within};
use mesh_authz_core::check::{self, Decision, DenyStatus, PeerInfo};

/// gRPC status codes (google.rpc.Code) used in `CheckResponse.status`.
const CODE_OK: i32 = 0;
const CODE_PERMISSION_DENIED: i32 = 7;
const CODE_UNAVAILABLE: i32 = 14;
const CODE_UNAUTHENTICATED: i32 = 16;

/// Namespace of our dynamic metadata, for Envoy's access logs and later filters.
pub(crate) const METADATA_KEY: &str = "mesh_authz";

/// The gRPC deadline header a client (Envoy) sends with each call.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The HTTP/2 path of ext_authz's Check method.
pub(crate) const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The largest `CheckRequest` accepted, in bytes (tonic's default decode limit). A larger one is
/// denied with [`REASON_REQUEST_INVALID`] without being buffered.
pub(crate) const MAX_CHECK_REQUEST_BYTES: usize = 4 << 20;

/// The 5-byte gRPC message prefix: compression flag, then the length (big-endian u32).
const FRAME_PREFIX: usize = 5;

/// Why a Check's request could not be read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// The body did not arrive by the deadline.
    #[error("the request did not arrive before its deadline")]
    Deadline,
    /// The body is not one valid, uncompressed, small enough `CheckRequest`.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Answers one Check (HTTP/2 POST to [`CHECK_PATH`]) with a `CheckResponse`, whatever the request
/// holds. The deadline is fixed when the headers arrive (here): `limits.check_timeout`, or the
/// client's `grpc-timeout` less a margin when shorter; a malformed `grpc-timeout` (tonic would
/// read `+100m` as 100 ms, the gRPC spec allows only up to 8 digits and a unit) is denied at once.
pub(crate) async fn serve_check(
    gate: &Gate,
    request: axum::extract::Request,
) -> axum::response::Response {
    let grpc_timeout = match request.headers().get(GRPC_TIMEOUT) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(parse_grpc_timeout)
            .map(Some)
            .ok_or(()),
    };
    let decision = match grpc_timeout {
        Err(()) => {
            tracing::debug!("malformed grpc-timeout");
            gate.reject(REASON_REQUEST_INVALID)
        }
        Ok(timeout) => {
            let until = gate.deadline(timeout);
            match read_check_request(request.into_body(), until).await {
                Ok(req) => gate.check_until(&to_check_request(req), until).await,
                Err(ReadError::Deadline) => gate.reject(REASON_DEADLINE),
                Err(e @ ReadError::Invalid(_)) => {
                    tracing::debug!(error = %e, "unreadable CheckRequest");
                    gate.reject(REASON_REQUEST_INVALID)
                }
            }
        }
    };
    grpc_ok(&to_check_response(decision))
}

/// Reads the body (one uncompressed gRPC message of at most [`MAX_CHECK_REQUEST_BYTES`]) by
/// `until` and decodes it.
async fn read_check_request(body: Body, until: Instant) -> Result<CheckRequest, ReadError> {
    let limited = Limited::new(body, FRAME_PREFIX + MAX_CHECK_REQUEST_BYTES);
    let bytes = match within(until, limited.collect()).await {
        None => return Err(ReadError::Deadline),
        // Over the limit, or the stream was reset.
        Some(Err(e)) => return Err(ReadError::Invalid(format!("body: {e}"))),
        Some(Ok(collected)) => collected.to_bytes(),
    };
    let Some((prefix, message)) = bytes.split_at_checked(FRAME_PREFIX) else {
        return Err(ReadError::Invalid("no gRPC message".into()));
    };
    let [flag, len @ ..] = prefix else {
        return Err(ReadError::Invalid("no gRPC message".into()));
    };
    if *flag != 0 {
        // No `grpc-accept-encoding` is advertised, so no client may compress.
        return Err(ReadError::Invalid("compressed message".into()));
    }
    let mut be = [0u8; 4];
    be.copy_from_slice(len);
    if usize::try_from(u32::from_be_bytes(be)).ok() != Some(message.len()) {
        return Err(ReadError::Invalid(
            "not exactly one gRPC message in the body".into(),
        ));
    }
    CheckRequest::decode(message).map_err(|e| ReadError::Invalid(format!("decode: {e}")))
}

/// A gRPC OK answer carrying `response`: one length-prefixed message, then `grpc-status: 0`.
fn grpc_ok(response: &CheckResponse) -> axum::response::Response {
    // Encoded straight after its prefix: one buffer, no copy.
    let len = response.encoded_len();
    let mut frame = Vec::with_capacity(FRAME_PREFIX + len);
    frame.push(0);
    // A CheckResponse is a few hundred bytes; it cannot reach 4 GiB.
    frame.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    // Cannot fail: the buffer grows as needed (and was sized for the message).
    let _ = response.encode(&mut frame);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HttpHeaderValue::from_static("0"));
    let frames = [
        Ok::<_, Infallible>(Frame::data(Bytes::from(frame))),
        Ok(Frame::trailers(trailers)),
    ];
    let body = Body::new(StreamBody::new(futures_util::stream::iter(frames)));
    let mut out = axum::response::Response::new(body);
    *out.status_mut() = StatusCode::OK;
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HttpHeaderValue::from_static("application/grpc"),
    );
    out
}

/// Converts Envoy's attributes to the transport-free request. Missing parts stay empty, which
/// no path rule matches (so the default action, deny unless configured, applies).
pub(crate) fn to_check_request(req: CheckRequest) -> check::Request {
    let attrs = req.attributes.unwrap_or_default();
    let source = attrs.source.unwrap_or_default();
    let http = attrs.request.and_then(|r| r.http).unwrap_or_default();
    // Envoy sends header names in lower case (HTTP/2 and its HTTP/1 codec both lower them): the
    // decoded map is then used as it is, without rebuilding it.
    let mut headers = if http.headers.keys().any(|k| has_upper(k)) {
        http.headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()
    } else {
        http.headers
    };
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
    let mut path = http.path;
    if let Some(query) = path.find('?') {
        path.truncate(query);
    }
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
    let mut method = http.method;
    method.make_ascii_uppercase();
    check::Request {
        method,
        host,
        path,
        headers,
        peer: PeerInfo {
            principal: source.principal,
            certificate: source.certificate,
            connection: None,
        },
        request_id,
        // Set by Envoy from the route's `check_settings`; no request header reaches this map.
        context_extensions: attrs.context_extensions,
    }
}

fn has_upper(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_uppercase())
}

/// Converts a decision to Envoy's response.
pub(crate) fn to_check_response(decision: Decision) -> CheckResponse {
    match decision {
        Decision::Allow(allow) => {
            // Empty (no allocation) unless `allow_metadata`, `claims_to_metadata` or a dry run.
            let facts = allow.metadata_facts();
            let (set, remove) = allow.into_header_mutations();
            CheckResponse {
                status: Some(rpc::Status {
                    code: CODE_OK,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: set.into_iter().map(|(k, v)| overwrite(k, v)).collect(),
                    headers_to_remove: remove,
                    ..Default::default()
                })),
                dynamic_metadata: (!facts.is_empty()).then(|| metadata(Value::Object(facts))),
            }
        }
        Decision::Deny(deny) => {
            let code = match deny.status {
                DenyStatus::Unauthorized => CODE_UNAUTHENTICATED,
                DenyStatus::Forbidden => CODE_PERMISSION_DENIED,
                DenyStatus::Unavailable => CODE_UNAVAILABLE,
            };
            let headers = deny
                .response_headers()
                .into_iter()
                .map(|(k, v)| overwrite(k.into(), v.into()))
                .collect();
            let facts = deny.metadata_facts();
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

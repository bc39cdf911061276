//! Envoy ext_authz over HTTP (`http_service`), served under [`CHECK_PREFIX`] on the HTTP listener.
//!
//! Envoy sends one authorization request per client request: the original method, the original
//! path (query included) appended to its `path_prefix` (`/check/orders/42?x=1`), the client
//! headers its `allowed_headers` select, and no body. This adapter builds the same transport-free
//! [`check::Request`] the gRPC adapter builds and asks the same [`Checker`](mesh_authz_core::check::Checker):
//!
//! * allow → `200`, each header to set as a response header (Envoy copies those its
//!   `allowed_upstream_headers` match onto the upstream request, overwriting the client's), and
//!   [`HEADERS_TO_REMOVE`] listing the headers Envoy must strip upstream;
//! * deny → the decision's status (401, 403, 503), `content-type`, `www-authenticate` when the
//!   decision has a challenge, and the generic body (Envoy passes them to the client as its
//!   `allowed_client_headers` select).
//!
//! Envoy's HTTP client cannot forward the peer certificate or principal, so the peer identity can
//! only come from `x-forwarded-client-cert`, and only when the config trusts it
//! (`identity.trust_xfcc: true`, `sources: [xfcc]`) behind an Envoy that sets it
//! (`forward_client_cert_details: SANITIZE_SET`). Note that Envoy treats any 5xx answer as a
//! failure of the authorization service, not as a decision: a fail-closed 503 reaches the client
//! as Envoy's `status_on_error`, and becomes an allow under `failure_mode_allow: true`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use super::http::HttpState;
use mesh_authz_core::check::answer::HeaderMutation;
use mesh_authz_core::check::{self, Decision, Denied, DenyStatus, PeerInfo};

/// The path prefix Envoy's `http_service.path_prefix` must be set to.
pub(crate) const CHECK_PREFIX: &str = "/check";

/// The response header through which an HTTP authorization service tells Envoy which request
/// headers to remove upstream (a comma-separated list).
pub(crate) const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// The `/check` routes; every method is accepted, since Envoy forwards the original one.
pub(crate) fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route(CHECK_PREFIX, any(check_handler))
        .route("/check/", any(check_handler))
        .route("/check/{*original}", any(check_handler))
}

async fn check_handler(
    State(state): State<Arc<HttpState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let req = to_check_request(&method, &uri, &headers);
    // Envoy's HTTP client sends no deadline: `limits.check_timeout` bounds the check.
    let decision = state.gate.check(&req, None).await;
    to_response(&decision)
}

/// Converts Envoy's authorization request into the transport-free request: the original path is
/// what follows [`CHECK_PREFIX`] (query stripped, `/` when empty), the host is the `Host` header
/// (or the URI authority under HTTP/2), repeated headers are joined with `,` as Envoy does, and
/// the peer is empty: identity can only come from a trusted XFCC header.
pub(crate) fn to_check_request(method: &Method, uri: &Uri, headers: &HeaderMap) -> check::Request {
    let path = original_path(uri.path());
    let mut map: HashMap<String, String> = HashMap::new();
    for name in headers.keys() {
        // Values that are not UTF-8 are kept lossily: they can only fail the checks that read them.
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(",");
        map.insert(name.as_str().to_string(), joined);
    }
    let host = map
        .get("host")
        .cloned()
        .or_else(|| uri.authority().map(|a| a.as_str().to_string()))
        .unwrap_or_default();
    let request_id = map.get("x-request-id").cloned();
    check::Request {
        method: method.as_str().to_ascii_uppercase(),
        host,
        path,
        headers: map,
        peer: PeerInfo::default(),
        request_id,
        // HTTP ext_authz has no way to carry `context_extensions`: a `match.context` never matches.
        context_extensions: HashMap::new(),
    }
}

/// The original request path: what follows [`CHECK_PREFIX`]. A path outside the prefix (never
/// routed here) yields an empty path, which no rule matches.
fn original_path(path: &str) -> String {
    match path.strip_prefix(CHECK_PREFIX) {
        Some("") => "/".to_string(),
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => String::new(),
    }
}

/// Converts a decision to Envoy's HTTP ext_authz answer.
pub(crate) fn to_response(decision: &Decision) -> Response {
    match decision {
        Decision::Allow(allow) => {
            let mut out = HeaderMap::new();
            let mut remove: Vec<&str> = Vec::new();
            for mutation in allow.header_mutations() {
                let (name, value) = match mutation {
                    HeaderMutation::Set(name, value) => (name, value),
                    HeaderMutation::Remove(name) => {
                        remove.push(name);
                        continue;
                    }
                };
                let Ok(name_h) = HeaderName::from_bytes(name.as_bytes()) else {
                    // Names come from the validated config; refuse rather than let a client copy
                    // of an injectable header through.
                    tracing::error!(header = %name, "injected header name is not valid HTTP");
                    return unencodable_allow();
                };
                match HeaderValue::from_str(value) {
                    Ok(v) => {
                        out.insert(name_h, v);
                    }
                    // A value we cannot send is removed upstream, never left to the client.
                    Err(_) => remove.push(name),
                }
            }
            if !remove.is_empty() {
                match HeaderValue::from_str(&remove.join(",")) {
                    Ok(v) => {
                        out.insert(HeaderName::from_static(HEADERS_TO_REMOVE), v);
                    }
                    Err(_) => {
                        tracing::error!("headers-to-remove list is not a valid header value");
                        return unencodable_allow();
                    }
                }
            }
            (StatusCode::OK, out).into_response()
        }
        Decision::Deny(deny) => deny_response(deny),
    }
}

/// An allow that cannot be written as HTTP (a configured header name or the removal list that
/// HTTP cannot carry): refused, so that no client copy of an injectable header gets through. The
/// allow was already counted and logged by the check; this answer carries no reason.
fn unencodable_allow() -> Response {
    deny_response(&Denied::new(
        DenyStatus::Forbidden,
        "answer_unencodable",
        None,
    ))
}

fn deny_response(deny: &Denied) -> Response {
    let code = StatusCode::from_u16(deny.status.code()).unwrap_or(StatusCode::FORBIDDEN);
    let mut out = HeaderMap::new();
    for (name, value) in deny.response_headers() {
        out.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    (code, out, deny.status.body()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;
    use mesh_authz_core::check::{Allowed, Denied};

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn original_path_is_what_follows_the_prefix_without_query() {
        let h = HeaderMap::new();
        for (u, want) in [
            ("/check/api/orders?x=1&y=2", "/api/orders"),
            ("/check/api/orders", "/api/orders"),
            ("/check", "/"),
            ("/check?q", "/"),
            ("/check/", "/"),
            ("/check//double", "//double"),
            ("/check/a%2Fb", "/a%2Fb"),
            ("/checkout", ""),
            ("/other", ""),
        ] {
            assert_eq!(
                to_check_request(&Method::GET, &uri(u), &h).path,
                want,
                "{u}"
            );
        }
    }

    #[test]
    fn headers_host_method_and_request_id_are_carried() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("orders.svc"));
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        h.insert("x-request-id", HeaderValue::from_static("rid-1"));
        h.append("x-multi", HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("b"));
        let r = to_check_request(&Method::POST, &uri("/check/x"), &h);
        assert_eq!(r.method, "POST");
        assert_eq!(r.host, "orders.svc");
        assert_eq!(r.headers["authorization"], "Bearer t");
        assert_eq!(r.headers["x-multi"], "a,b");
        assert_eq!(r.request_id.as_deref(), Some("rid-1"));
        // Envoy's HTTP client cannot send the peer: only a trusted XFCC header can identify it.
        assert!(r.peer.principal.is_empty() && r.peer.certificate.is_empty());
    }

    /// HTTP ext_authz cannot carry context extensions; a header named like a key is no context.
    #[test]
    fn no_context_extensions_over_http_whatever_the_headers_say() {
        let mut h = HeaderMap::new();
        h.insert("route", HeaderValue::from_static("public"));
        h.insert("x-envoy-context-route", HeaderValue::from_static("public"));
        let r = to_check_request(&Method::GET, &uri("/check/api"), &h);
        assert!(r.context_extensions.is_empty());
    }

    #[test]
    fn host_falls_back_to_the_uri_authority() {
        let r = to_check_request(
            &Method::GET,
            &uri("http://orders.svc:8080/check/x"),
            &HeaderMap::new(),
        );
        assert_eq!(r.host, "orders.svc:8080");
    }

    #[test]
    fn allow_sets_headers_and_lists_removals() {
        let d = Decision::Allow(Allowed {
            rule: Some("api".into()),
            set_headers: vec![
                ("x-auth-subject".into(), "alice".into()),
                ("x-auth-bad".into(), "line\nbreak".into()),
            ],
            remove_headers: vec!["x-auth-scope".into(), "authorization".into()],
            metadata: Default::default(),
            dry_run: None,
        });
        let r = to_response(&d);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-auth-subject"], "alice");
        assert!(r.headers().get("x-auth-bad").is_none());
        assert_eq!(
            r.headers()[HEADERS_TO_REMOVE],
            "x-auth-bad,x-auth-scope,authorization"
        );
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[tokio::test]
    async fn deny_carries_status_challenge_and_generic_body() {
        for (status, challenge) in [
            (
                DenyStatus::Unauthorized,
                Some(mesh_authz_core::decision::CHALLENGE_INVALID),
            ),
            (DenyStatus::Forbidden, None),
            (DenyStatus::Unavailable, None),
        ] {
            let mut denied = Denied::new(status, "some_precise_reason", Some("api"));
            denied.www_authenticate = challenge;
            let r = to_response(&Decision::Deny(denied));
            assert_eq!(r.status().as_u16(), status.code());
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
            assert_eq!(
                r.headers()
                    .get(header::WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap()),
                challenge
            );
            assert!(r.headers().get(HEADERS_TO_REMOVE).is_none());
            let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
            assert_eq!(body, status.body().as_bytes());
            assert!(!String::from_utf8_lossy(&body).contains("some_precise_reason"));
        }
    }
}

//! Shared test harness: a real JWKS HTTP server, a real mesh-authz server on 127.0.0.1:0, an
//! envoy-types gRPC client, and certificates made with rcgen.
#![allow(dead_code)]

pub mod logs;
pub mod ports;
pub mod process;

pub mod redis;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use mesh_authz::server::{self, Running};
use mesh_authz::tools::issuer::{self, GeneratedKey, MintOptions};
use mesh_authz_core::token::Algorithm;
use serde_json::{Map, Value};
use tonic::transport::Channel;

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "orders-api";

/// A JWKS served over real HTTP on loopback; its document can be swapped while it runs.
pub struct JwksServer {
    pub addr: SocketAddr,
    pub body: Arc<RwLock<String>>,
    pub hits: Arc<AtomicUsize>,
    /// Milliseconds each response is held back (to keep a check in flight).
    pub delay_ms: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct JwksState {
    body: Arc<RwLock<String>>,
    hits: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicUsize>,
}

async fn serve_jwks(State(s): State<JwksState>) -> ([(&'static str, &'static str); 1], String) {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let delay = s.delay_ms.load(Ordering::SeqCst) as u64;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let body = s.body.read().map(|b| b.clone()).unwrap_or_default();
    ([("content-type", "application/json")], body)
}

impl JwksServer {
    pub async fn start(jwks: &str) -> JwksServer {
        let body = Arc::new(RwLock::new(jwks.to_string()));
        let hits = Arc::new(AtomicUsize::new(0));
        let delay_ms = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/jwks.json", get(serve_jwks))
            .with_state(JwksState {
                body: body.clone(),
                hits: hits.clone(),
                delay_ms: delay_ms.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JwksServer {
            addr,
            body,
            hits,
            delay_ms,
        }
    }

    pub fn uri(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    pub fn set(&self, jwks: &str) {
        *self.body.write().unwrap() = jwks.to_string();
    }
}

/// Merges the `keys` arrays of several JWKS documents.
pub fn merge_jwks(docs: &[&str]) -> String {
    let mut keys = Vec::new();
    for d in docs {
        let v: Value = serde_json::from_str(d).unwrap();
        keys.extend(v["keys"].as_array().unwrap().iter().cloned());
    }
    serde_json::json!({ "keys": keys }).to_string()
}

pub fn key(alg: Algorithm, kid: &str) -> GeneratedKey {
    issuer::generate_key(alg, 2048, kid).unwrap()
}

pub fn now() -> i64 {
    mesh_authz_core::clock::unix_now()
}

/// Mints a token for the test issuer and audience; `tweak` adjusts the options.
pub fn mint(key: &GeneratedKey, sub: &str, tweak: impl FnOnce(&mut MintOptions)) -> String {
    let mut opts = MintOptions {
        iss: ISSUER.into(),
        sub: sub.into(),
        aud: vec![AUDIENCE.into()],
        ttl: Duration::from_secs(600),
        now: now(),
        kid: Some(key.kid.clone()),
        extra: Map::new(),
        ..Default::default()
    };
    tweak(&mut opts);
    issuer::mint(&key.private_pem, &opts).unwrap()
}

/// Starts mesh-authz with `yaml` (listeners on 127.0.0.1:0).
pub async fn start(yaml: &str) -> Running {
    let mut config = mesh_authz_core::config::from_str_with_env(yaml, Vec::new())
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    config.server.grpc_addr = "127.0.0.1:0".parse().unwrap();
    config.server.http_addr = "127.0.0.1:0".parse().unwrap();
    let compiled = mesh_authz_core::compile::compile(config)
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    server::start(&compiled).await.unwrap()
}

pub async fn client(addr: SocketAddr) -> AuthorizationClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    AuthorizationClient::new(channel)
}

/// One request as Envoy would describe it.
#[derive(Default, Clone)]
pub struct Req {
    pub method: &'static str,
    pub path: String,
    pub host: String,
    pub headers: HashMap<String, String>,
    pub principal: String,
    pub certificate: String,
}

impl Req {
    pub fn get(path: &str) -> Req {
        Req {
            method: "GET",
            path: path.into(),
            host: "orders.svc".into(),
            ..Default::default()
        }
    }
    pub fn bearer(mut self, token: &str) -> Req {
        self.headers
            .insert("authorization".into(), format!("Bearer {token}"));
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.insert(k.into(), v.into());
        self
    }
    pub fn principal(mut self, p: &str) -> Req {
        self.principal = p.into();
        self
    }
    pub fn cert_pem(mut self, pem: &str) -> Req {
        self.certificate =
            percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        self
    }
    pub fn method(mut self, m: &'static str) -> Req {
        self.method = m;
        self
    }
}

pub async fn check(client: &mut AuthorizationClient<Channel>, req: Req) -> CheckResponse {
    client
        .check(check_request(req))
        .await
        .expect("Check must answer with a CheckResponse")
        .into_inner()
}

/// The decision as (HTTP status, gRPC code): 200 for allow.
pub fn verdict(r: &CheckResponse) -> (u16, i32) {
    let code = r.status.as_ref().map(|s| s.code).unwrap_or(-1);
    match &r.http_response {
        Some(HttpResponse::OkResponse(_)) => (200, code),
        Some(HttpResponse::DeniedResponse(d)) => {
            (d.status.as_ref().map(|s| s.code as u16).unwrap_or(0), code)
        }
        _ => (0, code),
    }
}

/// The deny reason from our dynamic metadata.
pub fn reason(r: &CheckResponse) -> String {
    use envoy_types::pb::google::protobuf::value::Kind;
    let Some(m) = &r.dynamic_metadata else {
        return String::new();
    };
    let Some(Kind::StructValue(s)) = m.fields.get("mesh_authz").and_then(|v| v.kind.clone()) else {
        return String::new();
    };
    match s.fields.get("reason").and_then(|v| v.kind.clone()) {
        Some(Kind::StringValue(r)) => r,
        _ => String::new(),
    }
}

/// Headers an allow sets: name → (value, append_action).
pub fn set_headers(r: &CheckResponse) -> HashMap<String, (String, i32)> {
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok
            .headers
            .iter()
            .filter_map(|h| {
                h.header
                    .as_ref()
                    .map(|hv| (hv.key.clone(), (hv.value.clone(), h.append_action)))
            })
            .collect(),
        _ => HashMap::new(),
    }
}

pub fn removed_headers(r: &CheckResponse) -> Vec<String> {
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok.headers_to_remove.clone(),
        _ => Vec::new(),
    }
}

pub fn denied_header(r: &CheckResponse, name: &str) -> Option<String> {
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => d
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == name)
            .map(|h| h.value.clone()),
        _ => None,
    }
}

pub fn denied_body(r: &CheckResponse) -> String {
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => d.body.clone(),
        _ => String::new(),
    }
}

/// A test CA and leaf certificates with SPIFFE URI SANs.
pub struct Pki {
    pub ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mesh-authz test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        Pki { ca }
    }

    /// A leaf with `spiffe_id` as URI SAN; returns (cert PEM, key PEM).
    pub fn leaf(&self, spiffe_id: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::URI(spiffe_id.try_into().unwrap()));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A server leaf with `dns` as its only SAN; returns (cert PEM, key PEM).
    /// A client certificate with arbitrary URI and DNS SAN text (rcgen writes any IA5, so a SAN
    /// may carry XFCC separators): (cert PEM, key PEM).
    pub fn san_leaf(&self, uris: &[&str], dns: &[&str]) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        for u in uris {
            params.subject_alt_names.push(rcgen::SanType::URI(
                rcgen::string::Ia5String::try_from(*u).unwrap(),
            ));
        }
        for d in dns {
            params.subject_alt_names.push(rcgen::SanType::DnsName(
                rcgen::string::Ia5String::try_from(*d).unwrap(),
            ));
        }
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn server(&self, dns: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec![dns.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, dns);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }
}

pub fn thumbprint(cert_pem: &str) -> String {
    let d = mesh_authz_core::identity::certificate::sha256_of_pem(cert_pem).unwrap();
    mesh_authz_core::identity::certificate::thumbprint_b64url(&d)
}

/// A running mesh-authz with one RS256 issuer (`k1`) whose JWKS is served over real HTTP, and a
/// gRPC client to it.
pub struct Env {
    pub jwks: JwksServer,
    pub key: GeneratedKey,
    pub server: Running,
    pub client: AuthorizationClient<Channel>,
}

impl Env {
    /// Starts everything; `config` gets the JWKS URI and returns the YAML to serve.
    pub async fn start(config: impl FnOnce(&str) -> String) -> Env {
        let key = key(Algorithm::RS256, "k1");
        let jwks = JwksServer::start(&key.jwks_json).await;
        let server = start(&config(&jwks.uri())).await;
        let client = client(server.grpc_addr).await;
        Env {
            jwks,
            key,
            server,
            client,
        }
    }
}

/// A JWKS endpoint whose faults a test switches at will: `down` drops every connection at accept
/// (as if nothing listened), `delay_ms` stalls each answer, `status` answers with that HTTP status,
/// and `body` is served as is (garbage, oversized…). Every answer closes its connection, so the
/// next fetch always sees the current fault.
pub struct FaultyJwks {
    pub addr: SocketAddr,
    pub body: Arc<RwLock<String>>,
    /// Requests answered (a stalled one counts when it arrives).
    pub hits: Arc<AtomicUsize>,
    /// Connections dropped while `down`.
    pub refused: Arc<AtomicUsize>,
    pub down: Arc<std::sync::atomic::AtomicBool>,
    pub delay_ms: Arc<AtomicUsize>,
    pub status: Arc<std::sync::atomic::AtomicU16>,
}

#[derive(Clone)]
struct FaultyState {
    body: Arc<RwLock<String>>,
    hits: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicUsize>,
    status: Arc<std::sync::atomic::AtomicU16>,
}

async fn serve_faulty(
    State(s): State<FaultyState>,
) -> (
    axum::http::StatusCode,
    [(&'static str, &'static str); 2],
    String,
) {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let delay = s.delay_ms.load(Ordering::SeqCst) as u64;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = axum::http::StatusCode::from_u16(s.status.load(Ordering::SeqCst))
        .unwrap_or(axum::http::StatusCode::OK);
    let body = s.body.read().map(|b| b.clone()).unwrap_or_default();
    (
        status,
        [
            ("content-type", "application/json"),
            ("connection", "close"),
        ],
        body,
    )
}

/// A listener that drops every connection while `down` is set.
struct GatedListener {
    inner: tokio::net::TcpListener,
    down: Arc<std::sync::atomic::AtomicBool>,
    refused: Arc<AtomicUsize>,
}

impl axum::serve::Listener for GatedListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok((stream, addr)) = self.inner.accept().await {
                if self.down.load(Ordering::SeqCst) {
                    self.refused.fetch_add(1, Ordering::SeqCst);
                    drop(stream);
                    continue;
                }
                return (stream, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl FaultyJwks {
    pub async fn start(jwks: &str) -> FaultyJwks {
        let body = Arc::new(RwLock::new(jwks.to_string()));
        let hits = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicUsize::new(0));
        let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let app = Router::new()
            .route("/jwks.json", get(serve_faulty))
            .with_state(FaultyState {
                body: body.clone(),
                hits: hits.clone(),
                delay_ms: delay_ms.clone(),
                status: status.clone(),
            });
        let inner = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = inner.local_addr().unwrap();
        let listener = GatedListener {
            inner,
            down: down.clone(),
            refused: refused.clone(),
        };
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultyJwks {
            addr,
            body,
            hits,
            refused,
            down,
            delay_ms,
            status,
        }
    }

    pub fn uri(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    pub fn set(&self, jwks: &str) {
        *self.body.write().unwrap() = jwks.to_string();
    }

    /// Fetch attempts seen: answered requests plus dropped connections.
    pub fn attempts(&self) -> usize {
        self.hits.load(Ordering::SeqCst) + self.refused.load(Ordering::SeqCst)
    }
}

/// The `CheckRequest` Envoy would send for `req`.
pub fn check_request(req: Req) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                principal: req.principal,
                certificate: req.certificate,
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: req.method.into(),
                    path: req.path,
                    host: req.host,
                    headers: req.headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// One Check with a gRPC deadline (sent as `grpc-timeout`, as Envoy does); the raw result, so a
/// test can tell a CheckResponse from a gRPC error.
pub async fn check_with_deadline(
    client: &mut AuthorizationClient<Channel>,
    req: Req,
    deadline: Duration,
) -> Result<CheckResponse, tonic::Status> {
    let mut request = tonic::Request::new(check_request(req));
    request.set_timeout(deadline);
    client.check(request).await.map(tonic::Response::into_inner)
}

/// gRPC health of the whole server (service ""), as Envoy's or Kubernetes' probe asks it.
pub async fn health(
    client: &mut tonic_health::pb::health_client::HealthClient<Channel>,
) -> Result<tonic_health::pb::health_check_response::ServingStatus, tonic::Status> {
    let status = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner()
        .status;
    Ok(tonic_health::pb::health_check_response::ServingStatus::try_from(status).unwrap())
}

pub async fn health_client(
    addr: SocketAddr,
) -> tonic_health::pb::health_client::HealthClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
}

/// The value of one exact metric line (`name{labels}`) in a server's registry; 0 when absent.
pub fn metric(server: &Running, series: &str) -> f64 {
    server
        .metrics
        .render()
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Like [`check`], but also sends `raw` as Envoy's `header_map` (what `encode_raw_headers: true`
/// produces): each entry's bytes go into `raw_value`, repeated names stay separate entries.
pub async fn check_raw(
    client: &mut AuthorizationClient<Channel>,
    req: Req,
    raw: &[(&str, &[u8])],
) -> CheckResponse {
    use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
    let header_map = HeaderMap {
        headers: raw
            .iter()
            .map(|(k, v)| HeaderValue {
                key: (*k).to_string(),
                raw_value: v.to_vec(),
                ..Default::default()
            })
            .collect(),
    };
    let mut request = check_request(req);
    if let Some(http) = request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.header_map = Some(header_map);
    }
    client
        .check(request)
        .await
        .expect("Check must answer with a CheckResponse")
        .into_inner()
}

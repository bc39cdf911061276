//! The `mesh-authz` filter in a real Envoy 1.40: the ext_authz end-to-end contract
//! (`tests/envoy_e2e/e2e.rs`) with the check running in-proxy. Identity from the connection,
//! smuggled identity headers, `authorization` stripping, 401 challenges and 403s, certificate-bound
//! tokens, foreign trust domains, key rotation through a JWKS file, per-route `disabled` and rule
//! sets, memory and Redis revocation (a real `redis-server`: revoked, paused past the deadline,
//! down), the stats, the access log (`%RESPONSE_CODE_DETAILS%`, dynamic metadata), a refused
//! config, and the shipped `envoy/dynamic-module.yaml`.

use super::*;
use crate::redis_server::RedisServer;
use mesh_authz::tools::issuer::{self, GeneratedKey, MintOptions};
use mesh_authz_core::decision::{CHALLENGE_INVALID, CHALLENGE_MISSING};
use mesh_authz_core::identity::certificate::{sha256_of_pem, thumbprint_b64url};
use mesh_authz_core::token::Algorithm;

const SPIFFE_OK: &str = "spiffe://cluster.local/ns/shop/sa/frontend";
const SPIFFE_FOREIGN: &str = "spiffe://evil.org/ns/shop/sa/frontend";
const SPIFFE_ADMIN: &str = "spiffe://cluster.local/ns/ops/sa/admin";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "orders-api";

// ---------------------------------------------------------------------------------------------
// Certificates and clients
// ---------------------------------------------------------------------------------------------

pub(super) struct Ca {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A client certificate: DER and key for the TLS client, PEM for thumbprints.
pub(super) struct Leaf {
    der: Vec<u8>,
    key_der: Vec<u8>,
    pem: String,
}

impl Ca {
    pub(super) fn new() -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mesh-authz in-proxy test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
        Ca { ca }
    }

    pub(super) fn pem(&self) -> String {
        self.ca.pem()
    }

    pub(super) fn server(&self) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec![ENVOY_HOST.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ENVOY_HOST);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub(super) fn client(&self, spiffe_id: &str) -> Leaf {
        let mut params = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::URI(spiffe_id.try_into().unwrap()));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf {
            der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            pem: cert.pem(),
        }
    }
}

impl Leaf {
    fn thumbprint(&self) -> String {
        thumbprint_b64url(&sha256_of_pem(&self.pem).unwrap())
    }
}

/// An mTLS HTTP/1.1 client presenting one certificate.
pub(super) struct Caller {
    tls: Arc<rustls::ClientConfig>,
    port: u16,
}

impl Caller {
    pub(super) fn new(ca: &Ca, leaf: &Leaf, port: u16) -> Caller {
        let mut roots = rustls::RootCertStore::empty();
        let ca_pem = ca.pem();
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes()).unwrap();
        roots.add(der).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from(leaf.der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone())),
        )
        .unwrap();
        Caller {
            tls: Arc::new(config),
            port,
        }
    }

    /// GET `path` tagged `x-test-id: id`, with `token` as Bearer and extra headers.
    pub(super) fn get(
        &self,
        id: &str,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Response {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = vec![("x-test-id", id)];
        if let Some(b) = &bearer {
            headers.push(("authorization", b));
        }
        headers.extend_from_slice(extra);
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let local_port = tcp.local_addr().unwrap().port();
        let conn = rustls::ClientConnection::new(
            Arc::clone(&self.tls),
            ServerName::try_from(ENVOY_HOST).unwrap(),
        )
        .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(&request_bytes(path, &headers)).unwrap();
        tls.flush().unwrap();
        parse_response(&read_all(&mut tls), local_port)
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

fn key(kid: &str) -> GeneratedKey {
    issuer::generate_key(Algorithm::ES256, 2048, kid).unwrap()
}

fn now() -> i64 {
    mesh_authz_core::clock::unix_now()
}

fn mint(key: &GeneratedKey, sub: &str, tweak: impl FnOnce(&mut MintOptions)) -> String {
    let mut opts = MintOptions {
        iss: ISSUER.into(),
        sub: sub.into(),
        aud: vec![AUDIENCE.into()],
        ttl: Duration::from_secs(600),
        now: now(),
        kid: Some(key.kid.clone()),
        ..Default::default()
    };
    tweak(&mut opts);
    issuer::mint(&key.private_pem, &opts).unwrap()
}

/// One JWKS document holding every key of `keys`.
pub(super) fn jwks(keys: &[&GeneratedKey]) -> String {
    let mut all = Vec::new();
    for k in keys {
        let v: serde_json::Value = serde_json::from_str(&k.jwks_json).unwrap();
        all.extend(v["keys"].as_array().unwrap().iter().cloned());
    }
    serde_json::json!({ "keys": all }).to_string()
}

// ---------------------------------------------------------------------------------------------
// Config and bootstrap
// ---------------------------------------------------------------------------------------------

/// The mesh-authz config (the `serve --config` schema) the filter gets; `extra` is appended.
fn authz_yaml(jwks_file: &Path, extra: &str) -> String {
    format!(
        r#"server:
  allow_metadata: true
providers:
  - name: corp
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ file: {jwks}, refresh_interval: 1s, min_refetch_interval: 1s }}
    algorithms: [ES256]
    claims_to_headers: {{ sub: x-auth-subject, scope: x-auth-scope }}
identity:
  trust_domains: [cluster.local]
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
{extra}"#,
        jwks = jwks_file.display(),
    )
}

/// One per-route `typed_per_filter_config` entry for the filter.
fn per_route(config: &str) -> String {
    format!(
        r#"
                typed_per_filter_config:
                  mesh-authz:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilterPerRoute
                    dynamic_module_config: {{name: mesh_authz_envoy, do_not_close: true}}
                    filter_name: mesh-authz
                    filter_config: {{"@type": type.googleapis.com/google.protobuf.StringValue, value: {config:?}}}"#
    )
}

struct AuthzPorts {
    admin: u16,
    listener: u16,
    echo: u16,
}

fn authz_bootstrap(dir: &Path, ca: &Ca, ports: &AuthzPorts, filter_config: &str) -> String {
    let (cert, key) = ca.server();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    let open_route = per_route(
        "rules:\n  - name: route-open\n    match: { path_prefix: /override, context: { tier: open } }\n    allow_anonymous: true\ncontext_extensions: { tier: open }\n",
    );
    format!(
        r#"
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
stats_flush_interval: 0.2s
static_resources:
  listeners:
  - name: mtls
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listener}}}}}
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
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: authz
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {dir}/access.log
              log_format:
                text_format_source:
                  inline_string: "id=%REQ(X-TEST-ID)% code=%RESPONSE_CODE% details=%RESPONSE_CODE_DETAILS% reason=%DYNAMIC_METADATA(mesh_authz:reason)% rule=%DYNAMIC_METADATA(mesh_authz:rule)% spiffe=%DYNAMIC_METADATA(mesh_authz:spiffe_id)% provider=%DYNAMIC_METADATA(mesh_authz:provider)%\n"
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/public"}}
                route: {{cluster: echo}}{public}
              - match: {{prefix: "/override"}}
                route: {{cluster: echo}}{open_route}
              - match: {{prefix: "/"}}
                route: {{cluster: echo}}
          http_filters:
          - name: mesh-authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{name: mesh_authz_envoy, do_not_close: true}}
              filter_name: mesh-authz
              filter_config: {{"@type": type.googleapis.com/google.protobuf.StringValue, value: {filter_config:?}}}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
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
        listener = ports.listener,
        echo = ports.echo,
        dir = dir.display(),
        public = per_route("disabled: true"),
    )
}

/// Starts Envoy with the filter configured by `filter_config`; waits for it to be ready.
fn start_authz(dir: &Path, ca: &Ca, filter_config: &str) -> (Envoy, AuthzPorts) {
    let ports = AuthzPorts {
        admin: free_port(),
        listener: free_port(),
        echo: start_echo(),
    };
    let mut envoy = Envoy::spawn(dir, &authz_bootstrap(dir, ca, &ports, filter_config));
    envoy.wait_ready(ports.admin);
    envoy.wait_log("mesh-authz: filter config loaded");
    (envoy, ports)
}

/// The `key=value` field of an access-log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let needle = format!("{key}=");
    line.split(' ')
        .find_map(|f| f.strip_prefix(needle.as_str()))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

/// A denial as the client and the access log saw it: status, generic body, content type, and
/// `details` = `mesh_authz_denied{reason}` with the same reason in dynamic metadata.
fn assert_denied(dir: &Path, admin: u16, id: &str, r: &Response, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{id}: {r:?}");
    let body = match status {
        401 => r#"{"error":"unauthorized"}"#,
        403 => r#"{"error":"forbidden"}"#,
        _ => r#"{"error":"unavailable"}"#,
    };
    assert_eq!(r.body, body, "{id}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{id}");
    let line = access_line(dir, admin, id);
    assert_eq!(field(&line, "code"), status.to_string(), "{line}");
    assert_eq!(field(&line, "reason"), reason, "{line}");
    assert_eq!(
        field(&line, "details"),
        format!("mesh_authz_denied{{{reason}}}"),
        "{line}"
    );
}

/// Polls admin `/stats?filter=mesh_authz` (up to `secs`) until `settled` finds what it wants in
/// the body; fails with `what` and the last body otherwise.
fn poll_stats<T>(admin: u16, secs: u64, what: &str, settled: impl Fn(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let body = admin_get(admin, "/stats?filter=mesh_authz")
            .map(|(_, b)| b)
            .unwrap_or_default();
        if let Some(v) = settled(&body) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}; /stats:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until histogram `dynamicmodulescustom.<name>` shows recorded values (after one of
/// Envoy's stats flushes).
fn histogram_has_values(admin: u16, name: &str) {
    let prefix = format!("dynamicmodulescustom.{name}: ");
    poll_stats(admin, 15, &format!("{name} has no values"), |body| {
        body.lines()
            .find(|l| l.starts_with(prefix.as_str()))
            .filter(|l| l.contains("P0("))
            .map(|_| ())
    });
}

/// `dynamicmodulescustom.<series>` from admin `/stats`, once it is at least `min`.
fn stat_at_least(admin: u16, series: &str, min: u64) -> u64 {
    let name = format!("dynamicmodulescustom.{series}: ");
    poll_stats(admin, 10, &format!("{series} stays below {min}"), |body| {
        body.lines()
            .find_map(|l| l.strip_prefix(name.as_str()))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|v| *v >= min)
    })
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// The ext_authz contract, in-proxy, with the memory store.
#[test]
fn the_ext_authz_contract_holds_in_proxy() {
    let dir = temp_dir("authz");
    let ca = Ca::new();
    let k1 = key("k1");
    let jwks_file = dir.join("jwks.json");
    std::fs::write(&jwks_file, jwks(&[&k1])).unwrap();
    let (envoy, ports) = start_authz(&dir, &ca, &authz_yaml(&jwks_file, ""));
    let alice_leaf = ca.client(SPIFFE_OK);
    let alice = Caller::new(&ca, &alice_leaf, ports.listener);
    let alice2 = Caller::new(&ca, &ca.client(SPIFFE_OK), ports.listener);
    let foreign = Caller::new(&ca, &ca.client(SPIFFE_FOREIGN), ports.listener);
    let admin = ports.admin;

    // Allowed: identity headers set from the connection and the token; the client's own copies
    // and its Authorization never reach the upstream.
    let token = mint(&k1, "alice", |_| {});
    let r = alice.get(
        "allow",
        "/api/orders?page=2",
        Some(&token),
        &[
            ("x-auth-subject", "root"),
            ("x-auth-scope", "admin"),
            ("x-auth-spiffe-id", SPIFFE_ADMIN),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let up = r.upstream_headers();
    assert_eq!(one(&up, "x-auth-subject"), "alice");
    assert_eq!(one(&up, "x-auth-spiffe-id"), SPIFFE_OK);
    assert!(
        !up.contains_key("x-auth-scope"),
        "client scope leaked: {up:#?}"
    );
    assert!(!up.contains_key("authorization"), "token leaked: {up:#?}");
    let line = access_line(&dir, admin, "allow");
    assert_eq!(field(&line, "code"), "200", "{line}");
    assert_eq!(field(&line, "rule"), "api", "{line}");
    assert_eq!(field(&line, "spiffe"), SPIFFE_OK, "{line}");
    assert_eq!(field(&line, "provider"), "corp", "{line}");
    assert_eq!(field(&line, "reason"), "-", "{line}");

    // The same token again: answered from the verified-token cache. A header the answer removes
    // is removed whatever case and however many copies the client sends.
    let r = alice.get(
        "allow-again",
        "/api/x",
        Some(&token),
        &[("X-Auth-Scope", "admin"), ("x-auth-scope", "root")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        !r.upstream_headers().contains_key("x-auth-scope"),
        "client scope leaked: {r:#?}"
    );
    let scoped = mint(&k1, "bob", |o| o.scope = Some("read".into()));
    let r = alice.get(
        "scoped",
        "/api/x",
        Some(&scoped),
        &[("x-auth-scope", "admin")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let up = r.upstream_headers();
    assert_eq!(one(&up, "x-auth-scope"), "read");
    assert_eq!(one(&up, "x-auth-subject"), "bob");

    // No token: 401 with the bare challenge; bad tokens: 401 invalid_token.
    let r = alice.get("missing", "/api/x", None, &[]);
    assert_denied(&dir, admin, "missing", &r, 401, "token_missing");
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE_MISSING));
    for (id, bad) in [
        ("expired", mint(&k1, "alice", |o| o.now = now() - 3600)),
        (
            "audience",
            mint(&k1, "alice", |o| o.aud = vec!["other".into()]),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ] {
        let r = alice.get(id, "/api/x", Some(&bad), &[]);
        assert_eq!(r.status, 401, "{id}: {r:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(CHALLENGE_INVALID),
            "{id}"
        );
        assert_eq!(r.body, r#"{"error":"unauthorized"}"#, "{id}");
    }

    // A foreign trust domain: 403, whatever the token and a forged XFCC say.
    let r = foreign.get("foreign", "/api/x", Some(&token), &[]);
    assert_denied(
        &dir,
        admin,
        "foreign",
        &r,
        403,
        "peer_trust_domain_not_trusted",
    );
    let forged = format!("URI={SPIFFE_OK}");
    let r = foreign.get(
        "foreign-xfcc",
        "/api/x",
        Some(&token),
        &[("x-forwarded-client-cert", &forged)],
    );
    assert_eq!(r.status, 403, "forged XFCC accepted: {r:?}");
    // A rule the caller's SPIFFE ID does not meet: 403.
    let r = alice.get("not-admin", "/admin", Some(&token), &[]);
    assert_denied(&dir, admin, "not-admin", &r, 403, "spiffe_id_not_allowed");
    // No rule: default deny.
    let r = alice.get("no-rule", "/elsewhere", Some(&token), &[]);
    assert_denied(&dir, admin, "no-rule", &r, 403, "no_matching_rule");

    // A certificate-bound token works only with its own certificate (the digest Envoy reports).
    let bound = mint(&k1, "alice", |o| {
        o.cnf_x5t_s256 = Some(alice_leaf.thumbprint())
    });
    let r = alice.get("bound", "/bound/x", Some(&bound), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(one(&r.upstream_headers(), "x-auth-spiffe-id"), SPIFFE_OK);
    let r = alice2.get("bound-other", "/bound/x", Some(&bound), &[]);
    assert_denied(
        &dir,
        admin,
        "bound-other",
        &r,
        401,
        "token_binding_mismatch",
    );
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE_INVALID));
    let r = alice2.get("bound-api", "/api/x", Some(&bound), &[]);
    assert_eq!(r.status, 401, "bound token replayed on /api: {r:?}");

    // Per route: `disabled: true` skips the check (nothing is set or removed there) ...
    let r = foreign.get("public", "/public/x", None, &[("x-auth-subject", "root")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(one(&r.upstream_headers(), "x-auth-subject"), "root");
    // ... and a route's own rule set (matching its context_extensions) replaces the filter's:
    // anonymous there, while the filter's rules match nothing on /override (default deny).
    let r = alice.get(
        "override",
        "/override/x",
        None,
        &[("x-auth-subject", "root")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let up = r.upstream_headers();
    assert_eq!(one(&up, "x-auth-spiffe-id"), SPIFFE_OK);
    assert!(
        !up.contains_key("x-auth-subject"),
        "smuggled on override: {up:#?}"
    );
    let line = access_line(&dir, admin, "override");
    assert_eq!(field(&line, "rule"), "route-open", "{line}");

    // Key rotation: a token signed by a new key is refused until the JWKS file holds it, then
    // accepted after the refresh (an unknown kid also triggers a refetch, off the worker).
    let k2 = key("k2");
    let rotated = mint(&k2, "carol", |_| {});
    let r = alice.get("rotated-early", "/api/x", Some(&rotated), &[]);
    assert_eq!(r.status, 401, "{r:?}");
    std::fs::write(&jwks_file, jwks(&[&k1, &k2])).unwrap();
    let mut n = 0;
    wait_for(10, "the rotated key to be accepted", || {
        n += 1;
        let r = alice.get(&format!("rotated-{n}"), "/api/x", Some(&rotated), &[]);
        (r.status == 200).then_some(())
    });

    // Memory revocation is looked up inline; stats carry the server's names and labels.
    stat_at_least(admin, "mesh_authz_checks_total.decision.allow.reason.ok", 6);
    stat_at_least(
        admin,
        "mesh_authz_checks_total.decision.deny.reason.token_missing",
        1,
    );
    stat_at_least(
        admin,
        "mesh_authz_checks_total.decision.deny.reason.peer_trust_domain_not_trusted",
        2,
    );
    stat_at_least(admin, "mesh_authz_token_cache_total.outcome.hit", 1);
    // Durations reach the (unlabelled) histogram through the main thread's flush.
    histogram_has_values(admin, "mesh_authz_check_duration_us");
    stat_at_least(admin, "mesh_authz_token_cache_total.outcome.miss", 1);
    stat_at_least(
        admin,
        "mesh_authz_revocation_lookups_total.source.memory.outcome.active",
        5,
    );

    // Denials are logged through Envoy's log with their reason; never a token.
    envoy.wait_log("check denied");
    let log = envoy.stderr_text();
    assert!(
        log.contains("reason=\"token_binding_mismatch\"")
            || log.contains("reason=token_binding_mismatch"),
        "{log}"
    );
    for t in [&token, &bound, &rotated] {
        assert!(!log.contains(t.as_str()), "a token reached Envoy's log");
    }
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Redis revocation through the module's runtime: a revoked token is refused; a Redis that
/// hangs past `limits.check_timeout` is a 503 `deadline_exceeded`; a Redis that is down is a
/// 503 `revocation_unavailable` (`on_error: deny`).
#[test]
fn redis_revocation_in_proxy() {
    let dir = temp_dir("authz-redis");
    let ca = Ca::new();
    let k1 = key("k1");
    let jwks_file = dir.join("jwks.json");
    std::fs::write(&jwks_file, jwks(&[&k1])).unwrap();
    let mut redis = RedisServer::start();
    let extra = format!(
        "revocation:\n  store: redis\n  on_error: deny\n  redis: {{ url: \"{}\", command_timeout: 2s, cache_ttl: 1s }}\nlimits:\n  check_timeout: 300ms\n",
        redis.url()
    );
    let (envoy, ports) = start_authz(&dir, &ca, &authz_yaml(&jwks_file, &extra));
    let alice = Caller::new(&ca, &ca.client(SPIFFE_OK), ports.listener);
    let admin = ports.admin;

    // Once the store is connected, an active token passes (looked up in Redis, off the worker).
    let mut n = 0;
    wait_for(15, "the Redis store to answer", || {
        n += 1;
        let t = mint(&k1, "alice", |o| o.jti = Some(format!("warm-{n}")));
        (alice
            .get(&format!("warm-{n}"), "/api/x", Some(&t), &[])
            .status
            == 200)
            .then_some(())
    });
    let token = mint(&k1, "alice", |o| o.jti = Some("r1".into()));
    assert_eq!(
        alice.get("r1-active", "/api/x", Some(&token), &[]).status,
        200
    );

    // Revoked in Redis: refused once the local cache entry (cache_ttl) expires.
    redis.cli(&["SET", "mesh-authz:jti:r1", "1", "EX", "600"]);
    let mut n = 0;
    let id = wait_for(10, "the revocation to take effect", || {
        n += 1;
        let id = format!("r1-revoked-{n}");
        (alice.get(&id, "/api/x", Some(&token), &[]).status == 401).then_some(id)
    });
    let r = alice.get("r1-final", "/api/x", Some(&token), &[]);
    assert_denied(&dir, admin, "r1-final", &r, 401, "token_revoked");
    assert_eq!(
        r.header("www-authenticate"),
        Some(CHALLENGE_INVALID),
        "{id}"
    );
    stat_at_least(
        admin,
        "mesh_authz_revocation_lookups_total.source.redis.outcome.revoked",
        1,
    );

    // Redis hangs: the check is cut at limits.check_timeout, fail closed.
    redis.pause();
    let t = mint(&k1, "alice", |o| o.jti = Some("r2".into()));
    let r = alice.get("paused", "/api/x", Some(&t), &[]);
    redis.resume();
    assert_denied(&dir, admin, "paused", &r, 503, "deadline_exceeded");
    stat_at_least(
        admin,
        "mesh_authz_checks_total.decision.deny.reason.deadline_exceeded",
        1,
    );

    // Redis down: on_error deny answers 503.
    redis.kill();
    let mut n = 0;
    let id = wait_for(10, "a revocation_unavailable denial", || {
        n += 1;
        let id = format!("down-{n}");
        let t = mint(&k1, "alice", |o| o.jti = Some(id.clone()));
        let r = alice.get(&id, "/api/x", Some(&t), &[]);
        assert_eq!(r.status, 503, "{id}: request passed with Redis down: {r:?}");
        let line = access_line(&dir, admin, &id);
        (field(&line, "reason") == "revocation_unavailable").then_some(id)
    });
    let line = access_line(&dir, admin, &id);
    assert_eq!(
        field(&line, "details"),
        "mesh_authz_denied{revocation_unavailable}"
    );
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An invalid mesh-authz config is refused with its path-qualified errors, by `--mode validate`
/// and at start.
#[test]
fn an_invalid_config_is_refused_with_its_paths() {
    let dir = temp_dir("authz-bad");
    let ca = Ca::new();
    let jwks_file = dir.join("jwks.json");
    std::fs::write(&jwks_file, jwks(&[&key("k1")])).unwrap();
    let bad = authz_yaml(&jwks_file, "").replace("default_action: deny", "default_action: maybe")
        + "limits:\n  check_timeout: 0s\n";
    let ports = AuthzPorts {
        admin: free_port(),
        listener: free_port(),
        echo: free_port(),
    };
    let file = dir.join("bad.yaml");
    std::fs::write(&file, authz_bootstrap(&dir, &ca, &ports, &bad)).unwrap();
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
        "validate accepted a bad config:\n{text}"
    );
    assert!(
        text.contains("filter config \"mesh-authz\" rejected"),
        "{text}"
    );
    assert!(text.contains("default_action"), "{text}");

    // The same config, valid: accepted; a broken per-route rule set is refused too.
    let good = authz_yaml(&jwks_file, "");
    std::fs::write(&file, authz_bootstrap(&dir, &ca, &ports, &good)).unwrap();
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&file)
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let broken_route = authz_bootstrap(&dir, &ca, &ports, &good)
        .replace("allow_anonymous: true", "allow_anonymous: sometimes");
    std::fs::write(&file, broken_route).unwrap();
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
        "a broken per-route config was accepted:\n{text}"
    );
    assert!(
        text.contains("per-route config \"mesh-authz\" rejected"),
        "{text}"
    );
    assert!(text.contains("allow_anonymous"), "{text}");

    let mut envoy = Envoy::spawn(&dir, &authz_bootstrap(&dir, &ca, &ports, &bad));
    let status = wait_for(30, "envoy to exit on a bad config", || {
        envoy.child.try_wait().unwrap()
    });
    assert!(!status.success());
    let log = envoy.stderr_text();
    assert!(log.contains("default_action"), "{log}");
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `envoy/dynamic-module.yaml`, with its placeholders rendered, validates against Envoy 1.40
/// with this module.
#[test]
fn the_shipped_dynamic_module_bootstrap_validates() {
    let dir = temp_dir("authz-shipped");
    let ca = Ca::new();
    let (cert, key_pem) = ca.server();
    std::fs::write(dir.join("envoy.pem"), cert).unwrap();
    std::fs::write(dir.join("envoy-key.pem"), key_pem).unwrap();
    std::fs::write(dir.join("client-ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("jwks.json"), jwks(&[&key("k1")])).unwrap();
    let shipped = std::fs::read_to_string(repo_root().join("envoy/dynamic-module.yaml")).unwrap();
    let d = format!("{}/", dir.display());
    let mut rendered = shipped.clone();
    for (from, to) in [
        ("/etc/envoy/certs/", d.as_str()),
        ("/etc/mesh-authz/", d.as_str()),
        (
            "address: app, port_value: 8080",
            "address: 127.0.0.1, port_value: 8080",
        ),
    ] {
        assert!(rendered.contains(from), "placeholder {from:?} missing");
        rendered = rendered.replace(from, to);
    }
    let file = dir.join("shipped.yaml");
    std::fs::write(&file, &rendered).unwrap();
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&file)
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("Deprecated field"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! The identity attack suite: forged `x-forwarded-client-cert` (SAN injection, duplicate keys,
//! element-count games, Hash/Cert disagreement, a victim's public certificate replayed), foreign
//! peers without a SPIFFE ID, and certificate-bound tokens replayed with another certificate or
//! none. Every row goes through a real mesh-authz over gRPC `Check`, with rcgen certificates
//! whose SANs carry the attacker's text exactly as Envoy would copy it into XFCC (Envoy writes
//! URI and DNS SANs unescaped; `tests/envoy_e2e.rs` shows it with the real binary). Positive rows
//! prove the suite can fail.

use crate::common::*;
use mesh_authz_core::identity::certificate;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

const ALICE: &str = "spiffe://cluster.local/ns/shop/sa/alice";
const ADMIN: &str = "spiffe://cluster.local/ns/ops/sa/admin";
const XFCC: &str = "x-forwarded-client-cert";

fn config(jwks_uri: &str, identity: &str) -> String {
    format!(
        r#"
providers:
  - name: corp
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ uri: "{jwks_uri}", refresh_interval: 5m, min_refetch_interval: 1s }}
    algorithms: [RS256]
identity:
  trust_domains: [cluster.local]
{identity}
rules:
  - name: health
    match: {{ path_prefix: /healthz }}
    allow_anonymous: true
  - name: admin
    match: {{ path_prefix: /admin }}
    require: {{ token: false, spiffe_ids: [{ADMIN}] }}
  - name: internal
    match: {{ path_prefix: /internal }}
    require: {{ token: false, peer: true }}
  - name: bound
    match: {{ path_prefix: /bound }}
    require: {{ bound_token: true }}
  - name: api
    match: {{ path_prefix: /api }}
    require: {{ token: true }}
default_action: deny
"#
    )
}

/// The identity settings each row runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `sources: [principal, certificate]` (the default).
    Direct,
    /// Trusted XFCC, text, `SANITIZE_SET` without `Cert` (the old shape of the shipped config).
    SanitizeText,
    /// Trusted XFCC, text, `SANITIZE_SET`, `require_cert`.
    SanitizeCert,
    /// Trusted XFCC, text, `APPEND_FORWARD`, `require_cert` (Istio sidecar with `cert: true`).
    AppendCert,
    /// Trusted XFCC, Envoy 1.40's JSON format, `SANITIZE_SET`.
    SanitizeJson,
    /// `sources: [principal, xfcc]` as the gRPC bootstrap, text, `SANITIZE_SET`.
    PrincipalXfcc,
}

impl Mode {
    fn identity(self) -> &'static str {
        match self {
            Mode::Direct => "",
            Mode::SanitizeText => "  sources: [xfcc]\n  trust_xfcc: true\n",
            Mode::SanitizeCert => {
                "  sources: [xfcc]\n  trust_xfcc: true\n  xfcc: { require_cert: true }\n"
            }
            Mode::AppendCert => {
                "  sources: [xfcc]\n  trust_xfcc: true\n  xfcc: { proxy_mode: append_forward, require_cert: true }\n"
            }
            Mode::SanitizeJson => {
                "  sources: [xfcc]\n  trust_xfcc: true\n  xfcc: { format: json }\n"
            }
            Mode::PrincipalXfcc => "  sources: [principal, xfcc]\n  trust_xfcc: true\n",
        }
    }
}

/// A client certificate from the trusted CA with arbitrary (IA5) URI and DNS SAN text.
struct Leaf {
    pem: String,
    sha_hex: String,
}

fn leaf(pki: &Pki, uris: &[&str], dns: &[&str]) -> Leaf {
    let (pem, _key) = pki.san_leaf(uris, dns);
    let sha_hex = hex::encode(certificate::sha256_of_pem(&pem).unwrap());
    Leaf { pem, sha_hex }
}

fn url(pem: &str) -> String {
    utf8_percent_encode(pem, NON_ALPHANUMERIC).to_string()
}

/// The element Envoy writes for `leaf` in the text format (`set_current_client_cert_details`
/// with `uri`, `dns`, and `cert` when asked): fields in Envoy's order, SAN text verbatim.
fn envoy_text(l: &Leaf, uris: &[&str], dns: &[&str], with_cert: bool) -> String {
    let mut el = format!("Hash={}", l.sha_hex);
    if with_cert {
        el.push_str(&format!(";Cert=\"{}\"", url(&l.pem)));
    }
    el.push_str(";Subject=\"CN=client\"");
    if uris.is_empty() {
        el.push_str(";URI=");
    }
    for u in uris {
        el.push_str(&format!(";URI={u}"));
    }
    for d in dns {
        el.push_str(&format!(";DNS={d}"));
    }
    el
}

/// The element Envoy 1.40 writes in the JSON format.
fn envoy_json(l: &Leaf, uris: &[&str], dns: &[&str]) -> String {
    let mut el = serde_json::json!({"hash": l.sha_hex, "cert": l.pem, "subject": "CN=client"});
    if !uris.is_empty() {
        el["uri"] = serde_json::json!(uris);
    }
    if !dns.is_empty() {
        el["dns"] = serde_json::json!(dns);
    }
    serde_json::to_string(&[el]).unwrap()
}

struct Row {
    name: &'static str,
    mode: Mode,
    req: Req,
    /// (HTTP status, reason label).
    want: (u16, &'static str),
}

#[tokio::test]
async fn identity_attacks_are_refused() {
    let pki = Pki::new();
    let key = key(mesh_authz_core::token::Algorithm::RS256, "k1");
    let victim = leaf(&pki, &[ADMIN], &[]);
    let alice = leaf(&pki, &[ALICE], &["alice.example"]);
    let victim_tail = format!(
        "Hash={};Cert={};URI={ADMIN}",
        victim.sha_hex,
        url(&victim.pem)
    );

    let mut rows: Vec<Row> = Vec::new();
    let mut add = |name, mode, req, want| {
        rows.push(Row {
            name,
            mode,
            req,
            want,
        })
    };

    // ---- Forged XFCC through SAN text (the proxy in front writes exactly this) ------------------
    for mode in [Mode::SanitizeText, Mode::SanitizeCert, Mode::PrincipalXfcc] {
        let with_cert = mode == Mode::SanitizeCert;
        let legit = envoy_text(&alice, &[ALICE], &["alice.example"], with_cert);
        add(
            "positive: the proxy's one element",
            mode,
            Req::get("/internal/x").header(XFCC, &legit),
            (200, "ok"),
        );
        // URI SAN `urn:x;URI=<admin>`.
        let san = format!("urn:x;URI={ADMIN}");
        let l = leaf(&pki, &[&san], &[]);
        add(
            "';' in a URI SAN adds the admin URI",
            mode,
            Req::get("/admin").header(XFCC, &envoy_text(&l, &[&san], &[], with_cert)),
            (403, "peer_invalid_xfcc"),
        );
        // DNS SAN `a.example;URI=<admin>` (Envoy writes `URI=` first: the SAN moves a URI last).
        let dns = format!("a.example;URI={ADMIN}");
        let l = leaf(&pki, &[], &[&dns]);
        add(
            "';' in a DNS SAN adds a URI after the DNS fields",
            mode,
            Req::get("/admin").header(XFCC, &envoy_text(&l, &[], &[&dns], with_cert)),
            (403, "peer_invalid_xfcc"),
        );
        // URI SAN `urn:x,Hash=<victim>;URI=<admin>`: a forged last element.
        let san = format!("urn:x,Hash={};URI={ADMIN}", victim.sha_hex);
        let l = leaf(&pki, &[&san], &[]);
        add(
            "',' in a URI SAN splits off a forged element",
            mode,
            Req::get("/admin").header(XFCC, &envoy_text(&l, &[&san], &[], with_cert)),
            (403, "peer_invalid_xfcc"),
        );
        // … carrying the victim's public certificate too.
        let san = format!("urn:x,{victim_tail}");
        let l = leaf(&pki, &[&san], &[]);
        add(
            "',' split with the victim's Cert replayed",
            mode,
            Req::get("/admin").header(XFCC, &envoy_text(&l, &[&san], &[], with_cert)),
            (403, "peer_invalid_xfcc"),
        );
        // DNS SAN with a comma.
        let dns = format!("a.example,{victim_tail}");
        let l = leaf(&pki, &[ALICE], &[&dns]);
        add(
            "',' in a DNS SAN splits off a forged element",
            mode,
            Req::get("/admin").header(XFCC, &envoy_text(&l, &[ALICE], &[&dns], with_cert)),
            (403, "peer_invalid_xfcc"),
        );
        // URI SAN `urn:x;Hash=<victim>`: a second Hash.
        let san = format!("urn:x;Hash={}", victim.sha_hex);
        let l = leaf(&pki, &[&san], &[]);
        add(
            "duplicate Hash through a SAN",
            mode,
            Req::get("/internal/x").header(XFCC, &envoy_text(&l, &[&san], &[], with_cert)),
            (403, "peer_invalid_xfcc"),
        );
        // `"` and `=` in a SAN: not Envoy's grammar once copied unescaped.
        for san in [
            format!("urn:x\";URI={ADMIN}"),
            format!("\"{ADMIN}\""),
            "urn:a=b".to_owned(),
        ] {
            let l = leaf(&pki, &[&san], &[]);
            add(
                "'\"' or '=' in a URI SAN (a quoted SAN unquotes to the admin ID)",
                mode,
                Req::get("/admin").header(XFCC, &envoy_text(&l, &[&san], &[], with_cert)),
                (403, "peer_invalid_xfcc"),
            );
        }
        // Element-count games: two elements where the proxy writes one.
        add(
            "two elements behind SANITIZE_SET",
            mode,
            Req::get("/admin").header(
                XFCC,
                &format!("{legit},Hash={};URI={ADMIN}", victim.sha_hex),
            ),
            (403, "peer_invalid_xfcc"),
        );
    }
    // Without Cert, a SAN `;Cert=<victim>` gives the element a Cert that the Hash contradicts.
    let san = format!("urn:x;Cert={}", url(&victim.pem));
    let l = leaf(&pki, &[&san], &[]);
    add(
        "victim's Cert injected where the proxy writes none",
        Mode::SanitizeText,
        Req::get("/admin").header(XFCC, &envoy_text(&l, &[&san], &[], false)),
        (403, "peer_invalid_xfcc"),
    );
    // require_cert: Hash/Cert disagreement, no Cert at all.
    let lying = envoy_text(&alice, &[ALICE], &[], true).replace(&alice.sha_hex, &victim.sha_hex);
    add(
        "Hash and Cert disagree",
        Mode::SanitizeCert,
        Req::get("/internal/x").header(XFCC, &lying),
        (403, "peer_invalid_xfcc"),
    );
    let lying = envoy_text(&alice, &[ADMIN], &["alice.example"], true);
    add(
        "URI field and Cert disagree",
        Mode::SanitizeCert,
        Req::get("/admin").header(XFCC, &lying),
        (403, "peer_invalid_xfcc"),
    );
    add(
        "no Cert where the proxy writes one",
        Mode::SanitizeCert,
        Req::get("/admin").header(XFCC, &format!("Hash={};URI={ADMIN}", victim.sha_hex)),
        (403, "peer_invalid_xfcc"),
    );

    // ---- APPEND_FORWARD (several elements) ------------------------------------------------------
    let appended = envoy_text(&alice, &[ALICE], &["alice.example"], true);
    add(
        "positive: client elements first, the proxy's last",
        Mode::AppendCert,
        Req::get("/internal/x").header(XFCC, &format!("URI={ADMIN},{victim_tail},{appended}")),
        (200, "ok"),
    );
    add(
        "positive: the appended element is the identity, not the client's admin",
        Mode::AppendCert,
        Req::get("/admin").header(XFCC, &format!("{victim_tail},{appended}")),
        (403, "spiffe_id_not_allowed"),
    );
    let san = format!("urn:x,{victim_tail}");
    let l = leaf(&pki, &[&san], &[]);
    add(
        "split of the appended element with the victim's Cert",
        Mode::AppendCert,
        Req::get("/admin").header(
            XFCC,
            &format!("URI={ALICE},{}", envoy_text(&l, &[&san], &[], true)),
        ),
        (403, "peer_invalid_xfcc"),
    );
    add(
        "last element without Cert",
        Mode::AppendCert,
        Req::get("/admin").header(XFCC, &format!("{appended},URI={ADMIN}")),
        (403, "peer_invalid_xfcc"),
    );
    let bad_earlier = envoy_text(&victim, &[ALICE], &[], true);
    add(
        "an earlier element whose Cert disagrees with its fields",
        Mode::AppendCert,
        Req::get("/internal/x").header(XFCC, &format!("{bad_earlier},{appended}")),
        (403, "peer_invalid_xfcc"),
    );

    // ---- JSON format --------------------------------------------------------------------------
    add(
        "positive: JSON element",
        Mode::SanitizeJson,
        Req::get("/internal/x").header(XFCC, &envoy_json(&alice, &[ALICE], &[])),
        (200, "ok"),
    );
    let san = format!("urn:x;URI={ADMIN}");
    let l = leaf(&pki, &[&san], &[]);
    add(
        "JSON keeps an injected SAN whole (no SPIFFE ID: foreign)",
        Mode::SanitizeJson,
        Req::get("/admin").header(XFCC, &envoy_json(&l, &[&san], &[])),
        (403, "peer_trust_domain_not_trusted"),
    );
    add(
        "text where JSON is expected (Envoy's fallback)",
        Mode::SanitizeJson,
        Req::get("/admin").header(XFCC, &format!("Hash={};URI={ADMIN}", victim.sha_hex)),
        (403, "peer_invalid_xfcc"),
    );
    add(
        "JSON with a repeated key",
        Mode::SanitizeJson,
        Req::get("/admin").header(
            XFCC,
            &format!(r#"[{{"uri":["{ALICE}"],"uri":["{ADMIN}"]}}]"#),
        ),
        (403, "peer_invalid_xfcc"),
    );

    // ---- Foreign peers without a SPIFFE ID (trust_domains: [cluster.local]) --------------------
    let dns_only = leaf(&pki, &[], &["client.example"]);
    for (name, req) in [
        (
            "subject principal",
            Req::get("/internal/x").principal("CN=x,O=Elsewhere"),
        ),
        (
            "https principal",
            Req::get("/internal/x").principal("https://evil.example/c"),
        ),
        (
            "DNS-only certificate",
            Req::get("/internal/x").cert_pem(&dns_only.pem),
        ),
        (
            "foreign SPIFFE ID",
            Req::get("/internal/x").principal("spiffe://evil.org/ns/a/sa/b"),
        ),
    ] {
        add(
            name,
            Mode::Direct,
            req,
            (403, "peer_trust_domain_not_trusted"),
        );
    }
    add(
        "positive: a SPIFFE peer in the trust domain",
        Mode::Direct,
        Req::get("/internal/x").principal(ALICE),
        (200, "ok"),
    );
    add(
        "XFCC DNS-only element",
        Mode::SanitizeCert,
        Req::get("/internal/x")
            .header(XFCC, &envoy_text(&dns_only, &[], &["client.example"], true)),
        (403, "peer_trust_domain_not_trusted"),
    );

    // ---- Certificate-bound tokens (RFC 8705 §3) -------------------------------------------------
    let bound = mint(&key, "alice", |o| {
        o.cnf_x5t_s256 = Some(thumbprint(&alice.pem))
    });
    let unbound = mint(&key, "alice", |_| {});
    for path in ["/api/x", "/bound/x"] {
        add(
            "positive: bound token with its certificate",
            Mode::Direct,
            Req::get(path).bearer(&bound).cert_pem(&alice.pem),
            (200, "ok"),
        );
        add(
            "bound token with another certificate",
            Mode::Direct,
            Req::get(path).bearer(&bound).cert_pem(&victim.pem),
            (401, "token_binding_mismatch"),
        );
        add(
            "bound token without a certificate",
            Mode::Direct,
            Req::get(path).bearer(&bound).principal(ALICE),
            (401, "token_binding_mismatch"),
        );
        add(
            "bound token with no peer at all",
            Mode::Direct,
            Req::get(path).bearer(&bound),
            (401, "token_binding_mismatch"),
        );
        add(
            "bound token with another certificate through XFCC",
            Mode::SanitizeCert,
            Req::get(path)
                .bearer(&bound)
                .header(XFCC, &envoy_text(&victim, &[ADMIN], &[], true)),
            (401, "token_binding_mismatch"),
        );
        add(
            "positive: bound token with its certificate through XFCC",
            Mode::SanitizeCert,
            Req::get(path).bearer(&bound).header(
                XFCC,
                &envoy_text(&alice, &[ALICE], &["alice.example"], true),
            ),
            (200, "ok"),
        );
    }
    add(
        "positive: unbound token on a rule without bound_token",
        Mode::Direct,
        Req::get("/api/x").bearer(&unbound).cert_pem(&alice.pem),
        (200, "ok"),
    );
    add(
        "unbound token on a bound_token rule",
        Mode::Direct,
        Req::get("/bound/x").bearer(&unbound).cert_pem(&alice.pem),
        (403, "bound_token_mismatch"),
    );
    add(
        "positive: a mismatched bound token is dropped on an anonymous rule",
        Mode::Direct,
        Req::get("/healthz").bearer(&bound).cert_pem(&victim.pem),
        (200, "ok"),
    );

    // ---- Run, one server per mode -----------------------------------------------------------
    let jwks = JwksServer::start(&key.jwks_json).await;
    let mut failures = Vec::new();
    let modes = [
        Mode::Direct,
        Mode::SanitizeText,
        Mode::SanitizeCert,
        Mode::AppendCert,
        Mode::SanitizeJson,
        Mode::PrincipalXfcc,
    ];
    let mut ran = 0;
    for mode in modes {
        let server = start(&config(&jwks.uri(), mode.identity())).await;
        let mut client = client(server.grpc_addr).await;
        for row in rows.iter().filter(|r| r.mode == mode) {
            ran += 1;
            let r = check(&mut client, row.req.clone()).await;
            let got = (verdict(&r).0, reason(&r));
            let got_reason = if got.0 == 200 {
                "ok".to_owned()
            } else {
                got.1.clone()
            };
            if (got.0, got_reason.as_str()) != row.want {
                failures.push(format!(
                    "{:?} / {}: want {:?}, got ({}, {:?})",
                    row.mode, row.name, row.want, got.0, got_reason
                ));
                continue;
            }
            if got.0 == 401 {
                let challenge = denied_header(&r, "www-authenticate").unwrap_or_default();
                if !challenge.contains(r#"error="invalid_token""#) {
                    failures.push(format!(
                        "{:?} / {}: challenge {challenge:?}",
                        row.mode, row.name
                    ));
                }
            }
        }
    }
    assert_eq!(ran, rows.len(), "every row ran");
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `identity.xfcc` config: append_forward without require_cert cannot be made safe and is refused
/// at load with its path; unknown keys and values are refused; the old `trust_xfcc` shape loads
/// with the safe defaults.
#[test]
fn xfcc_config_is_checked() {
    use mesh_authz_core::compile::from_str_with_env;
    use mesh_authz_core::config::{XfccFormat, XfccProxyMode};
    let load = |identity: &str| {
        from_str_with_env(&format!("identity:\n{identity}"), Vec::new()).map(|c| c.into_config())
    };
    let err =
        load("  sources: [xfcc]\n  trust_xfcc: true\n  xfcc: { proxy_mode: append_forward }\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("identity.xfcc.require_cert"), "{err}");
    for bad in [
        "  xfcc: { proxy_mode: forward_only }\n",
        "  xfcc: { format: yaml }\n",
        "  xfcc: { require_certs: true }\n",
    ] {
        let err = load(bad).unwrap_err().to_string();
        assert!(err.contains("identity.xfcc"), "{bad}: {err}");
    }
    let c = load("  sources: [xfcc]\n  trust_xfcc: true\n").unwrap();
    assert_eq!(c.identity.xfcc.proxy_mode, XfccProxyMode::SanitizeSet);
    assert!(!c.identity.xfcc.require_cert);
    assert_eq!(c.identity.xfcc.format, XfccFormat::Text);
    let c = load(
        "  sources: [xfcc]\n  trust_xfcc: true\n  xfcc: { proxy_mode: append_forward, require_cert: true, format: json }\n",
    )
    .unwrap();
    assert_eq!(c.identity.xfcc.proxy_mode, XfccProxyMode::AppendForward);
    assert_eq!(c.identity.xfcc.format, XfccFormat::Json);
}

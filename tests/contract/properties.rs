//! Property tests (proptest) over the request-facing parsers, the config loader and the check core.
//! The same properties as the cargo-fuzz targets under `fuzz/`, run with a fixed case budget in
//! the normal test run: never panic, never accept what the spec refuses, round trip where a
//! printer exists.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mesh_authz::telemetry::Metrics;
use mesh_authz::tools::issuer::{self, MintOptions};
use mesh_authz_core::check::{Checker, Decision, Headers, PeerInfo, Request};
use mesh_authz_core::config;
use mesh_authz_core::identity::SpiffeId;
use mesh_authz_core::identity::xfcc::{self, XfccKey};
use mesh_authz_core::request::HEADERS_READ;
use mesh_authz_core::revocation::MemoryStore;
use mesh_authz_core::token::Algorithm;
use mesh_authz_core::token::claims::{parse_claims, parse_claims_keeping};
use mesh_authz_core::token::extract;
use mesh_authz_core::token::jws;
use mesh_authz_core::token::verified::KeptClaims;
use proptest::prelude::*;

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn auth_headers(value: &str) -> HashMap<String, String> {
    HashMap::from([("authorization".to_string(), value.to_string())])
}

// ---------------------------------------------------------------- SPIFFE ID

fn spiffe_id() -> impl Strategy<Value = String> {
    (
        "[a-z0-9][a-z0-9._-]{0,20}",
        prop::collection::vec("[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,10}", 0..5),
    )
        .prop_map(|(td, segs)| {
            let mut s = format!("spiffe://{td}");
            for seg in segs {
                // `.` and `..` are not valid segments; the generator avoids them.
                let seg = if seg == "." || seg == ".." {
                    "x".into()
                } else {
                    seg
                };
                s.push('/');
                s.push_str(&seg);
            }
            s
        })
}

proptest! {
    #![proptest_config(cfg(2000))]

    #[test]
    fn spiffe_never_panics(s in "\\PC{0,80}") {
        let _ = SpiffeId::parse(&s);
    }

    #[test]
    fn spiffe_valid_ids_round_trip(s in spiffe_id()) {
        let id = SpiffeId::parse(&s).unwrap();
        prop_assert_eq!(id.as_str(), s.as_str());
        prop_assert_eq!(SpiffeId::parse(id.as_str()).unwrap(), id.clone());
        prop_assert_eq!(format!("spiffe://{}{}", id.trust_domain(), id.path()), s);
    }

    #[test]
    fn spiffe_refuses_tricks(s in spiffe_id(), trick in prop::sample::select(vec![
        "/", "/.", "/..", "//x", "?q", "#f", "%2F", ":8080", "/a b", "/\u{e9}",
    ])) {
        let bad = format!("{s}{trick}");
        prop_assert!(SpiffeId::parse(&bad).is_err(), "accepted {}", bad);
        prop_assert!(SpiffeId::parse(&s.replacen("spiffe", "SPIFFE", 1)).is_err());
    }
}

// ---------------------------------------------------------------- XFCC

fn xfcc_key() -> impl Strategy<Value = XfccKey> {
    prop::sample::select(vec![
        XfccKey::By,
        XfccKey::Hash,
        XfccKey::Cert,
        XfccKey::Chain,
        XfccKey::Subject,
        XfccKey::Uri,
        XfccKey::Dns,
    ])
}

/// Prints pairs the way Envoy does when it quotes: `key="value"` with `"` and `\` escaped.
fn print_xfcc(elements: &[Vec<(XfccKey, String)>]) -> String {
    elements
        .iter()
        .map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| {
                    let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
                    format!("{}=\"{escaped}\"", k.as_str())
                })
                .collect::<Vec<_>>()
                .join(";")
        })
        .collect::<Vec<_>>()
        .join(",")
}

proptest! {
    #![proptest_config(cfg(2000))]

    #[test]
    fn xfcc_never_panics_and_last_is_last(s in "[ -~]{0,120}") {
        match (xfcc::parse(&s), xfcc::last_element(&s)) {
            (Ok(all), Ok(last)) => prop_assert_eq!(all.last(), last.as_ref()),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert!(false, "parse and last_element disagree on {:?}", s),
        }
    }

    #[test]
    fn xfcc_print_parse_round_trip(
        elements in prop::collection::vec(
            prop::collection::vec((xfcc_key(), "[^\\x00-\\x1f\\x7f]{0,16}"), 1..4),
            1..4,
        )
    ) {
        let printed = print_xfcc(&elements);
        let pairs = xfcc::parse_pairs(&printed).unwrap();
        prop_assert_eq!(&pairs, &elements);
        // Reprinting is stable.
        prop_assert_eq!(print_xfcc(&pairs), printed);
    }

    #[test]
    fn xfcc_refuses_control_chars(prefix in "[a-z]{1,5}", c in 0u8..0x20) {
        let header = format!("uri=\"{prefix}{}\"", c as char);
        prop_assert!(xfcc::parse(&header).is_err());
    }
}

// ---------------------------------------------------------------- Bearer

proptest! {
    #![proptest_config(cfg(3000))]

    #[test]
    fn bearer_never_panics_and_returns_token68(v in "\\PC{0,60}") {
        if let Ok(Some(t)) = extract::bearer(&auth_headers(&v)) {
            prop_assert!(v.ends_with(t));
            prop_assert!(!v.contains(','));
            let body = t.trim_end_matches('=');
            prop_assert!(!body.is_empty());
            prop_assert!(body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)));
        }
    }

    #[test]
    fn bearer_extracts_any_token68(
        scheme in prop::sample::select(vec!["Bearer", "bearer", "BEARER", "bEaReR"]),
        spaces in 1usize..4,
        token in "[A-Za-z0-9._~+/-]{1,40}={0,2}",
    ) {
        let v = format!("{scheme}{}{token}", " ".repeat(spaces));
        let headers = auth_headers(&v);
        prop_assert_eq!(extract::bearer(&headers), Ok(Some(token.as_str())));
    }

    #[test]
    fn bearer_known_agrees_with_bearer(
        v in "\\PC{0,60}",
        known in "[A-Za-z0-9._~+/-]{1,30}={0,2}",
        shape in 0usize..6,
    ) {
        // Values around a known token, and arbitrary ones: the shortcut never changes the answer.
        let value = match shape {
            0 => format!("Bearer {known}"),
            1 => format!("bearer   {known}"),
            2 => format!("Bearer {known},Bearer {known}"),
            3 => format!("Bearer{known}"),
            4 => format!("Basic {known}"),
            _ => v,
        };
        let h = auth_headers(&value);
        prop_assert_eq!(
            extract::bearer_known(&h, |t| t == known),
            extract::bearer(&h)
        );
    }

    #[test]
    fn bearer_refuses_joined_and_other_schemes(a in "[A-Za-z0-9]{1,20}", b in "[A-Za-z0-9]{1,20}") {
        // Envoy joins a repeated header with ","; neither copy may be used.
        let refused = [
            format!("Bearer {a},Bearer {b}"),
            format!("Bearer {a}, Bearer {a}"),
            format!("Basic {a}"),
            format!("Bearer{a}"),
            format!("Bearer {a} {b}"),
        ];
        for v in &refused {
            let headers = auth_headers(v);
            prop_assert!(extract::bearer(&headers).is_err(), "accepted {:?}", v);
        }
    }
}

// ---------------------------------------------------------------- JWS and claims

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

proptest! {
    #![proptest_config(cfg(2000))]

    #[test]
    fn jws_never_panics(s in "[A-Za-z0-9._=+/-]{0,200}") {
        if let Ok(p) = jws::parse(&s) {
            prop_assert!(!p.signature.is_empty());
            let _ = parse_claims(&p.payload);
        }
    }

    #[test]
    fn claims_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_claims(&bytes);
    }

    #[test]
    fn jws_refuses_none_and_hmac(
        alg in prop::sample::select(vec!["none", "None", "NONE", "HS256", "HS384", "HS512", "hs256", "rs256", ""]),
        payload in "[a-z]{1,20}",
    ) {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let token = format!("{}.{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()), b64(b"sig"));
        prop_assert!(jws::parse(&token).is_err(), "accepted alg {}", alg);
    }

    #[test]
    fn claims_are_type_strict(
        field in prop::sample::select(vec!["exp", "nbf", "iat", "jti", "sub", "iss"]),
        bad in prop::sample::select(vec![r#""123""#, "1.5e400", "true", "null", "[1]", "{}", "12"]),
    ) {
        let mut obj = serde_json::json!({"iss": "https://i", "exp": 2_000_000_000i64});
        let numeric = matches!(field, "exp" | "nbf" | "iat");
        let value: serde_json::Value = match serde_json::from_str(bad) {
            Ok(v) => v,
            Err(_) => return Ok(()),
        };
        // A value of the right type is not "bad".
        if (numeric && value.is_number()) || (!numeric && value.is_string()) {
            return Ok(());
        }
        obj[field] = value;
        prop_assert!(parse_claims(obj.to_string().as_bytes()).is_err(), "{} = {} accepted", field, bad);
    }

    #[test]
    fn claims_refuse_duplicate_members(v1 in 1i64..3_000_000_000, v2 in 1i64..3_000_000_000) {
        let text = format!(r#"{{"iss":"https://i","exp":{v1},"exp":{v2}}}"#);
        prop_assert!(parse_claims(text.as_bytes()).is_err());
    }

    /// The verifier builds only the claims something reads; what it decides must not depend on
    /// that: the same registered claims, the same error, and the kept subset of the claims.
    #[test]
    fn claims_parse_the_same_whatever_is_kept(
        members in prop::collection::vec((claim_name(), claim_value()), 0..12),
        kept in prop::collection::vec(claim_name(), 0..4),
    ) {
        let text = format!(
            "{{{}}}",
            members.iter().map(|(n, v)| format!("{n:?}:{v}")).collect::<Vec<_>>().join(",")
        );
        let keep = KeptClaims::for_paths(kept.iter().map(String::as_str));
        let all = parse_claims(text.as_bytes());
        let some = parse_claims_keeping(text.as_bytes(), &keep);
        match (all, some) {
            (Ok(a), Ok(s)) => {
                prop_assert_eq!(
                    (&a.iss, &a.sub, &a.aud, a.exp, a.nbf, a.iat, &a.jti, &a.parent_jti),
                    (&s.iss, &s.sub, &s.aud, s.exp, s.nbf, s.iat, &s.jti, &s.parent_jti),
                );
                prop_assert_eq!((&a.scopes, &a.cnf_x5t_s256), (&s.scopes, &s.cnf_x5t_s256));
                let want: serde_json::Map<String, serde_json::Value> =
                    a.raw.into_iter().filter(|(k, _)| keep.keeps(k)).collect();
                prop_assert_eq!(want, s.raw);
            }
            (Err(a), Err(s)) => prop_assert_eq!(a, s, "{}", text),
            (a, s) => prop_assert!(false, "{} gave {:?} and {:?}", text, a.map(|_| ()), s.map(|_| ())),
        }
    }
}

/// Claim names: every registered one mesh-authz reads, and others.
fn claim_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "parent_jti",
        "scope",
        "scp",
        "cnf",
        "roles",
        "realm",
        "x",
    ])
    .prop_map(str::to_string)
}

/// Claim values of every JSON type, well and badly typed for each claim.
fn claim_value() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        r#""https://i""#,
        r#""a b""#,
        r#""\u0061""#,
        r#"["a","b"]"#,
        r#"["a",1]"#,
        "[]",
        "2000000000",
        "-1",
        "1.5",
        "1e400",
        "18446744073709551615",
        "true",
        "null",
        r#"{"x5t#S256":"abc"}"#,
        r#"{"x5t#S256":1}"#,
        r#"{"a":{"b":[1,2]}}"#,
    ])
}

// ---------------------------------------------------------------- config loader

/// Fragments a config is made of, valid and not.
fn config_text() -> impl Strategy<Value = String> {
    let lines = prop::sample::select(vec![
        "default_action: allow",
        "default_action: deny",
        "default_action: maybe",
        "limits: { max_token_bytes: 4096 }",
        "limits: { max_token_bytes: -1 }",
        "identity: { trust_xfcc: true, sources: [xfcc] }",
        "identity: { sources: [xfcc] }",
        "identity: { trust_domains: [cluster.local] }",
        "revocation: { store: memory }",
        "revocation: { store: redis }",
        "rules: [ { name: a, match: { path_prefix: /a } } ]",
        "rules: [ { name: a, match: { path_prefix: a } } ]",
        "rules: [ { name: a, allow_anonymous: true } ]",
        "providers: [ { name: p, issuer: https://i, audiences: [a], jwks: { uri: https://i/jwks } } ]",
        "providers: [ { name: p, issuer: https://i, jwks: { uri: https://i/jwks }, algorithms: [HS256] } ]",
        "providers: [ { name: p, issuer: https://i, jwks: { file: /x }, clock_skew: 5x } ]",
        "unknown_key: 1",
        "server: { grpc_addr: 127.0.0.1:1 }",
        "server: { grpc_addr: nope }",
        "logging: { format: json, level: info }",
        "- a\n- b",
        "{",
        "\"",
        "&a [*a, *a]",
        "",
    ]);
    prop::collection::vec(lines, 0..6).prop_map(|v| v.join("\n"))
}

proptest! {
    #![proptest_config(cfg(1000))]

    #[test]
    fn config_never_panics_on_text(s in "\\PC{0,200}") {
        let _ = config::from_str_with_env(&s, Vec::new());
    }

    #[test]
    fn config_accepted_round_trips(text in config_text()) {
        if let Ok(c) = config::from_str_with_env(&text, Vec::new()) {
            let printed = serde_json::to_string(&c).unwrap();
            let again = config::from_str_with_env(&printed, Vec::new());
            prop_assert!(again.is_ok(), "printed config refused: {}", printed);
            prop_assert_eq!(serde_json::to_string(&again.unwrap()).unwrap(), printed);
        }
    }

    #[test]
    fn config_refuses_hmac_and_unknown_keys(alg in prop::sample::select(vec!["HS256", "none", "hs512", "RS1"])) {
        let text = format!(
            "providers: [ {{ name: p, issuer: https://i, jwks: {{ uri: https://i/j }}, algorithms: [{alg}] }} ]"
        );
        prop_assert!(config::from_str_with_env(&text, Vec::new()).is_err());
        prop_assert!(config::from_str_with_env("rules: []\nbogus: 1", Vec::new()).is_err());
    }
}

// ---------------------------------------------------------------- check core

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://issuer.prop";
const AUDIENCE: &str = "prop-api";
const PEER_ID: &str = "spiffe://cluster.local/ns/a/sa/b";

struct Fixture {
    rt: tokio::runtime::Runtime,
    checker: Checker,
    admin: String,
    read: String,
    /// Signed by the trusted key but expired, for another audience or issuer: must be refused.
    refused: Vec<String>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = issuer::generate_key(Algorithm::RS256, 2048, "k1").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, &key.jwks_json).unwrap();
        let mint = |f: &dyn Fn(&mut MintOptions)| {
            let mut o = MintOptions {
                iss: ISSUER.into(),
                sub: "user-1".into(),
                aud: vec![AUDIENCE.into()],
                ttl: Duration::from_secs(600),
                now: NOW - 10,
                kid: Some("k1".into()),
                ..Default::default()
            };
            f(&mut o);
            issuer::mint(&key.private_pem, &o).unwrap()
        };
        let admin = mint(&|o| o.scope = Some("read admin".into()));
        let read = mint(&|o| o.scope = Some("read".into()));
        let refused = vec![
            mint(&|o| {
                o.scope = Some("admin".into());
                o.now = NOW - 10_000;
            }),
            mint(&|o| {
                o.scope = Some("admin".into());
                o.aud = vec!["other-api".into()];
            }),
            mint(&|o| {
                o.scope = Some("admin".into());
                o.iss = "https://other.prop".into();
            }),
        ];
        let yaml = format!(
            r#"
providers:
  - name: prop
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ file: "{}" }}
    claims_to_headers: {{ sub: x-auth-subject }}
identity:
  sources: [principal, certificate, xfcc]
  trust_xfcc: true
  trust_domains: [cluster.local]
rules:
  - name: public
    match: {{ path_prefix: /public }}
    allow_anonymous: true
  - name: admin
    match: {{ path_prefix: /admin }}
    require: {{ scopes: [admin] }}
  - name: internal
    match: {{ path_prefix: /internal }}
    require: {{ token: false, spiffe_ids: ["{PEER_ID}"] }}
  - name: rest
    match: {{ path_prefix: / }}
"#,
            jwks.display()
        );
        let compiled = mesh_authz_core::compile::from_str_with_env(&yaml, Vec::new()).unwrap();
        let metrics = Metrics::new();
        let (verifier, caches) =
            mesh_authz::jwks::build_verifier(&compiled, &metrics, &[]).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(mesh_authz::jwks::load_all(&caches));
        assert!(verifier.ready(), "JWKS file not loaded");
        let checker = Checker::new(
            &compiled,
            Arc::new(verifier),
            Arc::new(MemoryStore::new()),
            metrics.core_sink(),
        );
        Fixture {
            rt,
            checker,
            admin,
            read,
            refused,
            _dir: dir,
        }
    })
}

/// Headers that keep only some names and remember every name the check asked for.
#[derive(Debug)]
struct OnlyRead {
    map: HashMap<String, String>,
    asked: RefCell<Vec<String>>,
}

impl Headers for OnlyRead {
    fn header(&self, name: &str) -> Option<&str> {
        self.asked.borrow_mut().push(name.to_string());
        self.map.get(name).map(String::as_str)
    }
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Raw(String),
    Known(usize, &'static str),
    Mutated(usize, usize, u8),
    Suffixed(usize, String),
    Twice(usize, usize),
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        Just(Auth::None),
        "\\PC{0,40}".prop_map(Auth::Raw),
        (
            0usize..5,
            prop::sample::select(vec![
                "Bearer ", "bearer  ", "Bearer", "Basic ", "Bearer\t", " Bearer "
            ])
        )
            .prop_map(|(i, s)| Auth::Known(i, s)),
        (0usize..5, any::<usize>(), any::<u8>()).prop_map(|(i, p, b)| Auth::Mutated(i, p, b)),
        (0usize..5, "[ -~]{1,6}").prop_map(|(i, s)| Auth::Suffixed(i, s)),
        (0usize..5, 0usize..5).prop_map(|(a, b)| Auth::Twice(a, b)),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "/",
            "/admin",
            "/admin/",
            "/admin/x",
            "/adminx",
            "/ADMIN",
            "//admin",
            "/admin%2Fx",
            "/x/../admin",
            "/public",
            "/public/../admin",
            "/internal",
            "/internal/x",
            "",
            "admin",
        ])
        .prop_map(String::from),
        "/[a-z/.%]{0,20}",
    ]
}

proptest! {
    #![proptest_config(cfg(4000))]

    /// No allow on a token-requiring rule without one of the valid tokens that rule accepts.
    #[test]
    fn check_never_allows_without_a_valid_token(
        method in prop::sample::select(vec!["GET", "POST", "DELETE", "get", ""]),
        path in path(),
        auth in auth(),
        principal in prop_oneof![Just(String::new()), Just(PEER_ID.to_string()), "\\PC{0,30}"],
        xfcc in prop::option::of(prop_oneof![
            Just(format!("By=spiffe://cluster.local/ns/x/sa/y;URI={PEER_ID}")),
            Just(format!("URI={PEER_ID},URI=spiffe://cluster.local/ns/evil/sa/e")),
            "[ -~]{0,40}",
        ]),
        extra in prop::collection::hash_map("[a-z-]{1,12}", "\\PC{0,20}", 0..4),
    ) {
        let f = fixture();
        let tokens: Vec<&str> = [f.admin.as_str(), f.read.as_str()]
            .into_iter()
            .chain(f.refused.iter().map(String::as_str))
            .collect();
        let mut headers: HashMap<String, String> = extra;
        headers.remove("authorization");
        headers.remove("x-forwarded-client-cert");
        let value = match &auth {
            Auth::None => None,
            Auth::Raw(s) => Some(s.clone()),
            Auth::Known(i, scheme) => Some(format!("{scheme}{}", tokens[i % tokens.len()])),
            Auth::Mutated(i, p, b) => {
                let mut t = tokens[i % tokens.len()].as_bytes().to_vec();
                let at = p % t.len();
                t[at] = *b;
                Some(format!("Bearer {}", String::from_utf8_lossy(&t)))
            }
            Auth::Suffixed(i, s) => Some(format!("Bearer {}{s}", tokens[i % tokens.len()])),
            Auth::Twice(a, b) => Some(format!(
                "Bearer {},Bearer {}",
                tokens[a % tokens.len()],
                tokens[b % tokens.len()]
            )),
        };
        if let Some(v) = value {
            headers.insert("authorization".into(), v);
        }
        if let Some(x) = xfcc {
            headers.insert("x-forwarded-client-cert".into(), x);
        }
        let req = Request {
            method: method.into(),
            host: "svc".into(),
            path,
            headers,
            peer: PeerInfo { principal, certificate: String::new(), connection: None },
            request_id: None,
            context_extensions: HashMap::new(),
        };
        let decision = f.rt.block_on(f.checker.check(&req, NOW));
        // A host that copies only the checker's headers_read (the Envoy module) decides the same,
        // and the check looks up no other name.
        let read = f.checker.headers_read();
        prop_assert!(read.iter().all(|h| HEADERS_READ.contains(h)));
        let only = OnlyRead {
            map: req.headers.iter()
                .filter(|(k, _)| read.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            asked: RefCell::new(Vec::new()),
        };
        let narrow = Request {
            method: req.method.clone(),
            host: req.host.clone(),
            path: req.path.clone(),
            headers: only,
            peer: req.peer.clone(),
            request_id: req.request_id.clone(),
            context_extensions: req.context_extensions.clone(),
        };
        prop_assert_eq!(&f.rt.block_on(f.checker.check(&narrow, NOW)), &decision);
        for name in narrow.headers.asked.borrow().iter() {
            prop_assert!(read.contains(&name.as_str()), "the check read {}", name);
        }
        if let Decision::Allow(allowed) = decision {
            // Every header an allow touches is one the checker names as written (the module
            // skips removing a written header the request does not carry).
            let written = f.checker.headers_written();
            for name in allowed.set_headers.iter().map(|(k, _)| k).chain(&allowed.remove_headers) {
                prop_assert!(written.iter().any(|w| w == name), "{} is not in headers_written", name);
            }
            let rule = allowed.rule.clone().expect("default deny: an allow names its rule");
            let token = extract::bearer(&req.headers).ok().flatten();
            match rule.as_str() {
                "public" => {}
                "admin" => prop_assert_eq!(token, Some(f.admin.as_str())),
                "rest" => prop_assert!(
                    token == Some(f.admin.as_str()) || token == Some(f.read.as_str()),
                    "allow without a valid token: {:?}", req
                ),
                "internal" => {
                    let x = req.headers.get("x-forwarded-client-cert").map(String::as_str).unwrap_or("");
                    prop_assert!(req.peer.principal == PEER_ID || x.contains(PEER_ID));
                }
                other => prop_assert!(false, "unknown rule {}", other),
            }
            if rule != "public" {
                prop_assert!(allowed.remove_headers.iter().any(|h| h == "authorization"));
            }
            prop_assert!(
                allowed.set_headers.iter().any(|(k, _)| k == "x-auth-subject")
                    || allowed.remove_headers.iter().any(|h| h == "x-auth-subject")
            );
        }
    }
}

/// The fixture itself works: the valid tokens are allowed where they should be (so the property
/// above is not vacuous).
#[test]
fn check_fixture_allows_valid_tokens() {
    let f = fixture();
    let run = |path: &str, token: &str| {
        let req = Request {
            method: "GET".into(),
            host: "svc".into(),
            path: path.into(),
            headers: HashMap::from([("authorization".into(), format!("Bearer {token}"))]),
            peer: PeerInfo::default(),
            request_id: None,
            context_extensions: HashMap::new(),
        };
        f.rt.block_on(f.checker.check(&req, NOW))
    };
    assert!(run("/admin/x", &f.admin).is_allow());
    assert!(run("/x", &f.read).is_allow());
    assert!(!run("/admin/x", &f.read).is_allow());
    for t in &f.refused {
        assert!(!run("/x", t).is_allow());
    }
}

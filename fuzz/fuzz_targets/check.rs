//! A whole request through `Checker::check` with a fixed config and a JWKS file.
//!
//! Oracle: the fuzzer cannot forge an RS256 signature, so every allow on a token-requiring rule
//! must carry (as its one Bearer token) one of the tokens minted below that the rule accepts:
//! `admin` for `/admin`, `admin` or `read` elsewhere; never `expired`, `wrong_aud` or
//! `other_issuer`, and never anything else. The mTLS-only rule `/internal` may only allow the
//! configured SPIFFE ID. Nothing may panic and no rule-less allow exists (default deny).
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mesh_authz::telemetry::Metrics;
use mesh_authz::tools::issuer::{self, MintOptions};
use mesh_authz_core::check::{Checker, Decision, PeerInfo, Request};
use mesh_authz_core::revocation::MemoryStore;
use mesh_authz_core::token::Algorithm;
use mesh_authz_core::token::extract;

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://issuer.fuzz";
const AUDIENCE: &str = "fuzz-api";
const PEER_ID: &str = "spiffe://cluster.local/ns/a/sa/b";

struct Fixture {
    rt: tokio::runtime::Runtime,
    checker: Checker,
    admin: String,
    read: String,
    /// Signed by the trusted key, but must be refused.
    refused: Vec<String>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = issuer::generate_key(Algorithm::RS256, 2048, "k1").expect("key");
        let dir = tempfile::tempdir().expect("tempdir");
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, &key.jwks_json).expect("write jwks");
        let mint = |f: &dyn Fn(&mut MintOptions)| {
            let mut o = MintOptions {
                iss: ISSUER.into(),
                sub: "user-1".into(),
                aud: vec![AUDIENCE.into()],
                ttl: Duration::from_secs(600),
                now: NOW - 10,
                kid: Some("k1".into()),
                jti: Some("jti-1".into()),
                ..Default::default()
            };
            f(&mut o);
            issuer::mint(&key.private_pem, &o).expect("mint")
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
                o.iss = "https://other.fuzz".into();
            }),
        ];
        let yaml = format!(
            r#"
providers:
  - name: fuzz
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ file: {} }}
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
        let compiled =
            mesh_authz_core::compile::from_str_with_env(&yaml, Vec::new()).expect("fuzz config");
        let metrics = Metrics::new();
        let (verifier, caches) =
            mesh_authz::jwks::build_verifier(&compiled, &metrics, &[]).expect("verifier");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Load the keys once; no background refresh.
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

/// How the `authorization` header is made.
#[derive(Arbitrary, Debug)]
enum Auth {
    None,
    Raw(String),
    /// `<scheme> <token>` with one of the fixture tokens (index) and an arbitrary scheme spelling.
    Known {
        which: u8,
        scheme: String,
        spaces: u8,
    },
    /// A fixture token with one byte replaced.
    Mutated {
        which: u8,
        pos: u16,
        byte: u8,
    },
    /// A fixture token with a suffix appended.
    Suffixed {
        which: u8,
        suffix: String,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    path: String,
    path_choice: u8,
    host: String,
    auth: Auth,
    headers: Vec<(String, String)>,
    principal: String,
    principal_choice: bool,
    certificate: String,
    xfcc: Option<String>,
}

const METHODS: [&str; 5] = ["GET", "POST", "get", "DELETE", ""];
const PATHS: [&str; 8] = [
    "/admin",
    "/admin/x",
    "/public",
    "/internal/y",
    "/",
    "/adminx",
    "/public/../admin",
    "",
];

fn token_of(f: &Fixture, which: u8) -> &str {
    let all: Vec<&str> = [f.admin.as_str(), f.read.as_str()]
        .into_iter()
        .chain(f.refused.iter().map(String::as_str))
        .collect();
    all[usize::from(which) % all.len()]
}

fuzz_target!(|input: Input| {
    let f = fixture();
    let mut headers: HashMap<String, String> = input
        .headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    headers.remove("authorization");
    let auth = match input.auth {
        Auth::None => None,
        Auth::Raw(s) => Some(s),
        Auth::Known {
            which,
            scheme,
            spaces,
        } => Some(format!(
            "{}{}{}",
            if scheme.is_empty() {
                "Bearer"
            } else {
                scheme.as_str()
            },
            " ".repeat(usize::from(spaces % 4)),
            token_of(f, which)
        )),
        Auth::Mutated { which, pos, byte } => {
            let mut t = token_of(f, which).as_bytes().to_vec();
            let i = usize::from(pos) % t.len();
            t[i] = byte;
            Some(format!("Bearer {}", String::from_utf8_lossy(&t)))
        }
        Auth::Suffixed { which, suffix } => Some(format!("Bearer {}{suffix}", token_of(f, which))),
    };
    if let Some(a) = auth {
        headers.insert("authorization".into(), a);
    }
    match input.xfcc {
        Some(x) => {
            headers.insert("x-forwarded-client-cert".into(), x);
        }
        None => {
            headers.remove("x-forwarded-client-cert");
        }
    }
    let path = if input.path_choice % 2 == 0 {
        input.path
    } else {
        PATHS[usize::from(input.path_choice / 2) % PATHS.len()].to_string()
    };
    let req = Request {
        method: METHODS[usize::from(input.method) % METHODS.len()].to_string(),
        host: input.host,
        path,
        headers,
        peer: PeerInfo {
            principal: if input.principal_choice {
                PEER_ID.to_string()
            } else {
                input.principal
            },
            certificate: input.certificate,
            connection: None,
        },
        request_id: None,
        context_extensions: Default::default(),
    };
    let decision = f.rt.block_on(f.checker.check(&req, NOW));
    let Decision::Allow(allowed) = decision else {
        return;
    };
    let rule = allowed
        .rule
        .as_deref()
        .expect("default deny: an allow names its rule");
    let token = extract::bearer(&req.headers).ok().flatten();
    match rule {
        "public" => {}
        "admin" => assert_eq!(
            token,
            Some(f.admin.as_str()),
            "admin allow without the admin token"
        ),
        "rest" => assert!(
            token == Some(f.admin.as_str()) || token == Some(f.read.as_str()),
            "allow without a valid token: {token:?}"
        ),
        "internal" => {
            let xfcc = req
                .headers
                .get("x-forwarded-client-cert")
                .map(String::as_str)
                .unwrap_or("");
            assert!(
                req.peer.principal == PEER_ID
                    || xfcc.contains(PEER_ID)
                    || !req.peer.certificate.is_empty(),
                "internal allow without the peer identity"
            );
        }
        other => panic!("unknown rule {other}"),
    }
    if rule != "public" {
        assert!(allowed.remove_headers.iter().any(|h| h == "authorization"));
    }
    // A client-sent x-auth-subject never survives: it is set (overwritten) or removed.
    assert!(
        allowed
            .set_headers
            .iter()
            .any(|(k, _)| k == "x-auth-subject")
            || allowed.remove_headers.iter().any(|h| h == "x-auth-subject")
    );
});

//! Unit tests of `policy`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::*;
use crate::config::MatchConfig;
use crate::identity::Source;
use crate::token::Algorithm;
use crate::token::verify::{Claims, KeptClaims};

fn rule(name: &str, prefix: Option<&str>, require: RequireConfig) -> RuleConfig {
    RuleConfig {
        name: name.to_string(),
        matcher: MatchConfig {
            path_prefix: prefix.map(str::to_string),
            ..MatchConfig::default()
        },
        allow_anonymous: false,
        require,
        mode: RuleMode::Enforce,
    }
}

fn compile_one(require: RequireConfig) -> Rule {
    let policy = Policy::new(&[rule("r", None, require)], Action::Deny).unwrap();
    policy.rules()[0].clone()
}

fn token(scopes: &[&str], raw: Value, cnf: Option<String>) -> VerifiedToken {
    let raw: Map<String, Value> = raw.as_object().cloned().unwrap_or_default();
    let claims = Claims {
        iss: "https://issuer".into(),
        sub: Some("alice".into()),
        aud: vec!["api".into()],
        exp: 2_000_000_000,
        nbf: None,
        iat: None,
        jti: None,
        parent_jti: None,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        cnf_x5t_s256: cnf,
        raw,
    };
    VerifiedToken::new(
        0,
        Algorithm::RS256,
        claims,
        &Default::default(),
        &KeptClaims::All,
    )
}

/// A peer without a SPIFFE ID (`SpiffeId` cannot be built until identity lands).
fn peer(cert: Option<[u8; 32]>) -> PeerIdentity {
    PeerIdentity {
        spiffe_id: None,
        source: Source::Certificate,
        cert_sha256: cert,
        dns_sans: vec![],
        subject: Some("CN=client".into()),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn reasons_are_distinct() {
    let all = [
        Unmet::PeerRequired,
        Unmet::SpiffeIdNotAllowed,
        Unmet::TrustDomainNotAllowed,
        Unmet::TokenRequired,
        Unmet::InsufficientScope,
        Unmet::ClaimMismatch,
        Unmet::BoundTokenMismatch,
    ];
    let set: std::collections::HashSet<_> = all.iter().map(Unmet::reason).collect();
    assert_eq!(set.len(), all.len());
}

#[test]
fn requires_flags() {
    let none = RequireConfig {
        token: false,
        ..RequireConfig::default()
    };
    let cases: &[(RequireConfig, bool, bool)] = &[
        (RequireConfig::default(), true, false),
        (none.clone(), false, false),
        (
            RequireConfig {
                peer: true,
                ..none.clone()
            },
            false,
            true,
        ),
        (
            RequireConfig {
                scopes: strings(&["a"]),
                ..none.clone()
            },
            true,
            false,
        ),
        (
            RequireConfig {
                claims: BTreeMap::from([("r".to_string(), strings(&["x"]))]),
                ..none.clone()
            },
            true,
            false,
        ),
        (
            RequireConfig {
                bound_token: true,
                ..none.clone()
            },
            true,
            true,
        ),
        (
            RequireConfig {
                spiffe_ids: strings(&["spiffe://td/a"]),
                ..none.clone()
            },
            false,
            true,
        ),
        (
            RequireConfig {
                spiffe_id_prefixes: strings(&["spiffe://td/"]),
                ..none.clone()
            },
            false,
            true,
        ),
        (
            RequireConfig {
                trust_domains: strings(&["td"]),
                ..none.clone()
            },
            false,
            true,
        ),
    ];
    for (i, (req, want_token, want_peer)) in cases.iter().enumerate() {
        let r = compile_one(req.clone());
        assert_eq!(r.requires_token(), *want_token, "case {i} token");
        assert_eq!(r.requires_peer(), *want_peer, "case {i} peer");
        assert!(!r.allow_anonymous());
    }

    let mut anon = rule("anon", Some("/healthz"), RequireConfig::default());
    anon.allow_anonymous = true;
    let p = Policy::new(&[anon], Action::Deny).unwrap();
    let r = &p.rules()[0];
    assert!(r.allow_anonymous());
    assert!(!r.requires_token());
    assert!(!r.requires_peer());
    assert_eq!(r.evaluate(None, None), Ok(()));
}

#[test]
fn evaluate_every_unmet() {
    let hash = [9u8; 32];
    let thumb = URL_SAFE_NO_PAD.encode(hash);
    let tok = token(
        &["read"],
        json!({"role": "dev", "groups": ["a", "b"]}),
        Some(thumb.clone()),
    );
    let p = peer(Some(hash));

    // PeerRequired comes before TokenRequired.
    let r = compile_one(RequireConfig {
        peer: true,
        ..RequireConfig::default()
    });
    assert_eq!(r.evaluate(None, None), Err(Unmet::PeerRequired));
    assert_eq!(r.evaluate(Some(&p), None), Err(Unmet::TokenRequired));
    assert_eq!(r.evaluate(Some(&p), Some(&tok)), Ok(()));

    // Token only.
    let r = compile_one(RequireConfig::default());
    assert_eq!(r.evaluate(None, None), Err(Unmet::TokenRequired));
    assert_eq!(r.evaluate(None, Some(&tok)), Ok(()));

    // Nothing required.
    let r = compile_one(RequireConfig {
        token: false,
        ..RequireConfig::default()
    });
    assert_eq!(r.evaluate(None, None), Ok(()));

    // SPIFFE allow-list: a peer without a SPIFFE ID fails.
    let r = compile_one(RequireConfig {
        spiffe_ids: strings(&["spiffe://cluster.local/ns/a/sa/b"]),
        ..RequireConfig::default()
    });
    assert_eq!(r.evaluate(None, Some(&tok)), Err(Unmet::PeerRequired));
    assert_eq!(r.evaluate(Some(&p), None), Err(Unmet::TokenRequired));
    assert_eq!(
        r.evaluate(Some(&p), Some(&tok)),
        Err(Unmet::SpiffeIdNotAllowed)
    );
    let r = compile_one(RequireConfig {
        spiffe_id_prefixes: strings(&["spiffe://cluster.local/ns/a"]),
        ..RequireConfig::default()
    });
    assert_eq!(
        r.evaluate(Some(&p), Some(&tok)),
        Err(Unmet::SpiffeIdNotAllowed)
    );

    // Trust domains.
    let r = compile_one(RequireConfig {
        trust_domains: strings(&["cluster.local"]),
        ..RequireConfig::default()
    });
    assert_eq!(
        r.evaluate(Some(&p), Some(&tok)),
        Err(Unmet::TrustDomainNotAllowed)
    );

    // Identity checks come before token checks.
    let r = compile_one(RequireConfig {
        spiffe_ids: strings(&["spiffe://cluster.local/x"]),
        scopes: strings(&["admin"]),
        ..RequireConfig::default()
    });
    assert_eq!(
        r.evaluate(Some(&p), Some(&tok)),
        Err(Unmet::SpiffeIdNotAllowed)
    );

    // Scopes.
    let r = compile_one(RequireConfig {
        scopes: strings(&["read", "admin"]),
        ..RequireConfig::default()
    });
    assert_eq!(r.evaluate(None, Some(&tok)), Err(Unmet::InsufficientScope));
    let r = compile_one(RequireConfig {
        scopes: strings(&["read"]),
        token: false,
        ..RequireConfig::default()
    });
    assert_eq!(r.evaluate(None, None), Err(Unmet::TokenRequired));
    assert_eq!(r.evaluate(None, Some(&tok)), Ok(()));

    // Claims.
    let claims = |path: &str, vals: &[&str]| RequireConfig {
        claims: BTreeMap::from([(path.to_string(), strings(vals))]),
        ..RequireConfig::default()
    };
    assert_eq!(
        compile_one(claims("role", &["dev"])).evaluate(None, Some(&tok)),
        Ok(())
    );
    assert_eq!(
        compile_one(claims("groups", &["b"])).evaluate(None, Some(&tok)),
        Ok(())
    );
    assert_eq!(
        compile_one(claims("role", &["admin"])).evaluate(None, Some(&tok)),
        Err(Unmet::ClaimMismatch)
    );
    assert_eq!(
        compile_one(claims("absent", &["x"])).evaluate(None, Some(&tok)),
        Err(Unmet::ClaimMismatch)
    );
    // Scopes are checked before claims.
    let r = compile_one(RequireConfig {
        scopes: strings(&["admin"]),
        claims: BTreeMap::from([("absent".to_string(), strings(&["x"]))]),
        ..RequireConfig::default()
    });
    assert_eq!(r.evaluate(None, Some(&tok)), Err(Unmet::InsufficientScope));

    // Bound token.
    let r = compile_one(RequireConfig {
        bound_token: true,
        ..RequireConfig::default()
    });
    assert_eq!(r.evaluate(None, Some(&tok)), Err(Unmet::PeerRequired));
    assert_eq!(r.evaluate(Some(&p), None), Err(Unmet::TokenRequired));
    assert_eq!(r.evaluate(Some(&p), Some(&tok)), Ok(()));
    let other_peer = peer(Some([1u8; 32]));
    assert_eq!(
        r.evaluate(Some(&other_peer), Some(&tok)),
        Err(Unmet::BoundTokenMismatch)
    );
    let certless = peer(None);
    assert_eq!(
        r.evaluate(Some(&certless), Some(&tok)),
        Err(Unmet::BoundTokenMismatch)
    );
    let unbound = token(&["read"], json!({}), None);
    assert_eq!(
        r.evaluate(Some(&p), Some(&unbound)),
        Err(Unmet::BoundTokenMismatch)
    );
}

#[test]
fn select_first_match_and_default() {
    let mut health = rule("health", Some("/healthz"), RequireConfig::default());
    health.allow_anonymous = true;
    let mut admin = rule("admin", Some("/admin"), RequireConfig::default());
    admin.matcher.methods = strings(&["post", "DELETE"]);
    let api = rule("api", Some("/api"), RequireConfig::default());
    let policy = Policy::new(&[health, admin, api], Action::Allow).unwrap();
    assert_eq!(policy.default_action(), Action::Allow);

    let req = |method: &str, path: &str| Request {
        method: method.into(),
        host: "h".into(),
        path: path.into(),
        ..Request::default()
    };
    let pick = |r: Request| policy.select(&r).map(|r| r.name().to_string());
    assert_eq!(pick(req("GET", "/healthz")).as_deref(), Some("health"));
    assert_eq!(pick(req("POST", "/admin/x")).as_deref(), Some("admin"));
    assert_eq!(pick(req("GET", "/admin/x")), None);
    assert_eq!(pick(req("GET", "/api")).as_deref(), Some("api"));
    assert_eq!(pick(req("GET", "/apix")), None);
    assert_eq!(pick(req("GET", "/")), None);

    let empty = Policy::new(&[], Action::Deny).unwrap();
    assert!(empty.select(&req("GET", "/")).is_none());
    assert_eq!(empty.default_action(), Action::Deny);
}

#[test]
fn new_collects_every_error() {
    let mut r0 = rule("", Some("/a"), RequireConfig::default());
    r0.matcher.methods = strings(&["GETT"]);
    let mut r1 = rule("dup", Some("/b"), RequireConfig::default());
    r1.matcher.path_exact = Some("/b".into());
    let r2 = rule(
        "dup",
        Some("nope"),
        RequireConfig {
            spiffe_ids: strings(&["cluster.local/ns/x"]),
            ..RequireConfig::default()
        },
    );
    let mut r3 = rule(
        "anon",
        None,
        RequireConfig {
            scopes: strings(&["a"]),
            ..RequireConfig::default()
        },
    );
    r3.allow_anonymous = true;
    let mut r4 = rule(
        "anon2",
        None,
        RequireConfig {
            token: false,
            ..RequireConfig::default()
        },
    );
    r4.allow_anonymous = true;

    let errors = Policy::new(&[r0, r1, r2, r3, r4], Action::Deny).unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "rules[0].name: must not be empty",
            "rules[0].match.methods[0]: unknown HTTP method \"GETT\"",
            "rules[1].match: path_prefix and path_exact are exclusive",
            "rules[2].name: duplicate rule name \"dup\" (also rules[1])",
            "rules[2].match.path_prefix: must start with /",
            "rules[2].require.spiffe_ids[0]: not a SPIFFE ID",
            "rules[3].require: allow_anonymous excludes require",
            "rules[4].require: allow_anonymous excludes require",
        ]
    );
}

/// `tests/vectors/`, in the repository (provenance and licences in its README).
fn vectors_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

/// Envoy jwt_authn's NestedGoodToken / GoodTokenWithSpaces payloads drive the claim and scope
/// checks (payloads decoded without verification: only the claim shapes matter here).
#[test]
fn envoy_vector_claims() {
    let path = vectors_dir().join("envoy_jwt_authn/test_common_tokens.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    let payload = |name: &str| -> Map<String, Value> {
        let case = cases.iter().find(|c| c["name"] == name).unwrap();
        let tok = case["token"].as_str().unwrap();
        let body = tok.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap()
    };

    let nested = payload("NestedGoodToken");
    let tok = token(&[], Value::Object(nested), None);
    let table: &[(&str, &[&str], bool)] = &[
        ("nested.key-1", &["value1"], true),
        ("nested.nested-2.key-2", &["value2"], true),
        ("nested.nested-2.key-3", &["true"], true),
        ("nested.nested-2.key-4", &["9999"], true),
        ("nested.nested-2.key-5", &["str2"], true),
        ("nested.nested-2.key-5", &["str3"], false),
        ("nested.nested-2", &["value2"], false),
        ("nested.key-2", &["value2"], false),
        ("sub", &["test@example.com"], true),
    ];
    for (path, vals, want) in table {
        let r = compile_one(RequireConfig {
            claims: BTreeMap::from([(path.to_string(), strings(vals))]),
            ..RequireConfig::default()
        });
        let got = r.evaluate(None, Some(&tok));
        assert_eq!(got.is_ok(), *want, "{path} {vals:?}: {got:?}");
    }

    let spaces = payload("GoodTokenWithSpaces");
    let scope = spaces["scope"].as_str().unwrap();
    let scopes: Vec<&str> = scope.split(' ').collect();
    let tok = token(&scopes, Value::Object(spaces.clone()), None);
    let r = compile_one(RequireConfig {
        scopes: strings(&["read", "write"]),
        ..RequireConfig::default()
    });
    assert_eq!(r.evaluate(None, Some(&tok)), Ok(()));
    let r = compile_one(RequireConfig {
        scopes: strings(&["admin"]),
        ..RequireConfig::default()
    });
    assert_eq!(r.evaluate(None, Some(&tok)), Err(Unmet::InsufficientScope));
    let r = compile_one(RequireConfig {
        claims: BTreeMap::from([("test_num".to_string(), strings(&["1337"]))]),
        ..RequireConfig::default()
    });
    assert_eq!(r.evaluate(None, Some(&tok)), Ok(()));
}

#[test]
fn certificate_binding_is_checked_whenever_the_token_has_one() {
    let hash = [7u8; 32];
    let cnf = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, hash);
    let bound = token(&[], serde_json::json!({}), Some(cnf));
    let unbound = token(&[], serde_json::json!({}), None);
    assert_eq!(
        certificate_binding(&bound, Some(&peer(Some(hash)))),
        Some(true)
    );
    assert_eq!(
        certificate_binding(&bound, Some(&peer(Some([8u8; 32])))),
        Some(false)
    );
    assert_eq!(certificate_binding(&bound, Some(&peer(None))), Some(false));
    assert_eq!(certificate_binding(&bound, None), Some(false));
    assert_eq!(certificate_binding(&unbound, Some(&peer(Some(hash)))), None);
    assert_eq!(certificate_binding(&unbound, None), None);
}

#[test]
fn dry_run_rules_are_passed_over_by_select_and_listed_before_the_deciding_rule() {
    let mut shadow = rule("orders-v2", Some("/orders"), RequireConfig::default());
    shadow.mode = RuleMode::DryRun;
    let mut shadow2 = rule("all-v2", Some("/"), RequireConfig::default());
    shadow2.mode = RuleMode::DryRun;
    let orders = rule("orders", Some("/orders"), RequireConfig::default());
    let policy = Policy::new(&[shadow, shadow2, orders], Action::Deny).unwrap();
    assert!(policy.rules()[0].dry_run() && !policy.rules()[2].dry_run());
    let req = |path: &str| -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            ..Request::default()
        }
    };
    let names = |(rule, dry): (Option<&Rule>, Vec<&Rule>)| {
        (
            rule.map(|r| r.name().to_string()),
            dry.iter().map(|r| r.name().to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        policy.select(&req("/orders/1")).map(Rule::name),
        Some("orders")
    );
    assert_eq!(
        names(policy.select_with_dry_runs(&req("/orders/1"))),
        (
            Some("orders".into()),
            vec!["orders-v2".into(), "all-v2".into()]
        )
    );
    // Only dry-run rules match: nothing decides (the default action does).
    assert_eq!(policy.select(&req("/other")).map(Rule::name), None);
    assert_eq!(
        names(policy.select_with_dry_runs(&req("/other"))),
        (None, vec!["all-v2".into()])
    );
}

#[test]
fn dry_run_on_an_anonymous_rule_is_refused() {
    let mut r = rule("open", Some("/"), RequireConfig::default());
    r.allow_anonymous = true;
    r.mode = RuleMode::DryRun;
    let errors = Policy::new(&[r], Action::Deny).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "rules[0].mode: dry_run has no effect on an allow_anonymous rule (it never denies)"
    );
}

#[test]
fn mode_and_context_parse_and_unknown_values_are_refused() {
    let ok: Vec<RuleConfig> = serde_saphyr::from_str(
        "- name: a\n  mode: dry_run\n  match: { context: { route: orders } }\n",
    )
    .unwrap();
    assert_eq!(ok[0].mode, RuleMode::DryRun);
    assert_eq!(ok[0].matcher.context["route"], "orders");
    let default: Vec<RuleConfig> = serde_saphyr::from_str("- name: a\n").unwrap();
    assert_eq!(default[0].mode, RuleMode::Enforce);
    for bad in [
        "- name: a\n  mode: shadow\n",
        "- name: a\n  match: { context: { route: [a, b] } }\n",
        "- name: a\n  match: { contexts: { route: a } }\n",
    ] {
        assert!(
            serde_saphyr::from_str::<Vec<RuleConfig>>(bad).is_err(),
            "{bad}"
        );
    }
}

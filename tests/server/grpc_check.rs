//! End to end over gRPC: a real mesh-authz server, a JWKS over real HTTP, an envoy-types client.

use std::time::Duration;

use crate::common::*;
use envoy_types::ext_authz::v3::pb::HeaderAppendAction;
use mesh_authz_core::token::Algorithm;

const SPIFFE_OK: &str = "spiffe://cluster.local/ns/shop/sa/frontend";
const OVERWRITE: i32 = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;

fn config(jwks_uri: &str, extra: &str) -> String {
    format!(
        r#"
providers:
  - name: corp
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ uri: "{jwks_uri}", refresh_interval: 5m, min_refetch_interval: 1s }}
    algorithms: [RS256, ES256]
    claims_to_headers: {{ sub: x-auth-subject, scope: x-auth-scope }}
identity:
  trust_domains: [cluster.local]
{extra}
rules:
  - name: public-health
    match: {{ path_prefix: /healthz }}
    allow_anonymous: true
  - name: admin
    match: {{ path_prefix: /admin, methods: [POST, DELETE] }}
    require:
      spiffe_ids: [spiffe://cluster.local/ns/ops/sa/admin]
      scopes: [admin]
  - name: bound
    match: {{ path_prefix: /bound }}
    require: {{ bound_token: true }}
  - name: mtls-only
    match: {{ path_prefix: /internal }}
    require: {{ token: false, trust_domains: [cluster.local] }}
  - name: api
    match: {{ path_prefix: /api }}
    require: {{ token: true, peer: true }}
default_action: deny
"#
    )
}

async fn env_with(extra: &str) -> Env {
    Env::start(|uri| config(uri, extra)).await
}

async fn env() -> Env {
    env_with("").await
}

#[tokio::test]
async fn valid_token_and_peer_are_allowed_with_identity_headers() {
    let mut e = env().await;
    let token = mint(&e.key, "alice", |o| o.scope = Some("read write".into()));
    let r = check(
        &mut e.client,
        Req::get("/api/orders").bearer(&token).principal(SPIFFE_OK),
    )
    .await;
    assert_eq!(verdict(&r), (200, 0), "reason {}", reason(&r));
    let set = set_headers(&r);
    assert_eq!(set["x-auth-subject"], ("alice".to_string(), OVERWRITE));
    assert_eq!(set["x-auth-scope"], ("read write".to_string(), OVERWRITE));
    assert_eq!(set["x-auth-spiffe-id"], (SPIFFE_OK.to_string(), OVERWRITE));
    assert!(removed_headers(&r).contains(&"authorization".to_string()));
    // No dynamic metadata on an allow by default: the response stays small.
    assert_eq!(r.dynamic_metadata, None);
}

#[tokio::test]
async fn allow_metadata_describes_the_allow_without_the_claims() {
    let mut e = env_with("server: { allow_metadata: true }").await;
    let token = mint(&e.key, "alice", |o| o.scope = Some("read write".into()));
    let r = check(
        &mut e.client,
        Req::get("/api/orders").bearer(&token).principal(SPIFFE_OK),
    )
    .await;
    assert_eq!(verdict(&r), (200, 0), "reason {}", reason(&r));
    let meta = format!("{:?}", r.dynamic_metadata);
    for want in ["mesh_authz", "corp", SPIFFE_OK, "\"api\""] {
        assert!(meta.contains(want), "{want} not in {meta}");
    }
    assert!(!meta.contains("alice"), "{meta}");
}

#[tokio::test]
async fn claims_to_metadata_puts_the_claims_in_dynamic_metadata() {
    let mut e = Env::start(|uri| {
        config(uri, "").replace(
            "claims_to_headers: { sub: x-auth-subject, scope: x-auth-scope }",
            "claims_to_headers: { sub: x-auth-subject }\n    claims_to_metadata: true",
        )
    })
    .await;
    let token = mint(&e.key, "alice", |o| o.scope = Some("read write".into()));
    let r = check(
        &mut e.client,
        Req::get("/api/orders").bearer(&token).principal(SPIFFE_OK),
    )
    .await;
    assert_eq!(verdict(&r), (200, 0), "reason {}", reason(&r));
    let meta = format!("{:?}", r.dynamic_metadata);
    assert!(
        meta.contains("claims") && meta.contains("alice") && meta.contains("read write"),
        "{meta}"
    );
    // The mapping really was replaced: only `sub` is injected now, `x-auth-scope` is not known.
    assert!(!set_headers(&r).contains_key("x-auth-scope"));
}

/// No rule reads `tenant` or `org`, so the verifier builds only what the provider itself reads:
/// the required claim and the claims rendered into headers must still be seen, on a miss and on
/// every cache hit.
#[tokio::test]
async fn required_claims_and_claim_headers_are_read_although_no_rule_reads_them() {
    let mut e = Env::start(|uri| {
        config(uri, "").replace(
            "claims_to_headers: { sub: x-auth-subject, scope: x-auth-scope }",
            "claims_to_headers: { sub: x-auth-subject, tenant: x-tenant, org.unit: x-unit }\n    \
             required_claims: [tenant]",
        )
    })
    .await;
    let token = mint(&e.key, "alice", |o| {
        o.extra.insert("tenant".into(), serde_json::json!("acme"));
        o.extra
            .insert("org".into(), serde_json::json!({ "unit": "payments" }));
        o.extra.insert("unread".into(), serde_json::json!([1, 2]));
    });
    for _ in 0..2 {
        let r = check(
            &mut e.client,
            Req::get("/api/orders").bearer(&token).principal(SPIFFE_OK),
        )
        .await;
        assert_eq!(verdict(&r), (200, 0), "reason {}", reason(&r));
        let set = set_headers(&r);
        assert_eq!(set["x-tenant"].0, "acme");
        assert_eq!(set["x-unit"].0, "payments");
        assert_eq!(set["x-auth-subject"].0, "alice");
    }
    let without = mint(&e.key, "bob", |_| {});
    let r = check(
        &mut e.client,
        Req::get("/api/orders")
            .bearer(&without)
            .principal(SPIFFE_OK),
    )
    .await;
    assert_eq!(
        (verdict(&r), reason(&r).as_str()),
        ((401, 16), "token_missing_claim")
    );
}

#[tokio::test]
async fn client_sent_identity_headers_cannot_be_smuggled() {
    let mut e = env().await;
    // Anonymous route, no token: every injectable header is removed upstream.
    let r = check(
        &mut e.client,
        Req::get("/healthz").header("x-auth-subject", "root"),
    )
    .await;
    assert_eq!(verdict(&r).0, 200);
    let removed = removed_headers(&r);
    for h in [
        "x-auth-subject",
        "x-auth-scope",
        "x-auth-spiffe-id",
        "authorization",
    ] {
        assert!(
            removed.contains(&h.to_string()),
            "{h} not removed: {removed:?}"
        );
    }
    // With a token lacking `scope`, x-auth-subject is overwritten and x-auth-scope removed.
    let token = mint(&e.key, "alice", |_| {});
    let r = check(
        &mut e.client,
        Req::get("/api/x")
            .bearer(&token)
            .principal(SPIFFE_OK)
            .header("x-auth-scope", "admin"),
    )
    .await;
    assert_eq!(verdict(&r).0, 200);
    assert_eq!(set_headers(&r)["x-auth-subject"].1, OVERWRITE);
    assert!(removed_headers(&r).contains(&"x-auth-scope".to_string()));
}

#[tokio::test]
async fn missing_token_is_401_with_a_bearer_challenge_and_generic_body() {
    let mut e = env().await;
    let r = check(&mut e.client, Req::get("/api/orders").principal(SPIFFE_OK)).await;
    assert_eq!(verdict(&r), (401, 16));
    assert_eq!(reason(&r), "token_missing");
    let challenge = denied_header(&r, "www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(
        !challenge.contains("error="),
        "no error code without credentials: {challenge}"
    );
    assert_eq!(denied_body(&r), r#"{"error":"unauthorized"}"#);
}

#[tokio::test]
async fn bad_tokens_are_401_invalid_token() {
    let mut e = env().await;
    let other = key(Algorithm::RS256, "k1");
    let cases = [
        ("expired", mint(&e.key, "a", |o| o.now = now() - 3600)),
        (
            "wrong audience",
            mint(&e.key, "a", |o| o.aud = vec!["other".into()]),
        ),
        (
            "wrong issuer",
            mint(&e.key, "a", |o| o.iss = "https://evil.test".into()),
        ),
        ("foreign key, known kid", mint(&other, "a", |_| {})),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (name, token) in cases {
        let r = check(
            &mut e.client,
            Req::get("/api/x").bearer(&token).principal(SPIFFE_OK),
        )
        .await;
        assert_eq!(verdict(&r), (401, 16), "{name}: {}", reason(&r));
        let challenge = denied_header(&r, "www-authenticate").unwrap();
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{name}: {challenge}"
        );
        assert_eq!(denied_body(&r), r#"{"error":"unauthorized"}"#, "{name}");
    }
    // Two Authorization headers arrive joined by a comma: refused, not guessed.
    let good = mint(&e.key, "a", |_| {});
    let r = check(
        &mut e.client,
        Req::get("/api/x")
            .header("authorization", &format!("Bearer {good},Bearer {good}"))
            .principal(SPIFFE_OK),
    )
    .await;
    assert_eq!(verdict(&r), (401, 16));
}

#[tokio::test]
async fn foreign_trust_domain_and_missing_peer_are_403() {
    let mut e = env().await;
    let token = mint(&e.key, "alice", |_| {});
    let r = check(
        &mut e.client,
        Req::get("/api/x")
            .bearer(&token)
            .principal("spiffe://evil.org/ns/shop/sa/frontend"),
    )
    .await;
    assert_eq!(verdict(&r), (403, 7));
    assert_eq!(reason(&r), "peer_trust_domain_not_trusted");
    assert_eq!(denied_body(&r), r#"{"error":"forbidden"}"#);
    let r = check(&mut e.client, Req::get("/api/x").bearer(&token)).await;
    assert_eq!(verdict(&r), (403, 7));
    assert_eq!(reason(&r), "peer_required");
    let r = check(
        &mut e.client,
        Req::get("/api/x")
            .bearer(&token)
            .principal("spiffe://cluster.local//bad"),
    )
    .await;
    assert_eq!(verdict(&r), (403, 7));
}

#[tokio::test]
async fn admin_rule_needs_the_spiffe_id_and_the_scope() {
    let mut e = env().await;
    let admin_id = "spiffe://cluster.local/ns/ops/sa/admin";
    let admin = mint(&e.key, "root", |o| o.scope = Some("admin".into()));
    let reader = mint(&e.key, "bob", |o| o.scope = Some("read".into()));
    let ok = check(
        &mut e.client,
        Req::get("/admin/users")
            .method("POST")
            .bearer(&admin)
            .principal(admin_id),
    )
    .await;
    assert_eq!(verdict(&ok).0, 200, "{}", reason(&ok));
    let r = check(
        &mut e.client,
        Req::get("/admin/users")
            .method("POST")
            .bearer(&admin)
            .principal(SPIFFE_OK),
    )
    .await;
    assert_eq!(
        (verdict(&r).0, reason(&r).as_str()),
        (403, "spiffe_id_not_allowed")
    );
    let r = check(
        &mut e.client,
        Req::get("/admin/users")
            .method("POST")
            .bearer(&reader)
            .principal(admin_id),
    )
    .await;
    assert_eq!(
        (verdict(&r).0, reason(&r).as_str()),
        (403, "insufficient_scope")
    );
    assert!(
        denied_header(&r, "www-authenticate")
            .unwrap()
            .contains("insufficient_scope")
    );
    // GET /admin matches no rule (methods differ): default deny.
    let r = check(
        &mut e.client,
        Req::get("/admin/users").bearer(&admin).principal(admin_id),
    )
    .await;
    assert_eq!(
        (verdict(&r).0, reason(&r).as_str()),
        (403, "no_matching_rule")
    );
}

#[tokio::test]
async fn certificate_bound_token_works_only_with_its_certificate() {
    let mut e = env().await;
    let pki = Pki::new();
    let (cert, _) = pki.leaf(SPIFFE_OK);
    let (other_cert, _) = pki.leaf(SPIFFE_OK);
    let bound = mint(&e.key, "alice", |o| {
        o.cnf_x5t_s256 = Some(thumbprint(&cert))
    });
    let r = check(
        &mut e.client,
        Req::get("/bound").bearer(&bound).cert_pem(&cert),
    )
    .await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));
    assert_eq!(set_headers(&r)["x-auth-spiffe-id"].0, SPIFFE_OK);
    // Another certificate, or none: the token is invalid here (RFC 8705 §3), on this rule and on
    // a rule that does not ask for a bound token.
    for req in [
        Req::get("/bound").bearer(&bound).cert_pem(&other_cert),
        Req::get("/bound").bearer(&bound).principal(SPIFFE_OK),
        Req::get("/api/x").bearer(&bound).cert_pem(&other_cert),
        Req::get("/api/x").bearer(&bound).principal(SPIFFE_OK),
    ] {
        let r = check(&mut e.client, req).await;
        assert_eq!(
            (verdict(&r).0, reason(&r).as_str()),
            (401, "token_binding_mismatch")
        );
        assert_eq!(
            denied_header(&r, "www-authenticate").as_deref(),
            Some(r#"Bearer realm="mesh-authz", error="invalid_token""#)
        );
    }
    let r = check(
        &mut e.client,
        Req::get("/api/x").bearer(&bound).cert_pem(&cert),
    )
    .await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));
    let unbound = mint(&e.key, "alice", |_| {});
    let r = check(
        &mut e.client,
        Req::get("/bound").bearer(&unbound).cert_pem(&cert),
    )
    .await;
    assert_eq!(
        (verdict(&r).0, reason(&r).as_str()),
        (403, "bound_token_mismatch")
    );
}

#[tokio::test]
async fn xfcc_is_ignored_unless_trusted_and_then_only_its_last_element() {
    let mut e = env().await;
    let xfcc = format!("By=spiffe://cluster.local/ns/shop/sa/api;URI={SPIFFE_OK}");
    // Untrusted: the header proves nothing, so an mTLS-only rule sees no peer.
    let r = check(
        &mut e.client,
        Req::get("/internal/x").header("x-forwarded-client-cert", &xfcc),
    )
    .await;
    assert_eq!((verdict(&r).0, reason(&r).as_str()), (403, "peer_required"));

    let mut t = env_with("  sources: [xfcc]\n  trust_xfcc: true\n").await;
    let r = check(
        &mut t.client,
        Req::get("/internal/x").header("x-forwarded-client-cert", &xfcc),
    )
    .await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));
    assert_eq!(set_headers(&r)["x-auth-spiffe-id"].0, SPIFFE_OK);
    // Behind SANITIZE_SET (the default `identity.xfcc.proxy_mode`) a second element can only be
    // forged (a ',' in a certificate SAN splits the proxy's element): the header is refused.
    let spoofed =
        "URI=spiffe://cluster.local/ns/ops/sa/admin,URI=spiffe://evil.org/ns/x/sa/y".to_string();
    let r = check(
        &mut t.client,
        Req::get("/internal/x").header("x-forwarded-client-cert", &spoofed),
    )
    .await;
    assert_eq!(
        (verdict(&r).0, reason(&r).as_str()),
        (403, "peer_invalid_xfcc")
    );
    // One element from a foreign trust domain.
    let r = check(
        &mut t.client,
        Req::get("/internal/x")
            .header("x-forwarded-client-cert", "URI=spiffe://evil.org/ns/x/sa/y"),
    )
    .await;
    assert_eq!(
        (verdict(&r).0, reason(&r).as_str()),
        (403, "peer_trust_domain_not_trusted")
    );
}

#[tokio::test]
async fn revocation_by_jti_subject_and_parent() {
    let mut e = env().await;
    let store = e.server.revocation.clone();
    let parent = mint(&e.key, "carol", |o| o.jti = Some("parent-1".into()));
    let child = mint(&e.key, "dave", |o| o.parent_jti = Some("parent-1".into()));
    let victim = mint(&e.key, "erin", |o| o.jti = Some("j-1".into()));
    let subject = mint(&e.key, "frank", |o| o.now = now() - 10);
    for t in [&parent, &child, &victim, &subject] {
        let r = check(
            &mut e.client,
            Req::get("/api/x").bearer(t).principal(SPIFFE_OK),
        )
        .await;
        assert_eq!(verdict(&r).0, 200);
    }
    store.revoke_jti("j-1", now() + 600).await.unwrap();
    store.revoke_jti("parent-1", now() + 600).await.unwrap();
    store.revoke_subject("frank", now()).await.unwrap();
    for t in [&parent, &child, &victim, &subject] {
        let r = check(
            &mut e.client,
            Req::get("/api/x").bearer(t).principal(SPIFFE_OK),
        )
        .await;
        assert_eq!((verdict(&r).0, reason(&r).as_str()), (401, "token_revoked"));
    }
    // A token of frank issued after the cut-off is fine.
    let fresh = mint(&e.key, "frank", |o| o.now = now() + 5);
    let r = check(
        &mut e.client,
        Req::get("/api/x").bearer(&fresh).principal(SPIFFE_OK),
    )
    .await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));
}

#[tokio::test]
async fn a_key_added_to_the_jwks_while_running_is_accepted_without_restart() {
    let mut e = env().await;
    let rotated = key(Algorithm::ES256, "k2");
    let token = mint(&rotated, "alice", |_| {});
    let r = check(
        &mut e.client,
        Req::get("/api/x").bearer(&token).principal(SPIFFE_OK),
    )
    .await;
    assert_eq!(
        (verdict(&r).0, reason(&r).as_str()),
        (401, "token_unknown_kid")
    );
    e.jwks
        .set(&merge_jwks(&[&e.key.jwks_json, &rotated.jwks_json]));
    tokio::time::sleep(Duration::from_millis(1100)).await; // min_refetch_interval: 1s
    let r = check(
        &mut e.client,
        Req::get("/api/x").bearer(&token).principal(SPIFFE_OK),
    )
    .await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));
}

#[tokio::test]
async fn unreachable_jwks_at_start_is_not_ready_and_denies_with_503() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}/jwks.json", dead.local_addr().unwrap());
    drop(dead);
    let server = start(&config(&uri, "")).await;
    let mut c = client(server.grpc_addr).await;
    let any = key(Algorithm::RS256, "k1");
    let token = mint(&any, "alice", |_| {});
    let r = check(
        &mut c,
        Req::get("/api/x").bearer(&token).principal(SPIFFE_OK),
    )
    .await;
    assert_eq!(
        (verdict(&r), reason(&r).as_str()),
        ((503, 14), "jwks_unavailable")
    );
    let ready = reqwest::get(format!("http://{}/readyz", server.http_addr))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let mut e = env().await;
    let base = format!("http://{}", e.server.http_addr);
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let _ = check(&mut e.client, Req::get("/api/x").principal(SPIFFE_OK)).await;
    let token = mint(&e.key, "alice", |_| {});
    let r = check(
        &mut e.client,
        Req::get("/api/orders").bearer(&token).principal(SPIFFE_OK),
    )
    .await;
    assert_eq!(verdict(&r), (200, 0), "reason {}", reason(&r));
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"mesh_authz_checks_total{decision="deny",reason="token_missing"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"mesh_authz_jwks_keys{provider="corp"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("mesh_authz_check_duration_seconds_bucket"),
        "{metrics}"
    );
    // The embedded store's lookups are counted, and a store that is not configured has no series.
    assert!(
        metrics
            .contains(r#"mesh_authz_revocation_lookups_total{outcome="active",source="memory"} 1"#),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"source="redis""#), "{metrics}");
    assert!(!metrics.contains(r#"source="cache""#), "{metrics}");

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", e.server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut serving = false;
    for _ in 0..40 {
        let s = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if s == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(serving, "gRPC health never reported SERVING");
}

#[tokio::test]
async fn requests_without_attributes_are_denied_not_errors() {
    let mut e = env().await;
    let r = e
        .client
        .check(envoy_types::ext_authz::v3::pb::CheckRequest::default())
        .await
        .expect("a CheckResponse, never a gRPC error")
        .into_inner();
    assert_ne!(verdict(&r).0, 200);
}

#[tokio::test]
async fn shutdown_reports_not_ready_and_stops_listening() {
    let e = env().await;
    let grpc = e.server.grpc_addr;
    e.server.shutdown().await;
    assert!(tokio::net::TcpStream::connect(grpc).await.is_err());
}

#[tokio::test]
async fn shutdown_lets_in_flight_checks_finish() {
    let e = env().await;
    // A token with an unknown kid makes its check wait on a (slow) JWKS refetch.
    let rotated = key(Algorithm::ES256, "k9");
    let token = mint(&rotated, "alice", |_| {});
    e.jwks
        .set(&merge_jwks(&[&e.key.jwks_json, &rotated.jwks_json]));
    e.jwks
        .delay_ms
        .store(700, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await; // past min_refetch_interval
    let mut c = e.client.clone();
    let in_flight = tokio::spawn(async move {
        check(
            &mut c,
            Req::get("/api/x").bearer(&token).principal(SPIFFE_OK),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    e.server.shutdown().await;
    let r = in_flight.await.unwrap();
    assert_eq!(
        verdict(&r).0,
        200,
        "the in-flight check finished normally: {}",
        reason(&r)
    );
}

#[tokio::test]
async fn claim_rules_see_nested_and_namespaced_claims_on_every_cache_hit() {
    // A cached token keeps only the claims rules can reach; this proves the ones they need stay.
    let mut e = Env::start(|uri| {
        config(uri, "").replace(
            "rules:\n",
            "rules:\n  - name: claims\n    match: { path_prefix: /claims }\n    require:\n      claims: { realm_access.roles: [admin], \"https://example.com/tier\": [gold] }\n",
        )
    })
    .await;
    let with_claims = |roles: serde_json::Value, tier: &str| {
        let tier = tier.to_string();
        mint(&e.key, "alice", move |o| {
            o.extra
                .insert("realm_access".into(), serde_json::json!({ "roles": roles }));
            o.extra
                .insert("https://example.com/tier".into(), serde_json::json!(tier));
            o.extra.insert("unrelated".into(), serde_json::json!("x"));
        })
    };
    let good = with_claims(serde_json::json!(["user", "admin"]), "gold");
    let wrong_role = with_claims(serde_json::json!(["user"]), "gold");
    let wrong_tier = with_claims(serde_json::json!(["admin"]), "silver");
    // Twice each: the second answer comes from the verified-token cache.
    for _ in 0..2 {
        let r = check(&mut e.client, Req::get("/claims/x").bearer(&good)).await;
        assert_eq!(verdict(&r), (200, 0), "reason {}", reason(&r));
        for bad in [&wrong_role, &wrong_tier] {
            let r = check(&mut e.client, Req::get("/claims/x").bearer(bad)).await;
            assert_eq!(verdict(&r), (403, 7));
            assert_eq!(reason(&r), "claim_mismatch");
        }
    }
    assert!(metric(&e.server, "mesh_authz_token_cache_total{outcome=\"hit\"}") >= 3.0);
}

//! Per-route context (`match.context`, from Envoy's `context_extensions`) and `mode: dry_run`
//! rules, over gRPC against a real mesh-authz server and a JWKS over real HTTP.

use std::collections::HashMap;

use crate::common::logs::Logs;
use crate::common::*;
use envoy_types::ext_authz::v3::pb::CheckResponse;
use envoy_types::pb::google::protobuf::value::Kind;

const SPIFFE_OK: &str = "spiffe://cluster.local/ns/shop/sa/frontend";

fn config(jwks_uri: &str) -> String {
    format!(
        r#"
providers:
  - name: corp
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ uri: "{jwks_uri}", refresh_interval: 5m, min_refetch_interval: 1s }}
    algorithms: [RS256]
    claims_to_headers: {{ sub: x-auth-subject, scope: x-auth-scope }}
identity:
  trust_domains: [cluster.local]
rules:
  # Two routes on the same path: Envoy's per-route context picks the rule.
  - name: orders
    match: {{ path_prefix: /api, context: {{ route: orders }} }}
    require: {{ scopes: [orders] }}
  - name: public
    match: {{ path_prefix: /api, context: {{ route: public }} }}
    allow_anonymous: true
  # A stricter rule rolled out in dry run ahead of the one in force.
  - name: shadow-v2
    match: {{ path_prefix: /shadow }}
    mode: dry_run
    require: {{ scopes: [admin] }}
  - name: shadow
    match: {{ path_prefix: /shadow }}
    require: {{ token: true }}
  # A dry-run rule ahead of an anonymous one.
  - name: open-v2
    match: {{ path_prefix: /open }}
    mode: dry_run
    require: {{ token: true, peer: true }}
  - name: open
    match: {{ path_prefix: /open }}
    allow_anonymous: true
  # A dry-run rule that would let everyone in, ahead of a strict one.
  - name: locked-v2
    match: {{ path_prefix: /locked }}
    mode: dry_run
    require: {{ token: false }}
  - name: locked
    match: {{ path_prefix: /locked }}
    require: {{ scopes: [admin] }}
  # Only a dry-run rule: the default action decides.
  - name: lonely-v2
    match: {{ path_prefix: /lonely }}
    mode: dry_run
    require: {{ token: false }}
default_action: deny
"#
    )
}

/// One Check carrying Envoy's per-route `context_extensions`.
async fn check_ctx(e: &mut Env, req: Req, context: &[(&str, &str)]) -> CheckResponse {
    let mut request = check_request(req);
    if let Some(attrs) = request.attributes.as_mut() {
        attrs.context_extensions = context
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }
    e.client
        .check(request)
        .await
        .expect("Check must answer with a CheckResponse")
        .into_inner()
}

/// `mesh_authz.<key>` of the dynamic metadata, flattened to strings.
fn meta_object(r: &CheckResponse, key: &str) -> Option<HashMap<String, String>> {
    let m = r.dynamic_metadata.as_ref()?;
    let Some(Kind::StructValue(s)) = m.fields.get("mesh_authz")?.kind.clone() else {
        return None;
    };
    let Some(Kind::StructValue(inner)) = s.fields.get(key)?.kind.clone() else {
        return None;
    };
    Some(
        inner
            .fields
            .into_iter()
            .map(|(k, v)| {
                let v = match v.kind {
                    Some(Kind::StringValue(s)) => s,
                    Some(Kind::NumberValue(n)) => n.to_string(),
                    other => format!("{other:?}"),
                };
                (k, v)
            })
            .collect(),
    )
}

fn meta_rule(r: &CheckResponse) -> String {
    let Some(m) = r.dynamic_metadata.as_ref() else {
        return String::new();
    };
    match m.fields.get("mesh_authz").and_then(|v| v.kind.clone()) {
        Some(Kind::StructValue(s)) => match s.fields.get("rule").and_then(|v| v.kind.clone()) {
            Some(Kind::StringValue(r)) => r,
            _ => String::new(),
        },
        _ => String::new(),
    }
}

fn dry_run(rule: &str, reason: &str, status: u16) -> Option<HashMap<String, String>> {
    Some(HashMap::from([
        ("rule".to_string(), rule.to_string()),
        ("reason".to_string(), reason.to_string()),
        ("status".to_string(), status.to_string()),
        ("check_result".to_string(), "denied".to_string()),
    ]))
}

#[tokio::test]
async fn the_route_context_picks_the_rule_on_one_path() {
    let mut e = Env::start(config).await;
    let reader = mint(&e.key, "alice", |o| o.scope = Some("read".into()));
    let buyer = mint(&e.key, "bob", |o| o.scope = Some("orders".into()));
    let orders = [("route", "orders")];
    let public = [("route", "public")];

    let r = check_ctx(&mut e, Req::get("/api/items").bearer(&reader), &orders).await;
    assert_eq!(verdict(&r), (403, 7), "reason {}", reason(&r));
    assert_eq!(
        (reason(&r).as_str(), meta_rule(&r).as_str()),
        ("insufficient_scope", "orders")
    );
    let r = check_ctx(&mut e, Req::get("/api/items").bearer(&buyer), &orders).await;
    assert_eq!(verdict(&r), (200, 0), "reason {}", reason(&r));
    assert_eq!(set_headers(&r)["x-auth-subject"].0, "bob");
    let r = check_ctx(&mut e, Req::get("/api/items"), &public).await;
    assert_eq!(verdict(&r), (200, 0), "reason {}", reason(&r));
    // Extra keys Envoy sends (Istio, Envoy Gateway add their own) do not matter.
    let r = check_ctx(
        &mut e,
        Req::get("/api/items"),
        &[("route", "public"), ("door", "envoy-gateway")],
    )
    .await;
    assert_eq!(verdict(&r), (200, 0), "reason {}", reason(&r));
    // A route with no or another context: no rule, so the default (deny) applies.
    for ctx in [
        &[][..],
        &[("route", "Public")][..],
        &[("route", "other")][..],
    ] {
        let r = check_ctx(&mut e, Req::get("/api/items").bearer(&buyer), ctx).await;
        assert_eq!(verdict(&r), (403, 7), "{ctx:?}");
        assert_eq!(reason(&r), "no_matching_rule", "{ctx:?}");
    }
}

/// Attacker's view: context extensions come from Envoy's route config only. Headers named like
/// the key (or like the proto field) are just headers, whatever the client puts in them.
#[tokio::test]
async fn a_client_cannot_choose_the_context_with_headers() {
    let mut e = Env::start(config).await;
    let req = Req::get("/api/items")
        .header("route", "public")
        .header("x-route", "public")
        .header("context_extensions", "route=public")
        .header("x-envoy-context-route", "public");
    let r = check_ctx(&mut e, req.clone(), &[]).await;
    assert_eq!(verdict(&r), (403, 7));
    assert_eq!(reason(&r), "no_matching_rule");
    // On the orders route the header does not turn the request into a public one either.
    let r = check_ctx(&mut e, req, &[("route", "orders")]).await;
    assert_eq!(verdict(&r), (401, 16));
    assert_eq!(
        (reason(&r).as_str(), meta_rule(&r).as_str()),
        ("token_missing", "orders")
    );
}

#[tokio::test]
async fn a_dry_run_denial_is_reported_and_the_rule_in_force_decides() {
    let (logs, _guard) = Logs::capture(tracing::Level::INFO);
    let mut e = Env::start(config).await;
    let series = |reason: &str| {
        format!(r#"mesh_authz_checks_total{{decision="dry_run_deny",reason="{reason}"}}"#)
    };
    let allows = r#"mesh_authz_checks_total{decision="allow",reason="ok"}"#;
    let reader = mint(&e.key, "alice", |o| o.scope = Some("read".into()));
    let admin = mint(&e.key, "root", |o| o.scope = Some("admin".into()));

    // Would be denied by shadow-v2 (no admin scope); allowed by `shadow`, with the token's
    // identity (it is valid) and the client's copies of the injected headers gone.
    let r = check_ctx(
        &mut e,
        Req::get("/shadow/x")
            .bearer(&reader)
            .header("x-request-id", "req-dry-1")
            .header("x-auth-scope", "admin"),
        &[],
    )
    .await;
    assert_eq!(verdict(&r), (200, 0), "reason {}", reason(&r));
    assert_eq!(set_headers(&r)["x-auth-subject"].0, "alice");
    assert_eq!(set_headers(&r)["x-auth-scope"].0, "read");
    assert!(removed_headers(&r).contains(&"authorization".to_string()));
    assert_eq!(
        meta_object(&r, "dry_run"),
        dry_run("shadow-v2", "insufficient_scope", 403)
    );
    assert_eq!(metric(&e.server, &series("insufficient_scope")), 1.0);
    assert_eq!(metric(&e.server, allows), 1.0);
    let line = logs
        .text()
        .lines()
        .find(|l| l.contains("req-dry-1"))
        .unwrap_or_default()
        .to_string();
    for want in [
        "dry_run_deny",
        "insufficient_scope",
        "shadow-v2",
        "status=403",
        "/shadow/x",
    ] {
        assert!(line.contains(want), "{want} not in log line {line:?}");
    }
    assert!(!line.contains(&reader), "token logged: {line}");

    // Meets the dry-run rule too: nothing to report.
    let r = check_ctx(&mut e, Req::get("/shadow/x").bearer(&admin), &[]).await;
    assert_eq!(verdict(&r), (200, 0), "reason {}", reason(&r));
    assert_eq!(meta_object(&r, "dry_run"), None);
    assert_eq!(metric(&e.server, &series("insufficient_scope")), 1.0);

    // No token: both would deny; the rule in force answers, the dry run is reported beside it.
    let r = check_ctx(&mut e, Req::get("/shadow/x"), &[]).await;
    assert_eq!(verdict(&r), (401, 16));
    assert_eq!(
        (reason(&r).as_str(), meta_rule(&r).as_str()),
        ("token_missing", "shadow")
    );
    assert!(denied_header(&r, "www-authenticate").is_some());
    assert_eq!(
        meta_object(&r, "dry_run"),
        dry_run("shadow-v2", "token_missing", 401)
    );
    assert_eq!(metric(&e.server, &series("token_missing")), 1.0);

    // An invalid token: the rule in force refuses it exactly as without the dry-run rule.
    let expired = mint(&e.key, "alice", |o| o.now = now() - 3600);
    let r = check_ctx(&mut e, Req::get("/shadow/x").bearer(&expired), &[]).await;
    assert_eq!(verdict(&r), (401, 16));
    assert_eq!(meta_rule(&r), "shadow");
    let dry = meta_object(&r, "dry_run").expect("dry run reported");
    assert_eq!(dry["reason"], reason(&r));
}

/// Attacker's view: a dry-run rule ahead of an anonymous one sees bad credentials, and nothing
/// from them reaches the upstream; client-sent identity headers and `authorization` are stripped.
#[tokio::test]
async fn a_dry_run_never_injects_identity_from_failed_credentials() {
    let mut e = Env::start(config).await;
    let expired = mint(&e.key, "mallory", |o| {
        o.now = now() - 3600;
        o.scope = Some("admin".into());
    });
    let r = check_ctx(
        &mut e,
        Req::get("/open/x")
            .bearer(&expired)
            .principal("spiffe://evil.org/ns/x/sa/y")
            .header("x-auth-subject", "root")
            .header("x-auth-spiffe-id", SPIFFE_OK),
        &[],
    )
    .await;
    assert_eq!(verdict(&r), (200, 0), "reason {}", reason(&r));
    assert!(set_headers(&r).is_empty(), "{:?}", set_headers(&r));
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
    // The first failure (the foreign peer) is what the dry-run rule would have answered.
    assert_eq!(
        meta_object(&r, "dry_run"),
        dry_run("open-v2", "peer_trust_domain_not_trusted", 403)
    );
    // A valid token and peer meet open-v2: no report, identity injected as on any allow.
    let good = mint(&e.key, "alice", |_| {});
    let r = check_ctx(
        &mut e,
        Req::get("/open/x").bearer(&good).principal(SPIFFE_OK),
        &[],
    )
    .await;
    assert_eq!(verdict(&r), (200, 0));
    assert_eq!(meta_object(&r, "dry_run"), None);
    assert_eq!(set_headers(&r)["x-auth-subject"].0, "alice");
    assert_eq!(set_headers(&r)["x-auth-spiffe-id"].0, SPIFFE_OK);
}

/// Attacker's view: a dry-run rule that would allow everyone opens nothing.
#[tokio::test]
async fn a_dry_run_rule_never_lets_a_request_in() {
    let mut e = Env::start(config).await;
    let r = check_ctx(&mut e, Req::get("/locked/x"), &[]).await;
    assert_eq!(verdict(&r), (401, 16));
    assert_eq!(
        (reason(&r).as_str(), meta_rule(&r).as_str()),
        ("token_missing", "locked")
    );
    assert_eq!(meta_object(&r, "dry_run"), None);
    let r = check_ctx(&mut e, Req::get("/lonely/x"), &[]).await;
    assert_eq!(verdict(&r), (403, 7));
    assert_eq!(reason(&r), "no_matching_rule");
}

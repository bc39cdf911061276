//! The rules of the design document's example config, through YAML, compiled and selected.

use mesh_authz_core::check::Request;
use mesh_authz_core::config::{Action, RuleConfig};
use mesh_authz_core::policy::Policy;

const RULES: &str = r#"
- name: public-health
  match: { path_prefix: /healthz }
  allow_anonymous: true
- name: admin
  match: { path_prefix: /admin, methods: [POST, DELETE] }
  require:
    spiffe_ids: [spiffe://cluster.local/ns/ops/sa/admin]
    scopes: [admin]
    claims: { role: [a, b] }
    bound_token: true
- name: internal
  match: { hosts: ["*.internal.example.com"], path_prefix: / }
  require: { token: false, peer: true, trust_domains: [cluster.local] }
- name: api
  match: { path_prefix: / }
  require: { token: true, peer: true }
"#;

fn req(method: &str, host: &str, path: &str) -> Request {
    Request {
        method: method.into(),
        host: host.into(),
        path: path.into(),
        ..Request::default()
    }
}

#[test]
fn design_example_rules() {
    let rules: Vec<RuleConfig> = serde_saphyr::from_str(RULES).unwrap();
    let policy = Policy::new(&rules, Action::Deny).unwrap();
    assert_eq!(policy.rules().len(), 4);
    assert_eq!(policy.default_action(), Action::Deny);

    let pick = |r: Request| policy.select(&r).map(|r| r.name().to_string());
    let cases = [
        ("GET", "api.example.com", "/healthz", Some("public-health")),
        ("GET", "api.example.com", "/healthzz", Some("api")),
        ("POST", "api.example.com", "/admin/users", Some("admin")),
        ("GET", "api.example.com", "/admin/users", Some("api")),
        ("DELETE", "api.example.com", "/administrator", Some("api")),
        (
            "GET",
            "svc.INTERNAL.example.com:8443",
            "/x",
            Some("internal"),
        ),
        ("GET", "internal.example.com", "/x", Some("api")),
        ("GET", "api.example.com", "/", Some("api")),
    ];
    for (method, host, path, want) in cases {
        assert_eq!(
            pick(req(method, host, path)).as_deref(),
            want,
            "{method} {host} {path}"
        );
    }

    let by_name = |n: &str| policy.rules().iter().find(|r| r.name() == n).unwrap();
    let health = by_name("public-health");
    assert!(health.allow_anonymous() && !health.requires_token() && !health.requires_peer());
    let admin = by_name("admin");
    assert!(admin.requires_token() && admin.requires_peer());
    let internal = by_name("internal");
    assert!(!internal.requires_token() && internal.requires_peer());
    let api = by_name("api");
    assert!(api.requires_token() && api.requires_peer());

    // Anonymous rules accept anything; everything else needs what it says.
    assert!(health.evaluate(None, None).is_ok());
    assert_eq!(
        api.evaluate(None, None).unwrap_err().reason(),
        "peer_required"
    );
}

#[test]
fn invalid_yaml_rules_report_every_error() {
    let yaml = r#"
- name: a
  match: { path_prefix: /a, path_exact: /a }
- name: a
  match: { methods: [GET, FROB] }
  allow_anonymous: true
  require: { peer: true }
"#;
    let rules: Vec<RuleConfig> = serde_saphyr::from_str(yaml).unwrap();
    let errors = Policy::new(&rules, Action::Deny).unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "rules[0].match: path_prefix and path_exact are exclusive",
            "rules[1].name: duplicate rule name \"a\" (also rules[0])",
            "rules[1].match.methods[1]: unknown HTTP method \"FROB\"",
            "rules[1].require: allow_anonymous excludes require",
        ]
    );
}

//! `rules` and `default_action`: matching and requirements.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Allow or deny.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Deny (403).
    #[default]
    Deny,
    /// Allow.
    Allow,
}

/// One rule: where it applies and what it requires.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name, for logs, metrics and `--explain`.
    pub name: String,
    /// Which requests the rule applies to.
    #[serde(default, rename = "match")]
    pub matcher: MatchConfig,
    /// Let requests through without a token or peer (a valid token's claims are still injected).
    #[serde(default)]
    pub allow_anonymous: bool,
    /// What the caller must prove.
    #[serde(default)]
    pub require: RequireConfig,
    /// `enforce` (default) or `dry_run`: evaluated and reported, never deciding.
    #[serde(default)]
    pub mode: RuleMode,
}

/// Whether a rule decides the requests it matches or only reports what it would decide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleMode {
    /// The rule decides.
    #[default]
    Enforce,
    /// The rule is evaluated and a would-be denial logged, counted (`decision="dry_run_deny"`) and
    /// put in dynamic metadata; then the request is decided as if the rule were not there.
    DryRun,
}

/// Request matching; every condition given must hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Exact host names (case-insensitive, port ignored); `*.example.com` matches subdomains.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefix, segment-aware: `/admin` matches `/admin` and `/admin/x`, not `/administrator`.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Exact path.
    #[serde(default)]
    pub path_exact: Option<String>,
    /// HTTP methods (upper case).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Envoy's per-route `context_extensions` (gRPC ext_authz only): every key must be present
    /// with exactly this value.
    #[serde(default)]
    pub context: BTreeMap<String, String>,
}

/// What a matching request must prove.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequireConfig {
    /// A valid token is required (default true; set false for mTLS-only rules).
    #[serde(default = "default_true")]
    pub token: bool,
    /// A transport identity is required.
    #[serde(default)]
    pub peer: bool,
    /// The caller's SPIFFE ID must be one of these.
    #[serde(default)]
    pub spiffe_ids: Vec<String>,
    /// The caller's SPIFFE ID must start with one of these (segment-aware).
    #[serde(default)]
    pub spiffe_id_prefixes: Vec<String>,
    /// The caller's SPIFFE ID must be in one of these trust domains.
    #[serde(default)]
    pub trust_domains: Vec<String>,
    /// The token must carry every one of these scopes (`scope` string or `scp` array).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claim (dotted path) → accepted values; the claim (or one element of an array claim) must be
    /// one of them.
    #[serde(default)]
    pub claims: BTreeMap<String, Vec<String>>,
    /// RFC 8705: the token's `cnf.x5t#S256` must equal the client certificate's SHA-256 thumbprint.
    #[serde(default)]
    pub bound_token: bool,
}

fn default_true() -> bool {
    true
}

impl Default for RequireConfig {
    fn default() -> Self {
        Self {
            token: true,
            peer: false,
            spiffe_ids: Vec::new(),
            spiffe_id_prefixes: Vec::new(),
            trust_domains: Vec::new(),
            scopes: Vec::new(),
            claims: BTreeMap::new(),
            bound_token: false,
        }
    }
}

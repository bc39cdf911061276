//! The outcome of a check, independent of the transport that carries it.

use serde_json::{Map, Value};
pub use smol_str::SmolStr;

/// Allow or deny.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Let the request through.
    Allow(Allowed),
    /// Refuse it.
    Deny(Denied),
}

impl Decision {
    /// The fixed reason label (`ok` for an allow).
    pub fn reason(&self) -> &'static str {
        match self {
            Decision::Allow(_) => "ok",
            Decision::Deny(d) => d.reason,
        }
    }

    /// True for an allow.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// What an allow tells the proxy to do to the request. Its strings are [`SmolStr`]s: names and
/// most values fit inline, so answering a cached check allocates none of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allowed {
    /// The matched rule (`None`: no rule matched and `default_action` is allow).
    pub rule: Option<SmolStr>,
    /// Headers to set upstream, overwriting any the client sent.
    pub set_headers: Vec<(SmolStr, SmolStr)>,
    /// Headers to remove upstream (injectable names without a value, and `authorization`).
    pub remove_headers: Vec<SmolStr>,
    /// Facts for the proxy's dynamic metadata (claims, SPIFFE ID, rule).
    pub metadata: Map<String, Value>,
    /// The first denial a `mode: dry_run` rule would have answered (reported, not enforced).
    pub dry_run: Option<DryRunDenial>,
}

/// What a `mode: dry_run` rule would have answered: reported in the log, the metrics
/// (`decision="dry_run_deny"`) and dynamic metadata (`mesh_authz.dry_run`), never enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunDenial {
    /// The dry-run rule.
    pub rule: String,
    /// The status it would have answered.
    pub status: DenyStatus,
    /// Its precise reason.
    pub reason: &'static str,
}

impl DryRunDenial {
    /// The denial `rule` would have answered.
    pub fn new(rule: &str, denied: &Denied) -> Self {
        Self {
            rule: rule.to_string(),
            status: denied.status,
            reason: denied.reason,
        }
    }

    /// The dynamic metadata object (`mesh_authz.dry_run`), in the spirit of Envoy's ext_authz
    /// `shadow_mode` `ShadowDecision`: the check result, the status and why.
    pub fn to_metadata(&self) -> Value {
        let mut m = Map::new();
        m.insert("check_result".into(), Value::String("denied".into()));
        m.insert("status".into(), Value::from(self.status.code()));
        m.insert("reason".into(), Value::String(self.reason.into()));
        m.insert("rule".into(), Value::String(self.rule.clone()));
        Value::Object(m)
    }
}

/// The HTTP status of a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyStatus {
    /// 401: no usable credentials; carries `WWW-Authenticate`.
    Unauthorized,
    /// 403: a known caller that may not do this.
    Forbidden,
    /// 503: a dependency failed and the policy is to fail closed.
    Unavailable,
}

impl DenyStatus {
    /// The HTTP status code.
    pub fn code(self) -> u16 {
        match self {
            DenyStatus::Unauthorized => 401,
            DenyStatus::Forbidden => 403,
            DenyStatus::Unavailable => 503,
        }
    }

    /// The generic JSON body sent to the client (never the precise reason).
    pub fn body(self) -> &'static str {
        match self {
            DenyStatus::Unauthorized => r#"{"error":"unauthorized"}"#,
            DenyStatus::Forbidden => r#"{"error":"forbidden"}"#,
            DenyStatus::Unavailable => r#"{"error":"unavailable"}"#,
        }
    }
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// HTTP status.
    pub status: DenyStatus,
    /// Precise reason, for logs, metrics and `--explain`; never sent to the client.
    pub reason: &'static str,
    /// The matched rule, if any.
    pub rule: Option<String>,
    /// `WWW-Authenticate` value (RFC 6750 §3) for 401 and insufficient-scope 403.
    pub www_authenticate: Option<&'static str>,
    /// The first denial a `mode: dry_run` rule would have answered (reported, not enforced).
    pub dry_run: Option<DryRunDenial>,
}

/// `WWW-Authenticate` when no credentials were presented (RFC 6750 §3.1: no error code).
pub const CHALLENGE_MISSING: &str = r#"Bearer realm="mesh-authz""#;
/// `WWW-Authenticate` for a token that is malformed, expired, revoked or otherwise invalid.
pub const CHALLENGE_INVALID: &str = r#"Bearer realm="mesh-authz", error="invalid_token""#;
/// `WWW-Authenticate` for a valid token lacking a scope.
pub const CHALLENGE_SCOPE: &str = r#"Bearer realm="mesh-authz", error="insufficient_scope""#;

impl Denied {
    /// A denial with `status`, `reason` and no challenge.
    pub fn new(status: DenyStatus, reason: &'static str, rule: Option<&str>) -> Self {
        Self {
            status,
            reason,
            rule: rule.map(str::to_string),
            www_authenticate: None,
            dry_run: None,
        }
    }

    /// Adds a `WWW-Authenticate` challenge.
    pub fn with_challenge(mut self, challenge: &'static str) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// The answer a host gives for a decision. Every host (ext_authz gRPC and HTTP in the server, the
// Envoy dynamic module) carries the same answer; `check::answer` says what it is, transport-free.
// ---------------------------------------------------------------------------------------------

/// The dynamic metadata namespace of mesh-authz's facts (Envoy's access logs, later filters).
pub const METADATA_NAMESPACE: &str = "mesh_authz";

/// Reason of a check that did not finish within its deadline (`limits.check_timeout`): 503.
pub const REASON_DEADLINE_EXCEEDED: &str = "deadline_exceeded";

/// `content-type` of every denial's generic body.
pub const DENY_CONTENT_TYPE: &str = "application/json";

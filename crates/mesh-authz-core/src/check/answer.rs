//! The answer every host gives for a decision (ext_authz gRPC and HTTP in the server, the Envoy
//! dynamic module): which headers an allow sets and removes upstream, what a denial's local answer
//! carries, and the facts for the `mesh_authz` dynamic metadata. Transport-free; a host only
//! translates these into its own types.

use serde_json::{Map, Value};

use crate::decision::{Allowed, DENY_CONTENT_TYPE, Denied, DenyStatus, REASON_DEADLINE_EXCEEDED};
use crate::token::verified::safe_header_value;

/// One change an allow asks of the request's headers upstream ([`Allowed::header_mutations`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMutation<'a> {
    /// Replace every value the client sent under the name (first) with the value (second).
    Set(&'a str, &'a str),
    /// Strip every value of the name.
    Remove(&'a str),
}

impl Allowed {
    /// The upstream header mutations this allow asks for: one per header to set, then its
    /// removals. Each [`HeaderMutation::Set`]
    /// replaces every value the client sent under that name; each [`HeaderMutation::Remove`]
    /// strips the name. A value to set that is not a safe header value (control characters, over
    /// the size bound) becomes a removal: a name we may inject is never left to the client. An
    /// iterator over the allow: a host applies it without a list being built.
    pub fn header_mutations(&self) -> impl Iterator<Item = HeaderMutation<'_>> {
        self.set_headers
            .iter()
            .map(|(name, value)| {
                if safe_header_value(value) {
                    HeaderMutation::Set(name, value)
                } else {
                    HeaderMutation::Remove(name)
                }
            })
            .chain(
                self.remove_headers
                    .iter()
                    .map(|n| HeaderMutation::Remove(n)),
            )
    }

    /// [`Allowed::header_mutations`], taking the allow apart instead of borrowing it (for a host
    /// whose answer owns its strings, such as the gRPC `CheckResponse`).
    pub fn into_header_mutations(self) -> (Vec<(String, String)>, Vec<String>) {
        let (set, unsafe_values): (Vec<_>, Vec<_>) = self
            .set_headers
            .into_iter()
            .partition(|(_, value)| safe_header_value(value));
        let remove = self
            .remove_headers
            .into_iter()
            .chain(unsafe_values.into_iter().map(|(name, _)| name))
            .map(String::from)
            .collect();
        let set = set
            .into_iter()
            .map(|(name, value)| (String::from(name), String::from(value)))
            .collect();
        (set, remove)
    }

    /// The facts for the `mesh_authz` dynamic metadata: [`Allowed::metadata`] and, whatever
    /// `allow_metadata` says, the dry-run denial (it was asked for). Empty: set nothing.
    pub fn metadata_facts(&self) -> Map<String, Value> {
        let mut facts = self.metadata.clone();
        if let Some(d) = &self.dry_run {
            facts.insert("dry_run".into(), d.to_metadata());
        }
        facts
    }
}

impl Denied {
    /// A check that did not finish within its deadline: 503 [`REASON_DEADLINE_EXCEEDED`].
    pub fn deadline_exceeded() -> Self {
        Self::new(DenyStatus::Unavailable, REASON_DEADLINE_EXCEEDED, None)
    }

    /// The headers of the local answer: `content-type` and, when the decision has one, the
    /// `www-authenticate` challenge. The body is [`DenyStatus::body`].
    pub fn response_headers(&self) -> Vec<(&'static str, &'static str)> {
        let mut headers = vec![("content-type", DENY_CONTENT_TYPE)];
        if let Some(challenge) = self.www_authenticate {
            headers.push(("www-authenticate", challenge));
        }
        headers
    }

    /// The facts for the `mesh_authz` dynamic metadata: `reason`, `rule` when one matched, and the
    /// dry-run denial when there was one.
    pub fn metadata_facts(&self) -> Map<String, Value> {
        let mut facts = Map::new();
        facts.insert("reason".into(), Value::String(self.reason.into()));
        if let Some(rule) = &self.rule {
            facts.insert("rule".into(), Value::String(rule.clone()));
        }
        if let Some(d) = &self.dry_run {
            facts.insert("dry_run".into(), d.to_metadata());
        }
        facts
    }
}

/// Logs a denial the checker never decided (the host refused the check: overload, deadline, a
/// malformed request), in the same form as the checker's own denial line, at warn: the request
/// line, never a token or certificate. Counting it is the host's, through its metrics.
pub fn log_refused(
    denied: &Denied,
    method: &str,
    host: &str,
    path: &str,
    request_id: Option<&str>,
    trace_id: Option<&str>,
) {
    tracing::warn!(
        decision = "deny",
        status = denied.status.code(),
        reason = denied.reason,
        request_id = request_id.unwrap_or(""),
        trace_id = trace_id.unwrap_or(""),
        method = %method,
        host = %host,
        path = %path,
        "check denied"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{CHALLENGE_INVALID, DryRunDenial};

    #[test]
    fn unsafe_values_are_removed_never_set() {
        let a = Allowed {
            set_headers: vec![
                ("x-auth-subject".into(), "alice".into()),
                ("x-auth-bad".into(), "line\nbreak".into()),
            ],
            remove_headers: vec!["x-auth-scope".into(), "authorization".into()],
            ..Default::default()
        };
        use HeaderMutation::{Remove, Set};
        assert_eq!(
            a.header_mutations().collect::<Vec<_>>(),
            vec![
                Set("x-auth-subject", "alice"),
                Remove("x-auth-bad"),
                Remove("x-auth-scope"),
                Remove("authorization")
            ]
        );
        let (set, remove) = a.clone().into_header_mutations();
        assert_eq!(set, vec![("x-auth-subject".into(), "alice".into())]);
        assert_eq!(remove, ["x-auth-scope", "authorization", "x-auth-bad"]);
    }

    #[test]
    fn deny_headers_and_facts() {
        let d = Denied::new(DenyStatus::Unauthorized, "token_expired", Some("api"))
            .with_challenge(CHALLENGE_INVALID);
        assert_eq!(
            d.response_headers(),
            vec![
                ("content-type", "application/json"),
                ("www-authenticate", CHALLENGE_INVALID)
            ]
        );
        let facts = d.metadata_facts();
        assert_eq!(facts["reason"], "token_expired");
        assert_eq!(facts["rule"], "api");
        assert!(!facts.contains_key("dry_run"));
        let t = Denied::deadline_exceeded();
        assert_eq!((t.status.code(), t.reason), (503, "deadline_exceeded"));
        assert_eq!(t.response_headers().len(), 1);
    }

    #[test]
    fn allow_facts_carry_the_dry_run_denial() {
        let denied = Denied::new(DenyStatus::Forbidden, "scope_missing", None);
        let a = Allowed {
            dry_run: Some(DryRunDenial::new("shadow", &denied)),
            ..Default::default()
        };
        let facts = a.metadata_facts();
        assert_eq!(facts["dry_run"]["status"], 403);
        assert_eq!(facts["dry_run"]["rule"], "shadow");
    }
}

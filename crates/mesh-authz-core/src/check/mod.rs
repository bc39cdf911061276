//! The check pipeline: a transport-free request in, a decision out.

pub mod answer;

pub use answer::log_refused;
mod headers;

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};
use smol_str::SmolStr;

use crate::compile::Compiled;
use crate::config::{Action, IdentityConfig, OnError};
pub use crate::decision::{Allowed, Decision, Denied, DenyStatus, DryRunDenial};
use crate::decision::{CHALLENGE_INVALID, CHALLENGE_MISSING, CHALLENGE_SCOPE};
use crate::identity::certificate::{CertificateCache, DEFAULT_CERTIFICATE_CACHE_CAPACITY};
use crate::identity::{self, PeerIdentity};
use crate::metrics::{CheckOutcome, MetricsSink};
use crate::policy::{Policy, Rule, Unmet};
pub use crate::request::{ConnectionPeer, Headers, PeerInfo, Request};
use crate::revocation::{RevocationStore, Status, TokenRef};
use crate::token::extract;
use crate::token::verify::{VerifiedToken, Verifier};
use headers::HeaderPlan;

/// Answers checks. Built once from the compiled config; shared by every transport.
pub struct Checker {
    policy: Arc<Policy>,
    verifier: Arc<Verifier>,
    identity: IdentityConfig,
    revocation: Arc<dyn RevocationStore>,
    revocation_on_error: OnError,
    headers: HeaderPlan,
    allow_metadata: bool,
    metrics: Arc<dyn MetricsSink>,
    /// Forwarded peer certificates, parsed once per certificate rather than once per check.
    certificates: CertificateCache,
    /// The headers this config's checks read (see [`Checker::headers_read`]).
    headers_read: Vec<&'static str>,
    /// The headers an allow can set or remove (see [`Checker::headers_written`]).
    headers_written: Vec<String>,
}

/// What the credentials of a request came to, before the rule is applied.
struct Credentials {
    peer: Option<PeerIdentity>,
    token: Option<Arc<VerifiedToken>>,
}

impl Checker {
    /// Builds a checker; the verifier, revocation store and metrics sink are handles the caller
    /// owns. Cannot fail: everything that can be wrong with the config was found by
    /// [`crate::compile::compile`].
    pub fn new(
        compiled: &Compiled,
        verifier: Arc<Verifier>,
        revocation: Arc<dyn RevocationStore>,
        metrics: Arc<dyn MetricsSink>,
    ) -> Self {
        let config = compiled.config();
        let headers = HeaderPlan::new(config);
        Self {
            policy: compiled.policy().clone(),
            verifier,
            identity: config.identity.clone(),
            revocation,
            revocation_on_error: config.revocation.on_error,
            headers_written: headers.written(),
            headers,
            allow_metadata: config.server.allow_metadata,
            metrics,
            certificates: CertificateCache::new(DEFAULT_CERTIFICATE_CACHE_CAPACITY),
            headers_read: crate::request::HEADERS_READ
                .iter()
                .copied()
                .filter(|h| *h != identity::XFCC_HEADER || identity::reads_xfcc(&config.identity))
                .collect(),
        }
    }

    /// The header names this checker's checks can read: `authorization`, and
    /// `x-forwarded-client-cert` only when the identity config trusts it. A host that copies
    /// headers selectively copies these (a subset of [`crate::request::HEADERS_READ`]).
    pub fn headers_read(&self) -> &[&'static str] {
        &self.headers_read
    }

    /// Every header name an allow of this checker can set or remove upstream (the SPIFFE-ID
    /// header, every `claims_to_headers` target, `authorization`). A host that knows which of
    /// them the request carries may skip removing one it does not.
    pub fn headers_written(&self) -> &[String] {
        &self.headers_written
    }

    /// The token verifier (for readiness).
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// Where this checker counts its outcomes: a host counts a check it refused itself (a
    /// deadline) into the same sink.
    pub fn metrics(&self) -> &dyn MetricsSink {
        &*self.metrics
    }

    /// Decides one request at time `now` (unix seconds), counting and logging the outcome.
    pub async fn check<H: Headers>(&self, req: &Request<H>, now: i64) -> Decision {
        self.check_traced(req, now, None).await
    }

    /// [`Checker::check`], naming the check's `trace_id` (when traced) in the denial log line.
    pub async fn check_traced<H: Headers>(
        &self,
        req: &Request<H>,
        now: i64,
        trace_id: Option<&str>,
    ) -> Decision {
        let started = Instant::now();
        let (decision, would_deny) = self.decide(req, now).await;
        let elapsed = started.elapsed().as_secs_f64();
        for d in &would_deny {
            self.metrics
                .check_answered(CheckOutcome::DryRunDeny, d.reason, None);
            // Not enforced: the request goes on to the rules after the dry-run rule.
            tracing::info!(
                decision = "dry_run_deny",
                status = d.status.code(),
                reason = d.reason,
                rule = %d.rule,
                request_id = req.request_id.as_deref().unwrap_or(""),
                method = %req.method,
                host = %req.host,
                path = %req.path,
                "dry-run rule would deny"
            );
        }
        if let Decision::Deny(d) = &decision {
            self.metrics
                .check_answered(CheckOutcome::Deny, d.reason, Some(elapsed));
            // The precise reason goes to the log, never to the client; no token or certificate.
            tracing::info!(
                decision = "deny",
                status = d.status.code(),
                reason = d.reason,
                rule = d.rule.as_deref().unwrap_or(""),
                request_id = req.request_id.as_deref().unwrap_or(""),
                trace_id = trace_id.unwrap_or(""),
                method = %req.method,
                host = %req.host,
                path = %req.path,
                "check denied"
            );
        } else {
            self.metrics
                .check_answered(CheckOutcome::Allow, "ok", Some(elapsed));
        }
        decision
    }

    async fn decide<H: Headers>(
        &self,
        req: &Request<H>,
        now: i64,
    ) -> (Decision, Vec<DryRunDenial>) {
        let (rule, dry_runs) = self.policy.select_with_dry_runs(req);
        let rule_name = rule.map(Rule::name);
        // A request no rule matches is handled like an anonymous rule when the default allows.
        let anonymous = match rule {
            Some(r) => Some(r.allow_anonymous()),
            None if self.policy.default_action() == Action::Allow => Some(true),
            None => None,
        };
        if dry_runs.is_empty() {
            let Some(anonymous) = anonymous else {
                return (
                    deny(DenyStatus::Forbidden, "no_matching_rule", None),
                    Vec::new(),
                );
            };
            let credentials = match self.credentials(req, now, anonymous, rule_name).await {
                Ok((c, _)) => c,
                Err(denied) => return (Decision::Deny(denied), Vec::new()),
            };
            return (self.conclude(rule, &credentials), Vec::new());
        }

        // Dry-run rules ahead of the deciding one: one lenient pass over the credentials (bad
        // ones dropped, the first failure kept) serves them all, and the deciding rule too, since
        // a strict pass stops at exactly that first failure.
        let (credentials, failure) = match self.credentials(req, now, true, None).await {
            Ok(pass) => pass,
            // A lenient pass drops failures instead of returning them.
            Err(denied) => (
                Credentials {
                    peer: None,
                    token: None,
                },
                Some(denied),
            ),
        };
        let would_deny: Vec<DryRunDenial> = dry_runs
            .iter()
            .filter_map(|r| {
                let denied = match &failure {
                    Some(f) => f.clone(),
                    None => unmet_denial(
                        r.evaluate(credentials.peer.as_ref(), credentials.token.as_deref())
                            .err()?,
                        None,
                    ),
                };
                Some(DryRunDenial::new(r.name(), &denied))
            })
            .collect();
        let mut decision = match (anonymous, &failure) {
            (None, _) => deny(DenyStatus::Forbidden, "no_matching_rule", None),
            (Some(false), Some(f)) => {
                let mut f = f.clone();
                f.rule = rule_name.map(str::to_string);
                Decision::Deny(f)
            }
            // Anonymous: bad credentials were dropped, exactly what the lenient pass did.
            (Some(_), _) => self.conclude(rule, &credentials),
        };
        let first = would_deny.first().cloned();
        match &mut decision {
            Decision::Allow(a) => a.dry_run = first,
            Decision::Deny(d) => d.dry_run = first,
        }
        (decision, would_deny)
    }

    /// Applies the deciding rule's requirements (none when no rule matched and the default
    /// allows) to verified credentials.
    fn conclude(&self, rule: Option<&Rule>, credentials: &Credentials) -> Decision {
        let rule_name = rule.map(Rule::name);
        if let Some(rule) = rule
            && let Err(unmet) =
                rule.evaluate(credentials.peer.as_ref(), credentials.token.as_deref())
        {
            return Decision::Deny(unmet_denial(unmet, rule_name));
        }
        Decision::Allow(self.allowed(rule_name, credentials))
    }

    /// Resolves the peer and verifies the token. A presented credential must be valid even if
    /// not required: strictly, the first failure ends the check (`Err`). `lenient` (an anonymous
    /// rule, or a dry-run pass) drops a bad credential instead and returns the first failure
    /// beside what remained, so that nothing is ever injected from a credential that failed.
    async fn credentials<H: Headers>(
        &self,
        req: &Request<H>,
        now: i64,
        lenient: bool,
        rule: Option<&str>,
    ) -> Result<(Credentials, Option<Denied>), Denied> {
        let mut first: Option<Denied> = None;
        // Strict: the failure is the answer. Lenient: keep the first, drop the credential.
        let mut fail = |d: Denied| -> Result<(), Denied> {
            if !lenient {
                return Err(d);
            }
            first.get_or_insert(d);
            Ok(())
        };
        let peer = match identity::resolve_with(
            &self.identity,
            &req.peer,
            &req.headers,
            Some(&self.certificates),
        ) {
            Ok(p) => p,
            Err(e) => {
                fail(Denied::new(DenyStatus::Forbidden, e.reason(), rule))?;
                None
            }
        };
        // With `identity.trust_domains`, a peer outside them (or without a SPIFFE ID) is foreign.
        let peer = match peer {
            Some(p) if !identity::peer_in_trust_domains(&self.identity, &p) => {
                fail(Denied::new(
                    DenyStatus::Forbidden,
                    "peer_trust_domain_not_trusted",
                    rule,
                ))?;
                None
            }
            other => other,
        };

        // A token this thread verified before skips the grammar scans (it passed them then), and
        // the same front lookup is the verification's answer. `here`: `None` when the front was
        // not asked, `Some(None)` when it was and had no answer.
        let mut here = None;
        let found = extract::bearer_known(&req.headers, |t| {
            let answer = self.verifier.verify_here(t, now);
            let known = answer.is_some();
            here = Some(answer);
            known
        });
        let verified = match found {
            Ok(None) => None,
            Err(_) => {
                fail(
                    Denied::new(DenyStatus::Unauthorized, "token_malformed_header", rule)
                        .with_challenge(CHALLENGE_INVALID),
                )?;
                None
            }
            Ok(Some(raw)) => Some(match here {
                Some(Some(answer)) => answer,
                Some(None) => self.verifier.verify_beyond_front(raw, now).await,
                None => self.verifier.verify(raw, now).await,
            }),
        };
        let token = match verified {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(e)) if e.is_dependency_failure() => {
                fail(Denied::new(DenyStatus::Unavailable, e.reason(), rule))?;
                None
            }
            Some(Err(e)) => {
                fail(
                    Denied::new(DenyStatus::Unauthorized, e.reason(), rule)
                        .with_challenge(CHALLENGE_INVALID),
                )?;
                None
            }
        };
        // RFC 8705 §3: a token that carries a certificate confirmation is bound on every rule,
        // not only where `bound_token` asks for one; a mismatch is an invalid token.
        let token = match token {
            Some(t) if crate::policy::certificate_binding(&t, peer.as_ref()) == Some(false) => {
                fail(
                    Denied::new(DenyStatus::Unauthorized, "token_binding_mismatch", rule)
                        .with_challenge(CHALLENGE_INVALID),
                )?;
                None
            }
            other => other,
        };
        let token = match token {
            Some(t) => match self.unrevoked(t, rule).await {
                Ok(t) => Some(t),
                Err(d) => {
                    fail(d)?;
                    None
                }
            },
            None => None,
        };
        Ok((Credentials { peer, token }, first))
    }

    /// Applies the revocation set to a verified token; a revoked token (or, with `on_error: deny`,
    /// one that could not be looked up) is the denial, which a lenient caller turns into a drop.
    async fn unrevoked(
        &self,
        token: Arc<VerifiedToken>,
        rule: Option<&str>,
    ) -> Result<Arc<VerifiedToken>, Denied> {
        let lookup = TokenRef {
            jti: token.jti(),
            sub: token.sub(),
            iat: token.times().iat,
            parent_jti: token.parent_jti(),
        };
        // A store that can answer without I/O (memory; Redis from its cache) is not awaited.
        let (status, source) = match self.revocation.lookup_now(lookup) {
            Some(answer) => answer,
            None => self.revocation.lookup(lookup).await,
        };
        let outcome = match &status {
            Ok(Status::Active) => "active",
            Ok(Status::Revoked(_)) => "revoked",
            Err(_) => "error",
        };
        self.metrics.revocation_lookup(source, outcome);
        match status {
            Ok(Status::Active) => Ok(token),
            Ok(Status::Revoked(_)) => {
                Err(Denied::new(DenyStatus::Unauthorized, "token_revoked", rule)
                    .with_challenge(CHALLENGE_INVALID))
            }
            Err(e) => match self.revocation_on_error {
                OnError::Allow => {
                    tracing::warn!(error = %e, "revocation lookup failed; on_error allows");
                    Ok(token)
                }
                OnError::Deny => Err(Denied::new(
                    DenyStatus::Unavailable,
                    "revocation_unavailable",
                    rule,
                )),
            },
        }
    }

    fn allowed(&self, rule: Option<&str>, credentials: &Credentials) -> Allowed {
        let spiffe_id = credentials
            .peer
            .as_ref()
            .and_then(|p| p.spiffe_id.as_ref())
            .map(|id| id.as_str());
        let token = credentials.token.as_deref();
        let provider = token.and_then(|t| self.verifier.provider(t.provider()));
        let mapping = token.zip(provider).map(|(t, p)| (t, &p.claims_to_headers));
        let (set_headers, mut remove_headers) = self.headers.build(spiffe_id, mapping);
        if !provider.is_some_and(|p| p.forward_token) {
            remove_headers.push(SmolStr::new_static(crate::request::AUTHORIZATION_HEADER));
        }
        let mut metadata = Map::new();
        if self.allow_metadata {
            if let Some(rule) = rule {
                metadata.insert("rule".into(), Value::String(rule.to_string()));
            }
            if let Some(id) = spiffe_id {
                metadata.insert("spiffe_id".into(), Value::String(id.to_string()));
            }
            if let Some(name) = token.and_then(|t| self.verifier.provider_name(t.provider())) {
                metadata.insert("provider".into(), Value::String(name.to_string()));
            }
        }
        if let Some(t) = token {
            if provider.is_some_and(|p| p.claims_to_metadata)
                && let Some(claims) = t.claims()
            {
                metadata.insert("claims".into(), Value::Object(claims.clone()));
            }
        }
        Allowed {
            rule: rule.map(SmolStr::new),
            set_headers,
            remove_headers,
            metadata,
            dry_run: None,
        }
    }
}

fn deny(status: DenyStatus, reason: &'static str, rule: Option<&str>) -> Decision {
    Decision::Deny(Denied::new(status, reason, rule))
}

fn unmet_denial(unmet: Unmet, rule: Option<&str>) -> Denied {
    match unmet {
        Unmet::TokenRequired => Denied::new(DenyStatus::Unauthorized, unmet.reason(), rule)
            .with_challenge(CHALLENGE_MISSING),
        Unmet::InsufficientScope => {
            Denied::new(DenyStatus::Forbidden, unmet.reason(), rule).with_challenge(CHALLENGE_SCOPE)
        }
        other => Denied::new(DenyStatus::Forbidden, other.reason(), rule),
    }
}

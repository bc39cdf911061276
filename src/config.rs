//! Typed configuration: a YAML (or JSON) file plus `MESH_AUTHZ_` environment overrides, validated
//! with path-qualified errors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::token::Algorithm;

mod load;
mod validate;

pub use load::{ENV_PREFIX, from_str_with_env, load};
pub use validate::validate;

/// One config problem, with the path of the offending key (`providers[0].jwks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path with list indices; empty for the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: String) -> Self {
        Self {
            path: path.into(),
            message,
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners.
    #[serde(default)]
    pub server: ServerConfig,
    /// Token issuers; a token's `iss` selects its provider.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// Where the caller's transport identity comes from.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// The revocation store.
    #[serde(default)]
    pub revocation: RevocationConfig,
    /// Per-route rules; the first match wins.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// What happens to a request no rule matches.
    #[serde(default)]
    pub default_action: Action,
    /// Input size limits and cache bounds.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Log format and level.
    #[serde(default)]
    pub logging: LoggingConfig,
    /// OpenTelemetry spans of checks, exported over OTLP/HTTP. Off when absent.
    #[serde(default)]
    pub tracing: Option<TracingConfig>,
}

impl Config {
    /// Every claim path a rule's `require.claims` reads (what a cached token must keep).
    pub fn rule_claim_paths(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .flat_map(|r| r.require.claims.keys().map(String::as_str))
    }
}

/// Listener addresses and TLS.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// ext_authz v3 and grpc.health.v1.
    #[serde(default = "default_grpc_addr")]
    pub grpc_addr: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`.
    #[serde(default = "default_http_addr")]
    pub http_addr: SocketAddr,
    /// Optional TLS / mTLS on the gRPC listener.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Optional revocation admin API (its own listener, mTLS).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// How long in-flight checks may take to finish after SIGTERM.
    #[serde(default = "default_shutdown_grace", with = "duration")]
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long health and readiness report NOT_SERVING while the listeners still
    /// answer, so health checkers (Envoy, Kubernetes) stop sending before they close.
    #[serde(default = "default_drain_delay", with = "duration")]
    pub drain_delay: Duration,
    /// Describe each allow in Envoy's dynamic metadata (`mesh_authz`: rule, provider, SPIFFE ID),
    /// for access logs and later filters. Off by default: every allow response stays small, and
    /// Envoy spends less per request. Denials always carry their reason and rule.
    #[serde(default)]
    pub allow_metadata: bool,
    /// The most connections each listener (gRPC, HTTP) holds open at once; further clients wait
    /// in the kernel's accept queue until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a new connection may take to send its first complete request (TLS handshake and
    /// headers included; for HTTP/1, each request's headers) before it is closed.
    #[serde(default = "default_header_read_timeout", with = "duration")]
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in progress before it is closed
    /// (HTTP/2: GOAWAY).
    #[serde(default = "default_idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    /// How often `serve --config` reads the config file and its JWKS `file:` sources to see
    /// whether their bytes changed (a change is reloaded as on SIGHUP). Follows symlinks, so a
    /// Kubernetes ConfigMap's `..data` swap is seen. `0s` turns watching off. Fixed at start.
    #[serde(default = "default_watch_interval", with = "duration")]
    pub watch_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            grpc_addr: default_grpc_addr(),
            http_addr: default_http_addr(),
            tls: None,
            admin: None,
            shutdown_grace: default_shutdown_grace(),
            drain_delay: default_drain_delay(),
            allow_metadata: false,
            max_connections: default_max_connections(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            watch_interval: default_watch_interval(),
        }
    }
}

fn default_grpc_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9001))
}
fn default_http_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9002))
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}
fn default_drain_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_watch_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_max_connections() -> usize {
    4096
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}

/// Server-side TLS; with `client_ca_file`, client certificates are required.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// The revocation admin API listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle that client certificates must chain to.
    pub client_ca_file: PathBuf,
    /// SPIFFE IDs allowed to call the admin API.
    #[serde(default)]
    pub allowed_spiffe_ids: Vec<String>,
}

/// One token issuer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// A short name, used in metrics and logs.
    pub name: String,
    /// Must equal the token's `iss` exactly.
    pub issuer: String,
    /// Accepted audiences; the token's `aud` (string or array) must contain one (RFC 9068 §4).
    /// Required unless `allow_any_audience` is set.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Skip the `aud` check (an explicit opt-out; `check-config` and `serve` warn about it).
    /// Refused together with `audiences`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_any_audience: bool,
    /// Where the verification keys come from.
    pub jwks: JwksConfig,
    /// Accepted signature algorithms (asymmetric only).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Allowed clock difference for `exp`, `nbf` and `iat`.
    #[serde(default = "default_clock_skew", with = "duration")]
    pub clock_skew: Duration,
    /// Keep the `authorization` header for the upstream.
    #[serde(default)]
    pub forward_token: bool,
    /// Claim (dotted path for nested claims) → request header set for the upstream.
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    /// Put the token's whole claims set into the allow's dynamic metadata (`mesh_authz.claims`),
    /// for access logs and later filters. Off by default: it makes every allow response, and
    /// every cached token, larger.
    #[serde(default)]
    pub claims_to_metadata: bool,
    /// Claims that must be present.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// When set, `exp - iat` may not exceed it (and `iat` is required).
    #[serde(default, with = "opt_duration")]
    pub max_token_lifetime: Option<Duration>,
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::RS256]
}
fn default_clock_skew() -> Duration {
    Duration::from_secs(30)
}

/// JWKS source: exactly one of `uri`, `discovery`, `file`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// `https://…/jwks.json` (plain `http://` is accepted for in-cluster and test use). Printed
    /// without its userinfo and query.
    #[serde(default, serialize_with = "redact_opt_uri")]
    pub uri: Option<String>,
    /// Find `jwks_uri` at `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery: bool,
    /// A local JWKS file, re-read every `refresh_interval`.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// How often keys are refreshed.
    #[serde(default = "default_refresh_interval", with = "duration")]
    pub refresh_interval: Duration,
    /// An unknown `kid` triggers at most one refetch per interval.
    #[serde(default = "default_min_refetch_interval", with = "duration")]
    pub min_refetch_interval: Duration,
    /// Timeout of one fetch.
    #[serde(default = "default_fetch_timeout", with = "duration")]
    pub fetch_timeout: Duration,
    /// Extra PEM CA bundle trusted for the JWKS and discovery endpoints.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A token without `kid` is tried against every key that fits its `alg`, up to this many
    /// (each try is a signature verification).
    #[serde(default = "default_max_keys_without_kid")]
    pub max_keys_without_kid: usize,
}

fn default_max_keys_without_kid() -> usize {
    crate::token::jws::MAX_KEYS_TRIED
}

/// A URI with its userinfo and query replaced by `***` and no fragment, for printing and logs.
/// Text that is not a URL is replaced as a whole.
pub fn redact_uri(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if !u.username().is_empty() {
                let _ = u.set_username("***");
            }
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if u.query().is_some() {
                u.set_query(Some("***"));
            }
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<unparseable URL>".to_string(),
    }
}

fn redact_opt_uri<S: serde::Serializer>(u: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match u {
        Some(u) => s.serialize_some(&redact_uri(u)),
        None => s.serialize_none(),
    }
}

fn default_refresh_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_min_refetch_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_fetch_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A source of the caller's transport identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// `attributes.source.principal`.
    Principal,
    /// `attributes.source.certificate` (`include_peer_certificate`).
    Certificate,
    /// `x-forwarded-client-cert`, only with `trust_xfcc: true`.
    Xfcc,
}

/// Transport identity settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Sources in order of preference.
    #[serde(default = "default_sources")]
    pub sources: Vec<IdentitySource>,
    /// Read `x-forwarded-client-cert` (only behind a proxy that sanitizes it).
    #[serde(default)]
    pub trust_xfcc: bool,
    /// Accepted SPIFFE trust domains; empty accepts any. When set, a peer without a SPIFFE ID in
    /// one of them is foreign.
    #[serde(default)]
    pub trust_domains: Vec<String>,
    /// Header that carries the caller's SPIFFE ID upstream.
    #[serde(default = "default_spiffe_id_header")]
    pub spiffe_id_header: String,
    /// What the proxy in front writes into `x-forwarded-client-cert` (read with `trust_xfcc`).
    #[serde(default)]
    pub xfcc: XfccConfig,
}

/// How the proxy in front of mesh-authz forwards client certificate details
/// (`forward_client_cert_details`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XfccProxyMode {
    /// `SANITIZE_SET`: the header holds exactly one element, the one the proxy wrote.
    #[default]
    SanitizeSet,
    /// `APPEND_FORWARD` (Istio sidecars): the proxy appends its element to what the client sent.
    AppendForward,
}

/// The XFCC serialisation the proxy emits (`set_current_client_cert_details.format`, Envoy 1.40).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XfccFormat {
    /// Envoy's classic `Key=value;…,…` text; URI and DNS values are written unescaped.
    #[default]
    Text,
    /// Envoy's `JSON` format: a JSON array of objects, every value escaped.
    Json,
}

/// `identity.xfcc`: what the trusted proxy writes, so that nothing else is accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct XfccConfig {
    /// `sanitize_set` (one element) or `append_forward` (several; needs `require_cert`).
    #[serde(default)]
    pub proxy_mode: XfccProxyMode,
    /// The proxy writes `Cert` (`set_current_client_cert_details.cert: true`): identity and
    /// thumbprint come from the certificate, every other field is checked against it.
    #[serde(default)]
    pub require_cert: bool,
    /// `text` or `json`, as the proxy's `set_current_client_cert_details.format`.
    #[serde(default)]
    pub format: XfccFormat,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            sources: default_sources(),
            trust_xfcc: false,
            trust_domains: Vec::new(),
            spiffe_id_header: default_spiffe_id_header(),
            xfcc: XfccConfig::default(),
        }
    }
}

fn default_sources() -> Vec<IdentitySource> {
    vec![IdentitySource::Principal, IdentitySource::Certificate]
}
fn default_spiffe_id_header() -> String {
    "x-auth-spiffe-id".to_string()
}

/// Which revocation store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// Embedded, per replica.
    #[default]
    Memory,
    /// Shared Redis.
    Redis,
}

/// What to do when a dependency fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Fail closed.
    #[default]
    Deny,
    /// Fail open (an explicit operator choice).
    Allow,
}

/// Revocation settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// `memory` (default) or `redis`.
    #[serde(default)]
    pub store: StoreKind,
    /// Redis settings, used with `store: redis`.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// What a failed lookup means.
    #[serde(default)]
    pub on_error: OnError,
}

/// Redis connection settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL of a single node (a password in it is never printed).
    #[serde(default, serialize_with = "redact_opt_url")]
    pub url: Option<String>,
    /// Seed nodes of a Redis Cluster.
    #[serde(default, serialize_with = "redact_urls")]
    pub cluster_nodes: Vec<String>,
    /// Prefix of every key.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// How long a lookup result is cached locally.
    #[serde(default = "default_cache_ttl", with = "duration")]
    pub cache_ttl: Duration,
    /// Entries the local lookup cache holds at most.
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: u64,
    /// Timeout of establishing one connection.
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Timeout of one command or pipeline (a lookup answers, as an error, within it).
    #[serde(default = "default_command_timeout", with = "duration")]
    pub command_timeout: Duration,
    /// PEM CA bundle trusted for `rediss://` instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// File holding the ACL user name (overrides the URL's and `MESH_AUTHZ_REDIS_USERNAME`).
    #[serde(default)]
    pub username_file: Option<PathBuf>,
    /// File holding the password (overrides the URL's and `MESH_AUTHZ_REDIS_PASSWORD`).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Replicas that must hold a revocation (`WAIT`) before it is confirmed (0: the master's
    /// acknowledgement is enough).
    #[serde(default)]
    pub min_replicas: u32,
    /// How long a write waits for `min_replicas` before it is reported as not confirmed.
    #[serde(default = "default_replication_timeout", with = "duration")]
    pub replication_timeout: Duration,
}

fn default_replication_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_cache_capacity() -> u64 {
    100_000
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_command_timeout() -> Duration {
    Duration::from_millis(500)
}

/// A Redis URL with any password replaced by `***`, for printing and logs.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable URL>".to_string(),
    }
}

fn redact_opt_url<S: serde::Serializer>(u: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match u {
        Some(u) => s.serialize_some(&redact_url(u)),
        None => s.serialize_none(),
    }
}

fn redact_urls<S: serde::Serializer>(urls: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(urls.iter().map(|u| redact_url(u)))
}

fn default_key_prefix() -> String {
    "mesh-authz:".to_string()
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(1)
}

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

/// Limits on input sizes and cache bounds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// A longer token is refused before any parsing.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Verified tokens kept in the cache at most.
    #[serde(default = "default_token_cache_capacity")]
    pub token_cache_capacity: u64,
    /// Checks answered at once at most; a check over the limit is denied at once (503,
    /// reason `overloaded`) instead of queueing. `0` turns the limit off.
    #[serde(default = "default_max_concurrent_checks")]
    pub max_concurrent_checks: usize,
    /// Longest time one check may take; a slower one is denied (503, reason
    /// `deadline_exceeded`). A shorter gRPC deadline (`grpc-timeout`) from Envoy wins.
    #[serde(default = "default_check_timeout", with = "duration")]
    pub check_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_token_bytes: default_max_token_bytes(),
            token_cache_capacity: default_token_cache_capacity(),
            max_concurrent_checks: default_max_concurrent_checks(),
            check_timeout: default_check_timeout(),
        }
    }
}

fn default_max_concurrent_checks() -> usize {
    1024
}
fn default_check_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_max_token_bytes() -> usize {
    8192
}
fn default_token_cache_capacity() -> u64 {
    100_000
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// `json` (default) or `text`.
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `mesh_authz=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

fn default_log_level() -> String {
    "info".to_string()
}

/// Tracing of checks (OpenTelemetry, OTLP/HTTP protobuf).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP base URL, e.g. `http://collector:4318`; spans are POSTed to
    /// `{otlp_endpoint}/v1/traces`.
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of new traces sampled (0.0 to 1.0); a check whose `traceparent` says sampled is
    /// always sampled, one that says not sampled never is.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

fn default_service_name() -> String {
    "mesh-authz".to_string()
}

fn default_sample_ratio() -> f64 {
    1.0
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable.
    Text,
}

/// Durations as `30s`, `5m`, `1h30m` (or a bare number of seconds).
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Parses `30s`, `5m`, `250ms`, `1h 30m`, or a number of seconds.
    pub fn parse(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        if let Ok(secs) = s.parse::<u64>() {
            return Ok(Duration::from_secs(secs));
        }
        humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
    }

    /// serde: deserialize a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| D::Error::custom("expected a duration such as 30s or 5m"))?
        {
            Raw::Secs(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => parse(&t).map_err(D::Error::custom),
        }
    }

    /// serde: serialize a duration as humantime text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// Optional durations.
pub mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// serde: deserialize an optional duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super::duration")] Duration);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }

    /// serde: serialize an optional duration.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

//! Semantic checks serde cannot express; every problem is reported with its config path.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use super::{Config, ConfigError, IdentitySource, JwksConfig, ProviderConfig, StoreKind};

/// Headers mesh-authz must never be told to inject.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "host",
    "forwarded",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "cookie",
    "set-cookie",
    "x-forwarded-client-cert",
    "x-forwarded-for",
    "x-request-id",
];

/// Header families mesh-authz must never inject: `x-forwarded-*` carries what proxies vouch for
/// (client address, protocol, certificate), `x-envoy-*` steers Envoy itself.
const RESERVED_PREFIXES: &[&str] = &["x-forwarded-", "x-envoy-"];

/// Every semantic problem of `config`, in document order.
pub fn validate(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    let mut issuers = HashSet::new();
    let mut injected = HashSet::new();
    if !config.identity.spiffe_id_header.is_empty() {
        injected.insert(config.identity.spiffe_id_header.clone());
    }
    for (i, p) in config.providers.iter().enumerate() {
        let at = format!("providers[{i}]");
        provider(&at, p, &config.identity.spiffe_id_header, &mut errors);
        if !p.name.is_empty() && !names.insert(p.name.clone()) {
            errors.push(ConfigError::new(
                format!("{at}.name"),
                format!("duplicate provider name {:?}", p.name),
            ));
        }
        if !p.issuer.is_empty() && !issuers.insert(p.issuer.clone()) {
            errors.push(ConfigError::new(
                format!("{at}.issuer"),
                "another provider has the same issuer".to_string(),
            ));
        }
        for header in p.claims_to_headers.values() {
            injected.insert(header.clone());
        }
    }
    identity(config, &mut errors);
    revocation(config, &mut errors);
    if config.limits.max_token_bytes == 0 || config.limits.max_token_bytes > 65_536 {
        errors.push(ConfigError::new(
            "limits.max_token_bytes",
            "must be between 1 and 65536".to_string(),
        ));
    }
    if config.limits.token_cache_capacity == 0 {
        errors.push(ConfigError::new(
            "limits.token_cache_capacity",
            "must be at least 1".to_string(),
        ));
    }
    if config.server.drain_delay.as_secs() > 60 {
        errors.push(ConfigError::new(
            "server.drain_delay",
            "must be at most 60s".to_string(),
        ));
    }
    let watch = config.server.watch_interval;
    if !watch.is_zero() && (watch < Duration::from_millis(100) || watch > Duration::from_secs(3600))
    {
        errors.push(ConfigError::new(
            "server.watch_interval",
            "must be 0s (off) or between 100ms and 1h".to_string(),
        ));
    }
    if let Some(n) = config.server.worker_threads
        && !(1..=super::server::MAX_WORKER_THREADS).contains(&n)
    {
        errors.push(ConfigError::new(
            "server.worker_threads",
            format!(
                "must be between 1 and {} (absent: the CPUs the process may use)",
                super::server::MAX_WORKER_THREADS
            ),
        ));
    }
    if config.server.max_connections == 0 || config.server.max_connections > 1_000_000 {
        errors.push(ConfigError::new(
            "server.max_connections",
            "must be between 1 and 1000000".to_string(),
        ));
    }
    for (at, d) in [
        (
            "server.header_read_timeout",
            config.server.header_read_timeout,
        ),
        ("server.idle_timeout", config.server.idle_timeout),
    ] {
        if d.is_zero() || d.as_secs() > 3600 {
            errors.push(ConfigError::new(
                at,
                "must be above zero and at most 1h".to_string(),
            ));
        }
    }
    if config.limits.max_concurrent_checks > 1_000_000 {
        errors.push(ConfigError::new(
            "limits.max_concurrent_checks",
            "must be at most 1000000 (0 turns the limit off)".to_string(),
        ));
    }
    if config.limits.check_timeout.is_zero() || config.limits.check_timeout.as_secs() > 60 {
        errors.push(ConfigError::new(
            "limits.check_timeout",
            "must be above zero and at most 60s".to_string(),
        ));
    }
    if tracing_subscriber::EnvFilter::try_new(&config.logging.level).is_err() {
        errors.push(ConfigError::new(
            "logging.level",
            format!("not a valid log filter: {:?}", config.logging.level),
        ));
    }
    if let Some(t) = &config.tracing {
        tracing_config(t, &mut errors);
    }
    if let Some(tls) = &config.server.tls {
        readable("server.tls.cert_file", &tls.cert_file, &mut errors);
        readable("server.tls.key_file", &tls.key_file, &mut errors);
        if let Some(ca) = &tls.client_ca_file {
            readable("server.tls.client_ca_file", ca, &mut errors);
        }
    }
    if let Some(admin) = &config.server.admin {
        readable("server.admin.cert_file", &admin.cert_file, &mut errors);
        readable("server.admin.key_file", &admin.key_file, &mut errors);
        readable(
            "server.admin.client_ca_file",
            &admin.client_ca_file,
            &mut errors,
        );
        if admin.allowed_spiffe_ids.is_empty() {
            errors.push(ConfigError::new(
                "server.admin.allowed_spiffe_ids",
                "must list at least one SPIFFE ID".to_string(),
            ));
        }
        for (i, id) in admin.allowed_spiffe_ids.iter().enumerate() {
            if crate::spiffe::SpiffeId::parse(id).is_err() {
                errors.push(ConfigError::new(
                    format!("server.admin.allowed_spiffe_ids[{i}]"),
                    format!("{id:?} is not a valid SPIFFE ID"),
                ));
            }
        }
        let others = [config.server.grpc_addr, config.server.http_addr];
        if admin.addr.port() != 0 && others.contains(&admin.addr) {
            errors.push(ConfigError::new(
                "server.admin.addr",
                "must differ from server.grpc_addr and server.http_addr".to_string(),
            ));
        }
    }
    if config.server.grpc_addr == config.server.http_addr && config.server.grpc_addr.port() != 0 {
        errors.push(ConfigError::new(
            "server.http_addr",
            "must differ from server.grpc_addr".to_string(),
        ));
    }
    errors
}

fn provider(at: &str, p: &ProviderConfig, spiffe_id_header: &str, errors: &mut Vec<ConfigError>) {
    if p.name.trim().is_empty() {
        errors.push(ConfigError::new(
            format!("{at}.name"),
            "must not be empty".into(),
        ));
    }
    if p.issuer.trim().is_empty() {
        errors.push(ConfigError::new(
            format!("{at}.issuer"),
            "must not be empty".into(),
        ));
    }
    if p.algorithms.is_empty() {
        errors.push(ConfigError::new(
            format!("{at}.algorithms"),
            "must list at least one algorithm".into(),
        ));
    }
    if p.audiences.is_empty() && !p.allow_any_audience {
        errors.push(ConfigError::new(
            format!("{at}.audiences"),
            "must list the accepted audiences (RFC 9068 §4: the aud check is required); \
             set allow_any_audience: true to skip it"
                .into(),
        ));
    }
    if !p.audiences.is_empty() && p.allow_any_audience {
        errors.push(ConfigError::new(
            format!("{at}.allow_any_audience"),
            "cannot be set together with audiences".into(),
        ));
    }
    if p.jwks.max_keys_without_kid == 0 || p.jwks.max_keys_without_kid > 1024 {
        errors.push(ConfigError::new(
            format!("{at}.jwks.max_keys_without_kid"),
            "must be between 1 and 1024".into(),
        ));
    }
    if p.audiences.iter().any(|a| a.is_empty()) {
        errors.push(ConfigError::new(
            format!("{at}.audiences"),
            "must not contain an empty audience".into(),
        ));
    }
    if p.clock_skew.as_secs() > 300 {
        errors.push(ConfigError::new(
            format!("{at}.clock_skew"),
            "must be at most 5m".into(),
        ));
    }
    if matches!(p.max_token_lifetime, Some(d) if d.is_zero()) {
        errors.push(ConfigError::new(
            format!("{at}.max_token_lifetime"),
            "must be positive".into(),
        ));
    }
    jwks(&format!("{at}.jwks"), &p.jwks, &p.issuer, errors);
    let mut targets: HashMap<&str, &str> = HashMap::new();
    for (claim, header) in &p.claims_to_headers {
        let path = format!("{at}.claims_to_headers.{claim}");
        if claim.is_empty() || claim.split('.').any(str::is_empty) {
            errors.push(ConfigError::new(path.clone(), "not a claim path".into()));
        }
        header_name(&path, header, errors);
        // One header, two writers: which value reaches the upstream would depend on map order.
        if header == spiffe_id_header {
            errors.push(ConfigError::new(
                path,
                format!(
                    "{header:?} is identity.spiffe_id_header, which carries the caller's SPIFFE ID"
                ),
            ));
        } else if let Some(first) = targets.get(header.as_str()) {
            errors.push(ConfigError::new(
                path,
                format!("{header:?} is also the target of {at}.claims_to_headers.{first}"),
            ));
        } else {
            targets.insert(header, claim);
        }
    }
    for (j, claim) in p.required_claims.iter().enumerate() {
        if claim.is_empty() {
            errors.push(ConfigError::new(
                format!("{at}.required_claims[{j}]"),
                "must not be empty".into(),
            ));
        }
    }
}

fn jwks(at: &str, j: &JwksConfig, issuer: &str, errors: &mut Vec<ConfigError>) {
    if let Err(problems) = j.source(issuer) {
        for p in problems {
            let path = if p.key.is_empty() {
                at.to_string()
            } else {
                format!("{at}.{}", p.key)
            };
            errors.push(ConfigError::new(path, p.message));
        }
    }
    if let Some(file) = &j.file {
        readable(&format!("{at}.file"), file, errors);
    }
    if let Some(ca) = &j.ca_file {
        readable(&format!("{at}.ca_file"), ca, errors);
    }
    if j.refresh_interval.is_zero() {
        errors.push(ConfigError::new(
            format!("{at}.refresh_interval"),
            "must be positive".into(),
        ));
    }
    if j.fetch_timeout.is_zero() {
        errors.push(ConfigError::new(
            format!("{at}.fetch_timeout"),
            "must be positive".into(),
        ));
    }
    if j.min_refetch_interval > j.refresh_interval {
        errors.push(ConfigError::new(
            format!("{at}.min_refetch_interval"),
            "must not exceed refresh_interval".into(),
        ));
    }
}

fn identity(config: &Config, errors: &mut Vec<ConfigError>) {
    let id = &config.identity;
    if id.sources.is_empty() {
        errors.push(ConfigError::new(
            "identity.sources",
            "must list at least one source".into(),
        ));
    }
    let mut seen = HashSet::new();
    for (i, s) in id.sources.iter().enumerate() {
        if !seen.insert(*s) {
            errors.push(ConfigError::new(
                format!("identity.sources[{i}]"),
                "listed twice".into(),
            ));
        }
    }
    if id.sources.contains(&IdentitySource::Xfcc) && !id.trust_xfcc {
        errors.push(ConfigError::new(
            "identity.sources",
            "xfcc is read only with identity.trust_xfcc: true (and only behind a proxy that sanitizes the header)".into(),
        ));
    }
    for (i, td) in id.trust_domains.iter().enumerate() {
        if crate::spiffe::validate_trust_domain(td).is_err() {
            errors.push(ConfigError::new(
                format!("identity.trust_domains[{i}]"),
                format!("{td:?} is not a SPIFFE trust domain name"),
            ));
        }
    }
    header_name("identity.spiffe_id_header", &id.spiffe_id_header, errors);
    // Behind APPEND_FORWARD the client writes every element but the last, and a comma in a SAN
    // can split the proxy's element: only the Cert cross-check tells the proxy's element apart.
    if id.xfcc.proxy_mode == super::XfccProxyMode::AppendForward && !id.xfcc.require_cert {
        errors.push(ConfigError::new(
            "identity.xfcc.require_cert",
            "must be true with proxy_mode: append_forward (set the proxy's set_current_client_cert_details.cert: true); without the certificate an appended element cannot be told from a forged one".into(),
        ));
    }
}

fn revocation(config: &Config, errors: &mut Vec<ConfigError>) {
    if config.revocation.store == StoreKind::Redis {
        match &config.revocation.redis {
            None => errors.push(ConfigError::new(
                "revocation.redis",
                "required with store: redis".into(),
            )),
            Some(r) => redis(r, errors),
        }
    }
}

fn redis(r: &super::RedisConfig, errors: &mut Vec<ConfigError>) {
    if let Err(problems) = r.endpoints() {
        for (key, message) in problems {
            let path = if key.is_empty() {
                "revocation.redis".to_string()
            } else {
                format!("revocation.redis.{key}")
            };
            errors.push(ConfigError::new(path, message));
        }
    }
    if r.key_prefix.len() > 256 {
        errors.push(ConfigError::new(
            "revocation.redis.key_prefix",
            "must be at most 256 bytes".into(),
        ));
    }
    if r.cache_ttl > std::time::Duration::from_secs(60) {
        errors.push(ConfigError::new(
            "revocation.redis.cache_ttl",
            "must be at most 60s (it bounds how stale a lookup may be)".into(),
        ));
    }
    if r.cache_capacity == 0 {
        errors.push(ConfigError::new(
            "revocation.redis.cache_capacity",
            "must be at least 1".into(),
        ));
    }
    for (at, d) in [
        ("revocation.redis.connect_timeout", r.connect_timeout),
        ("revocation.redis.command_timeout", r.command_timeout),
        (
            "revocation.redis.replication_timeout",
            r.replication_timeout,
        ),
    ] {
        if d.is_zero() {
            errors.push(ConfigError::new(at, "must be positive".into()));
        }
    }
    if r.min_replicas > 16 {
        errors.push(ConfigError::new(
            "revocation.redis.min_replicas",
            "must be at most 16".into(),
        ));
    }
    if r.replication_timeout > std::time::Duration::from_secs(30) {
        errors.push(ConfigError::new(
            "revocation.redis.replication_timeout",
            "must be at most 30s".into(),
        ));
    }
    for (at, f) in [
        ("revocation.redis.ca_file", &r.ca_file),
        ("revocation.redis.username_file", &r.username_file),
        ("revocation.redis.password_file", &r.password_file),
    ] {
        if let Some(f) = f {
            readable(at, f, errors);
        }
    }
}

fn header_name(at: &str, name: &str, errors: &mut Vec<ConfigError>) {
    if name.starts_with(':') {
        errors.push(ConfigError::new(
            at,
            format!("{name:?} is a pseudo-header and cannot be injected"),
        ));
        return;
    }
    let token = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if !token {
        errors.push(ConfigError::new(
            at,
            format!("{name:?} is not a lower-case HTTP header name"),
        ));
    } else if RESERVED_HEADERS.contains(&name)
        || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
    {
        errors.push(ConfigError::new(
            at,
            format!("{name:?} is reserved and cannot be injected"),
        ));
    }
}

fn tracing_config(t: &crate::config::TracingConfig, errors: &mut Vec<ConfigError>) {
    if let Err(message) = super::parse_http_url(&t.otlp_endpoint) {
        errors.push(ConfigError::new("tracing.otlp_endpoint", message));
    }
    // The traces path is appended; a query or fragment would end up in the middle of it.
    if let Ok(u) = url::Url::parse(&t.otlp_endpoint)
        && (u.query().is_some() || u.fragment().is_some())
    {
        errors.push(ConfigError::new(
            "tracing.otlp_endpoint",
            "must be a base URL without a query or fragment (/v1/traces is appended)".to_string(),
        ));
    }
    if t.service_name.trim().is_empty() {
        errors.push(ConfigError::new(
            "tracing.service_name",
            "must not be empty".to_string(),
        ));
    }
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        errors.push(ConfigError::new(
            "tracing.sample_ratio",
            format!("must be between 0.0 and 1.0, not {}", t.sample_ratio),
        ));
    }
}

fn readable(at: &str, path: &Path, errors: &mut Vec<ConfigError>) {
    if let Err(e) = std::fs::metadata(path).and_then(|m| {
        if m.is_file() {
            Ok(())
        } else {
            Err(std::io::Error::other("not a regular file"))
        }
    }) {
        errors.push(ConfigError::new(
            at,
            format!("cannot read {}: {e}", path.display()),
        ));
    }
}

#[cfg(test)]
mod tests;

//! Semantic checks serde cannot express; every problem is reported with its config path.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use super::{Config, ConfigError, IdentitySource, JwksConfig, ProviderConfig, StoreKind};
use crate::policy::Policy;

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
            if crate::identity::spiffe::SpiffeId::parse(id).is_err() {
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
    if let Err(policy_errors) = Policy::new(&config.rules, config.default_action) {
        errors.extend(
            policy_errors
                .into_iter()
                .map(|e| ConfigError::new(e.path, e.message)),
        );
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
    let sources =
        usize::from(j.uri.is_some()) + usize::from(j.discovery) + usize::from(j.file.is_some());
    if sources == 0 {
        errors.push(ConfigError::new(
            at,
            "one of uri, discovery, file is required".into(),
        ));
    } else if sources > 1 {
        errors.push(ConfigError::new(
            at,
            "only one of uri, discovery, file may be set".into(),
        ));
    }
    if let Some(uri) = &j.uri {
        http_url(&format!("{at}.uri"), uri, errors);
    }
    if j.discovery {
        http_url(&format!("{at}.discovery (issuer)"), issuer, errors);
    }
    if let Some(file) = &j.file {
        readable(&format!("{at}.file"), file, errors);
    }
    if let Some(ca) = &j.ca_file {
        readable(&format!("{at}.ca_file"), ca, errors);
        if j.file.is_some() {
            errors.push(ConfigError::new(
                format!("{at}.ca_file"),
                "applies only to uri or discovery".into(),
            ));
        }
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
        if !valid_trust_domain(td) {
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
            Some(r) if r.url.is_none() && r.cluster_nodes.is_empty() => {
                errors.push(ConfigError::new(
                    "revocation.redis",
                    "one of url, cluster_nodes is required".into(),
                ))
            }
            Some(r) => redis(r, errors),
        }
    }
}

fn redis(r: &super::RedisConfig, errors: &mut Vec<ConfigError>) {
    if r.url.is_some() && !r.cluster_nodes.is_empty() {
        errors.push(ConfigError::new(
            "revocation.redis",
            "set url or cluster_nodes, not both".into(),
        ));
    }
    let urls = r
        .url
        .iter()
        .map(|u| ("revocation.redis.url".to_string(), u))
        .chain(
            r.cluster_nodes
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("revocation.redis.cluster_nodes[{i}]"), u)),
        );
    for (at, u) in urls {
        // The message never quotes the URL: it may hold a password.
        match url::Url::parse(u) {
            Ok(p) if matches!(p.scheme(), "redis" | "rediss") && p.host_str().is_some() => {}
            _ => errors.push(ConfigError::new(
                at,
                "must be a redis:// or rediss:// URL with a host".into(),
            )),
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

/// SPIFFE trust domain charset: lower-case letters, digits, `.`, `-`, `_`.
pub(crate) fn valid_trust_domain(td: &str) -> bool {
    !td.is_empty()
        && td.len() <= 255
        && td.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
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
    http_url("tracing.otlp_endpoint", &t.otlp_endpoint, errors);
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

fn http_url(at: &str, s: &str, errors: &mut Vec<ConfigError>) {
    // The URL is shown redacted: it may carry credentials in its userinfo or query.
    let problem = match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => return,
        Ok(_) => format!("{:?} is not an http(s) URL", super::redact_uri(s)),
        Err(e) => format!("not an http(s) URL: {e}"),
    };
    errors.push(ConfigError::new(at, problem));
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
mod tests {
    use super::*;

    /// The errors of a config with one provider mapping `sub` (and `extra`) to headers.
    fn mapping_errors(identity: &str, mappings: &str) -> Vec<ConfigError> {
        let text = format!(
            "providers:\n  - name: a\n    issuer: https://a\n    audiences: [api]\n    jwks: {{ file: Cargo.toml }}\n    \
             claims_to_headers: {{ {mappings} }}\n{identity}"
        );
        errors_of(&text)
    }

    /// Every error of `text`: loading validates, so a bad config is an `Err`.
    fn errors_of(text: &str) -> Vec<ConfigError> {
        match super::super::from_str_with_env(text, Vec::new()) {
            Ok(config) => validate(&config),
            Err(errors) => errors.0,
        }
    }

    fn paths(errors: &[ConfigError]) -> Vec<String> {
        errors.iter().map(|e| e.path.clone()).collect()
    }

    #[test]
    fn dangerous_injection_targets_are_refused_with_their_path() {
        for header in [
            "authorization",
            "proxy-authorization",
            "cookie",
            "set-cookie",
            "host",
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-client-cert",
            "x-forwarded-host",
            "x-envoy-original-path",
            "x-envoy-auth-headers-to-remove",
            "x-envoy-internal",
        ] {
            let errors = mapping_errors("", &format!("sub: {header}"));
            assert_eq!(
                paths(&errors),
                ["providers[0].claims_to_headers.sub"],
                "{header}: {errors:?}"
            );
            assert!(errors[0].message.contains(header), "{header}: {errors:?}");
        }
    }

    #[test]
    fn pseudo_headers_are_refused() {
        for header in [":authority", ":path", ":method", ":scheme", ":status"] {
            let errors = mapping_errors("", &format!("sub: \"{header}\""));
            assert_eq!(
                paths(&errors),
                ["providers[0].claims_to_headers.sub"],
                "{header}"
            );
            assert!(errors[0].message.contains("pseudo-header"), "{errors:?}");
        }
    }

    #[test]
    fn a_target_equal_to_the_spiffe_id_header_is_refused() {
        // The default spiffe_id_header, and a configured one.
        let errors = mapping_errors("", "sub: x-auth-spiffe-id");
        assert_eq!(paths(&errors), ["providers[0].claims_to_headers.sub"]);
        assert!(errors[0].message.contains("spiffe_id_header"), "{errors:?}");
        let errors = mapping_errors(
            "identity: { spiffe_id_header: x-caller }\n",
            "sub: x-caller, tenant: x-auth-spiffe-id",
        );
        assert_eq!(paths(&errors), ["providers[0].claims_to_headers.sub"]);
    }

    #[test]
    fn two_claims_mapped_to_one_header_are_refused() {
        let errors = mapping_errors("", "sub: x-auth, tenant: x-auth, scope: x-auth-scope");
        // BTreeMap order: sub before tenant; the second one is reported.
        assert_eq!(paths(&errors), ["providers[0].claims_to_headers.tenant"]);
        assert!(
            errors[0].message.contains("claims_to_headers.sub"),
            "{errors:?}"
        );
        // The same header in two providers is fine: one token selects one provider.
        let text = "providers:\n  - { name: a, issuer: https://a, audiences: [api], jwks: { file: Cargo.toml }, claims_to_headers: { sub: x-auth } }\n  \
                    - { name: b, issuer: https://b, audiences: [api], jwks: { file: Cargo.toml }, claims_to_headers: { sub: x-auth } }\n";
        assert_eq!(errors_of(text), Vec::new());
    }

    #[test]
    fn listener_limits_are_bounded() {
        let text = "server: { max_connections: 0, header_read_timeout: 0s, idle_timeout: 2h }\n";
        assert_eq!(
            paths(&errors_of(text)),
            [
                "server.max_connections",
                "server.header_read_timeout",
                "server.idle_timeout"
            ]
        );
        let config = super::super::from_str_with_env("", Vec::new()).unwrap();
        assert_eq!(config.server.max_connections, 4096);
        assert_eq!(validate(&config), Vec::new());
    }

    #[test]
    fn the_file_watch_interval_is_off_or_bounded() {
        for bad in ["50ms", "2h"] {
            let text = format!("server: {{ watch_interval: {bad} }}\n");
            assert_eq!(paths(&errors_of(&text)), ["server.watch_interval"], "{bad}");
        }
        for good in ["0s", "100ms", "30s", "1h"] {
            let text = format!("server: {{ watch_interval: {good} }}\n");
            assert_eq!(errors_of(&text), Vec::new(), "{good}");
        }
        let config = super::super::from_str_with_env("", Vec::new()).unwrap();
        assert_eq!(config.server.watch_interval, Duration::from_secs(2));
    }

    #[test]
    fn ordinary_targets_are_accepted() {
        let errors = mapping_errors(
            "",
            "sub: x-auth-subject, scope: x-auth-scope, tenant: x-tenant",
        );
        assert_eq!(errors, Vec::new());
    }

    #[test]
    fn the_spiffe_id_header_itself_may_not_be_a_dangerous_header() {
        for header in ["x-forwarded-user", "x-envoy-peer", "proxy-authorization"] {
            let errors = mapping_errors(
                &format!("identity: {{ spiffe_id_header: {header} }}\n"),
                "sub: x-auth-subject",
            );
            assert_eq!(paths(&errors), ["identity.spiffe_id_header"], "{header}");
        }
    }

    #[test]
    fn tracing_settings_are_checked_with_their_paths() {
        let text = "tracing: { otlp_endpoint: \"collector:4318\", service_name: \" \", sample_ratio: 1.5 }\n";
        assert_eq!(
            paths(&errors_of(text)),
            [
                "tracing.otlp_endpoint",
                "tracing.service_name",
                "tracing.sample_ratio"
            ]
        );
        let text = "tracing: { otlp_endpoint: \"http://c:4318\" }\n";
        let mut config = super::super::from_str_with_env(text, Vec::new()).unwrap();
        let t = config.tracing.as_mut().unwrap();
        t.otlp_endpoint = "http://c:4318/?k=v".to_string();
        t.sample_ratio = f64::NAN;
        assert_eq!(
            paths(&validate(&config)),
            ["tracing.otlp_endpoint", "tracing.sample_ratio"]
        );
        let text = "tracing: { otlp_endpoint: \"http://collector:4318\" }\n";
        assert_eq!(errors_of(text), Vec::new());
        let config = super::super::from_str_with_env(text, Vec::new()).unwrap();
        let t = config.tracing.unwrap();
        assert_eq!(
            (t.service_name.as_str(), t.sample_ratio),
            ("mesh-authz", 1.0)
        );
        let off = super::super::from_str_with_env("", Vec::new()).unwrap();
        assert!(off.tracing.is_none());
    }
}

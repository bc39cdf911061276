//! Unit tests of `validate`.

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
fn worker_threads_are_bounded_and_default_to_the_usable_cpus() {
    for bad in ["0", "1025"] {
        let text = format!("server: {{ worker_threads: {bad} }}\n");
        let errors = errors_of(&text);
        assert_eq!(paths(&errors), ["server.worker_threads"], "{bad}");
        assert!(
            errors[0].message.contains("between 1 and 1024"),
            "{errors:?}"
        );
    }
    for good in [1, 4, 1024] {
        let text = format!("server: {{ worker_threads: {good} }}\n");
        assert_eq!(errors_of(&text), Vec::new(), "{good}");
        let config = super::super::from_str_with_env(&text, Vec::new()).unwrap();
        assert_eq!(config.server.effective_worker_threads(), good);
    }
    let config = super::super::from_str_with_env("", Vec::new()).unwrap();
    assert_eq!(config.server.worker_threads, None);
    let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(config.server.effective_worker_threads(), usable);
    // The environment override reaches it like any other key.
    let env = vec![(
        "MESH_AUTHZ_SERVER__WORKER_THREADS".to_string(),
        "3".to_string(),
    )];
    let config = super::super::from_str_with_env("", env).unwrap();
    assert_eq!(config.server.worker_threads, Some(3));
    assert!(
        serde_json::to_string(&config.server)
            .unwrap()
            .contains("\"worker_threads\":3")
    );
    // Absent, it is not printed by check-config (the effective config reads as before).
    let absent = super::super::from_str_with_env("", Vec::new()).unwrap();
    assert!(
        !serde_json::to_string(&absent.server)
            .unwrap()
            .contains("worker_threads")
    );
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
    let text =
        "tracing: { otlp_endpoint: \"collector:4318\", service_name: \" \", sample_ratio: 1.5 }\n";
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

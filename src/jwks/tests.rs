//! Unit tests of the JWKS cache and its fetching.

use super::fetch::{display_url, parse_discovery};
use super::*;

fn discovery_url(issuer: &str) -> Result<Url, String> {
    let jwks = JwksConfig {
        discovery: true,
        ..jwks_config()
    };
    match jwks.source(issuer) {
        Ok(JwksSource::Discovery { discovery_url, .. }) => Ok(discovery_url),
        other => Err(format!("{other:?}")),
    }
}

fn provider(jwks: JwksConfig) -> ProviderConfig {
    ProviderConfig {
        name: "corp".to_string(),
        issuer: "https://auth.example.com/".to_string(),
        audiences: vec!["api".to_string()],
        allow_any_audience: false,
        jwks,
        algorithms: vec![mesh_authz_core::token::Algorithm::RS256],
        clock_skew: Duration::from_secs(30),
        forward_token: false,
        claims_to_headers: Default::default(),
        claims_to_metadata: false,
        required_claims: Vec::new(),
        max_token_lifetime: None,
    }
}

fn jwks_config() -> JwksConfig {
    JwksConfig {
        uri: None,
        discovery: false,
        file: None,
        refresh_interval: Duration::from_secs(300),
        min_refetch_interval: Duration::from_secs(10),
        fetch_timeout: Duration::from_secs(5),
        ca_file: None,
        max_keys_without_kid: 32,
    }
}

#[test]
fn backoff_doubles_and_is_capped() {
    let cap = Duration::from_secs(10);
    let got: Vec<u64> = (1..=6).map(|n| backoff(n, cap).as_secs()).collect();
    assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
    assert_eq!(backoff(u32::MAX, cap), cap);
    assert_eq!(
        backoff(1, Duration::from_millis(200)),
        Duration::from_millis(200)
    );
}

#[test]
fn discovery_url_strips_trailing_slash() {
    let u = discovery_url("https://auth.example.com/").unwrap();
    assert_eq!(
        u.as_str(),
        "https://auth.example.com/.well-known/openid-configuration"
    );
    let u = discovery_url("https://auth.example.com/tenant/a").unwrap();
    assert_eq!(
        u.as_str(),
        "https://auth.example.com/tenant/a/.well-known/openid-configuration"
    );
}

#[test]
fn source_must_be_exactly_one() {
    let none = jwks_config();
    assert!(matches!(
        JwksCache::from_provider(&provider(none), Metrics::new()),
        Err(JwksError::Config(_))
    ));
    let mut two = jwks_config();
    two.uri = Some("https://a.example/jwks".to_string());
    two.discovery = true;
    assert!(matches!(
        JwksCache::from_provider(&provider(two), Metrics::new()),
        Err(JwksError::Config(_))
    ));
}

#[test]
fn bad_uris_and_intervals_are_refused() {
    for uri in [
        "ftp://a.example/jwks",
        "file:///etc/passwd",
        "not a url",
        "https://",
    ] {
        let mut c = jwks_config();
        c.uri = Some(uri.to_string());
        assert!(
            matches!(
                JwksCache::from_provider(&provider(c), Metrics::new()),
                Err(JwksError::Config(_))
            ),
            "{uri}"
        );
    }
}

#[test]
fn unreadable_or_empty_ca_file_is_a_config_error() {
    let mut c = jwks_config();
    c.uri = Some("https://a.example/jwks".to_string());
    c.ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
    assert!(matches!(
        JwksCache::from_provider(&provider(c.clone()), Metrics::new()),
        Err(JwksError::Config(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, b"no pem here").unwrap();
    c.ca_file = Some(path);
    assert!(matches!(
        JwksCache::from_provider(&provider(c), Metrics::new()),
        Err(JwksError::Config(_))
    ));
}

#[test]
fn new_does_no_io_and_is_not_ready() {
    let mut c = jwks_config();
    c.uri = Some("http://127.0.0.1:9/jwks".to_string());
    let cache = JwksCache::from_provider(&provider(c), Metrics::new()).unwrap();
    assert!(!cache.is_ready());
    assert!(cache.current().is_none());
}

#[test]
fn discovery_document_rules() {
    let https = Url::parse("https://auth.example.com/.well-known/openid-configuration").unwrap();
    let iss = "https://auth.example.com";
    let ok = br#"{"issuer":"https://auth.example.com","jwks_uri":"https://auth.example.com/keys"}"#;
    assert_eq!(
        parse_discovery(ok, iss, &https).unwrap().as_str(),
        "https://auth.example.com/keys"
    );
    let cases: [&[u8]; 7] = [
        b"not json",
        b"[]",
        br#"{"jwks_uri":"https://auth.example.com/keys"}"#,
        br#"{"issuer":"https://evil.example.com","jwks_uri":"https://auth.example.com/keys"}"#,
        br#"{"issuer":"https://auth.example.com"}"#,
        br#"{"issuer":"https://auth.example.com","jwks_uri":42}"#,
        br#"{"issuer":"https://auth.example.com","jwks_uri":"http://auth.example.com/keys"}"#,
    ];
    for doc in cases {
        assert!(
            matches!(
                parse_discovery(doc, iss, &https),
                Err(JwksError::Discovery(_))
            ),
            "{}",
            String::from_utf8_lossy(doc)
        );
    }
    // Exact issuer match: a trailing-slash difference is a mismatch, and both values are shown.
    let slash = br#"{"issuer":"https://auth.example.com/","jwks_uri":"https://a/keys"}"#;
    let err = parse_discovery(slash, iss, &https).unwrap_err().to_string();
    assert!(
        err.contains(r#"issuer "https://auth.example.com/" does not equal the configured issuer "https://auth.example.com""#),
        "{err}"
    );
}

#[test]
fn display_url_hides_credentials_and_query() {
    let u = Url::parse("https://user:pw@a.example:8443/keys?token=x#f").unwrap();
    assert_eq!(display_url(&u), "https://a.example:8443/keys");
}

#[test]
fn outcome_labels() {
    assert_eq!(JwksError::Fetch("x".into()).outcome(), "fetch_error");
    assert_eq!(JwksError::TooLarge { limit: 1 }.outcome(), "invalid");
    assert_eq!(JwksError::Discovery("x".into()).outcome(), "invalid");
    assert_eq!(
        JwksError::Document(mesh_authz_core::token::jwk::JwkError::NoUsableKeys).outcome(),
        "invalid"
    );
}

#[test]
fn cache_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JwksCache>();
}

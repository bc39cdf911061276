//! The sharded series read back through `/metrics`.

use super::*;

fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .map(|l| &l[series.len() + 1..])
}

#[test]
fn sharded_series_export_the_same_names_labels_and_sums() {
    let metrics = Metrics::new();
    let sink = metrics.core_sink();
    // Before any check: the series a check touches exist at zero, revocation ones do not.
    let text = metrics.render();
    assert_eq!(
        line(
            &text,
            r#"mesh_authz_checks_total{decision="allow",reason="ok"}"#
        ),
        Some("0")
    );
    assert_eq!(
        line(&text, r#"mesh_authz_token_cache_total{outcome="hit"}"#),
        Some("0")
    );
    assert!(
        !text.contains("mesh_authz_revocation_lookups_total"),
        "{text}"
    );

    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1000 {
                    sink.check_answered(CheckOutcome::Allow, "ok", Some(0.000_2));
                    sink.token_cache(true);
                    sink.revocation_lookup("memory", "active");
                }
                sink.token_cache(false);
                sink.check_answered(CheckOutcome::Deny, "token_missing", Some(2.0));
                sink.revocation_lookup("redis", "error");
            });
        }
    });
    let text = metrics.render();
    let at = |series: &str| line(&text, series).map(str::to_string);
    // Each thread: 1,000 allows at 0.2 ms, one deny at 2 s (above the last bound: counted, in
    // +Inf only), 1,000 cache hits and one miss, and lookups.
    for (series, want) in [
        (
            r#"mesh_authz_checks_total{decision="allow",reason="ok"}"#,
            "4000",
        ),
        (
            r#"mesh_authz_checks_total{decision="deny",reason="token_missing"}"#,
            "4",
        ),
        (
            r#"mesh_authz_check_duration_seconds_bucket{decision="allow",le="0.0001"}"#,
            "0",
        ),
        (
            r#"mesh_authz_check_duration_seconds_bucket{decision="allow",le="0.00025"}"#,
            "4000",
        ),
        (
            r#"mesh_authz_check_duration_seconds_bucket{decision="allow",le="+Inf"}"#,
            "4000",
        ),
        (
            r#"mesh_authz_check_duration_seconds_count{decision="allow"}"#,
            "4000",
        ),
        (
            r#"mesh_authz_check_duration_seconds_bucket{decision="deny",le="1"}"#,
            "0",
        ),
        (
            r#"mesh_authz_check_duration_seconds_count{decision="deny"}"#,
            "4",
        ),
        (r#"mesh_authz_token_cache_total{outcome="hit"}"#, "4000"),
        (r#"mesh_authz_token_cache_total{outcome="miss"}"#, "4"),
        (
            r#"mesh_authz_revocation_lookups_total{outcome="active",source="memory"}"#,
            "4000",
        ),
        (
            r#"mesh_authz_revocation_lookups_total{outcome="error",source="redis"}"#,
            "4",
        ),
    ] {
        assert_eq!(at(series).as_deref(), Some(want), "{series}");
    }
    let sum: f64 = at(r#"mesh_authz_check_duration_seconds_sum{decision="allow"}"#)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!((sum - 0.8).abs() < 1e-9, "{sum}");
    assert_eq!(metrics.token_cache.with_label_values(&["hit"]).get(), 4000);
    assert_eq!(metrics.token_cache.with_label_values(&["miss"]).get(), 4);
    // No lookup answered from the cache or Redis as active: no such series.
    assert!(
        !text.contains(r#"outcome="active",source="cache""#),
        "{text}"
    );
    assert!(
        !text.contains(r#"outcome="active",source="redis""#),
        "{text}"
    );
}

#[test]
fn every_sink_of_one_registry_adds_to_the_same_series() {
    let metrics = Metrics::new();
    // A reload builds a new checker with a new sink over the same registry.
    metrics.core_sink().token_cache(true);
    metrics.core_sink().token_cache(true);
    assert_eq!(metrics.token_cache.with_label_values(&["hit"]).get(), 2);
}

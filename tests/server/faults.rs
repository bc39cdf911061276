//! JWKS faults end to end, through a real server: the endpoint going down, stalling, serving
//! garbage or an oversized document after a good start, and a flood of unknown `kid`s.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::*;
use mesh_authz_core::token::Algorithm;

const SPIFFE_OK: &str = "spiffe://cluster.local/ns/shop/sa/frontend";

fn config(jwks_uri: &str, jwks_extra: &str) -> String {
    format!(
        r#"
providers:
  - name: corp
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ uri: "{jwks_uri}", {jwks_extra} }}
rules:
  - name: api
    match: {{ path_prefix: /api }}
    require: {{ token: true }}
"#
    )
}

struct Faulty {
    jwks: FaultyJwks,
    key: mesh_authz::tools::issuer::GeneratedKey,
    server: mesh_authz::server::Running,
    client: envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient<
        tonic::transport::Channel,
    >,
}

async fn faulty(jwks_extra: &str) -> Faulty {
    let key = key(Algorithm::RS256, "k1");
    let jwks = FaultyJwks::start(&key.jwks_json).await;
    let server = start(&config(&jwks.uri(), jwks_extra)).await;
    let client = client(server.grpc_addr).await;
    Faulty {
        jwks,
        key,
        server,
        client,
    }
}

/// Waits until the refresh loop has made `n` more attempts than `from`.
async fn wait_attempts(jwks: &FaultyJwks, from: usize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while jwks.attempts() < from + n {
        assert!(
            Instant::now() < deadline,
            "the refresh loop made no further fetch attempts"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn allowed(f: &mut Faulty, sub: &str) -> (u16, String) {
    // A new subject each time: a new token, so the verified-token cache cannot answer.
    let token = mint(&f.key, sub, |_| {});
    let r = check(&mut f.client, Req::get("/api/x").bearer(&token)).await;
    (verdict(&r).0, reason(&r))
}

#[tokio::test]
async fn jwks_down_later_keeps_the_last_good_keys_and_counts_fetch_errors() {
    let mut f =
        faulty("refresh_interval: 200ms, min_refetch_interval: 100ms, fetch_timeout: 1s").await;
    assert_eq!(allowed(&mut f, "before").await.0, 200);
    let series = r#"mesh_authz_jwks_refresh_total{outcome="fetch_error",provider="corp"}"#;
    assert_eq!(metric(&f.server, series), 0.0);

    f.jwks.down.store(true, Ordering::SeqCst);
    let from = f.jwks.attempts();
    wait_attempts(&f.jwks, from, 2).await;
    // Let the refresh loop record the failed attempt.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(f.jwks.refused.load(Ordering::SeqCst) >= 2);
    assert!(
        metric(&f.server, series) >= 1.0,
        "{}",
        f.server.metrics.render()
    );
    // Still allowed with the keys held before the endpoint went down, and still ready.
    assert_eq!(allowed(&mut f, "during").await, (200, String::new()));
    let ready = reqwest::get(format!("http://{}/readyz", f.server.http_addr))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    assert_eq!(
        metric(&f.server, r#"mesh_authz_jwks_keys{provider="corp"}"#),
        1.0
    );
}

#[tokio::test]
async fn jwks_http_errors_garbage_and_oversized_documents_never_replace_good_keys() {
    let mut f =
        faulty("refresh_interval: 200ms, min_refetch_interval: 100ms, fetch_timeout: 1s").await;
    assert_eq!(allowed(&mut f, "before").await.0, 200);
    let invalid = r#"mesh_authz_jwks_refresh_total{outcome="invalid",provider="corp"}"#;
    let fetch_error = r#"mesh_authz_jwks_refresh_total{outcome="fetch_error",provider="corp"}"#;

    // HTTP 503 from the endpoint: a fetch error.
    f.jwks.status.store(503, Ordering::SeqCst);
    let from = f.jwks.attempts();
    wait_attempts(&f.jwks, from, 2).await;
    assert!(metric(&f.server, fetch_error) >= 1.0);
    assert_eq!(allowed(&mut f, "http-503").await.0, 200);
    f.jwks.status.store(200, Ordering::SeqCst);

    // Garbage, a key set without usable keys, and a document over the size limit: refused.
    for (i, body) in [
        "this is not json".to_string(),
        r#"{"keys":[]}"#.to_string(),
        format!(
            r#"{{"keys":[],"pad":"{}"}}"#,
            "x".repeat(mesh_authz::jwks::MAX_DOCUMENT_BYTES)
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let before = metric(&f.server, invalid);
        f.jwks.set(&body);
        let from = f.jwks.attempts();
        wait_attempts(&f.jwks, from, 2).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(metric(&f.server, invalid) > before, "document {i}");
        assert_eq!(allowed(&mut f, &format!("garbage-{i}")).await.0, 200, "{i}");
    }
}

#[tokio::test]
async fn a_stalled_background_refresh_never_delays_a_check_with_a_known_kid() {
    // The refresh loop fetches every 200 ms; each fetch will stall for 3 s (under the 5 s timeout).
    let mut f =
        faulty("refresh_interval: 200ms, min_refetch_interval: 100ms, fetch_timeout: 5s").await;
    assert_eq!(allowed(&mut f, "warm").await.0, 200);
    f.jwks.delay_ms.store(3000, Ordering::SeqCst);
    let from = f.jwks.hits.load(Ordering::SeqCst);
    // Wait until a background fetch is in progress (it holds the fetch lock for 3 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.jwks.hits.load(Ordering::SeqCst) == from {
        assert!(Instant::now() < deadline, "no background refresh started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..3 {
        let started = Instant::now();
        let got = allowed(&mut f, &format!("during-stall-{i}")).await;
        let took = started.elapsed();
        assert_eq!(got, (200, String::new()));
        assert!(
            took < Duration::from_millis(1000),
            "a known-kid check waited {took:?} on the stalled refresh"
        );
    }
}

#[tokio::test]
async fn a_flood_of_unknown_kids_causes_at_most_one_fetch_per_min_refetch_interval() {
    let f = faulty("refresh_interval: 5m, min_refetch_interval: 2s").await;
    let baseline = f.jwks.attempts();
    assert_eq!(baseline, 1, "one fetch at start");

    let flood = |round: usize| {
        let client = f.client.clone();
        let key = &f.key;
        let tokens: Vec<String> = (0..100)
            .map(|i| {
                mint(key, "mallory", |o| {
                    o.kid = Some(format!("random-{round}-{i}-{}", now()));
                })
            })
            .collect();
        async move {
            let mut tasks = Vec::new();
            for t in tokens {
                let mut c = client.clone();
                tasks.push(tokio::spawn(async move {
                    check(&mut c, Req::get("/api/x").bearer(&t).principal(SPIFFE_OK)).await
                }));
            }
            for task in tasks {
                let r = task.await.unwrap();
                assert_eq!(
                    (verdict(&r).0, reason(&r).as_str()),
                    (401, "token_unknown_kid")
                );
            }
        }
    };

    let started = Instant::now();
    flood(0).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the flood outlived min_refetch_interval; the bound below would be loose"
    );
    assert_eq!(
        f.jwks.attempts() - baseline,
        1,
        "100 unknown kids within one interval: exactly one refetch"
    );
    flood(1).await;
    assert_eq!(f.jwks.attempts() - baseline, 1, "still inside the interval");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    flood(2).await;
    assert_eq!(
        f.jwks.attempts() - baseline,
        2,
        "one more refetch in the next interval"
    );
}

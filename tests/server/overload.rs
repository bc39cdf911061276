//! Overload, deadlines and shutdown ordering, end to end: a JWKS that stalls holds checks in
//! flight (a token with an unknown `kid` waits on the refetch), so the server's bounds show.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::*;
use mesh_authz::server::Running;
use mesh_authz::tools::issuer::GeneratedKey;
use mesh_authz_core::token::Algorithm;
use tonic_health::pb::health_check_response::ServingStatus;

fn config(jwks_uri: &str, extra: &str) -> String {
    format!(
        r#"
providers:
  - name: corp
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ uri: "{jwks_uri}", refresh_interval: 5m, min_refetch_interval: 100ms, fetch_timeout: 5s }}
rules:
  - name: api
    match: {{ path_prefix: /api }}
    require: {{ token: true }}
{extra}
"#
    )
}

struct Stalled {
    jwks: FaultyJwks,
    key: GeneratedKey,
    server: Running,
}

/// A server whose JWKS will stall every fetch for `stall_ms` (after the first, good, load).
async fn stalled(extra: &str, stall_ms: usize) -> Stalled {
    let key = key(Algorithm::RS256, "k1");
    let jwks = FaultyJwks::start(&key.jwks_json).await;
    let server = start(&config(&jwks.uri(), extra)).await;
    jwks.delay_ms.store(stall_ms, Ordering::SeqCst);
    Stalled { jwks, key, server }
}

/// A valid token whose `kid` the JWKS does not (yet) hold: its check waits on a refetch.
fn unknown_kid_token(key: &GeneratedKey, kid: &str) -> String {
    mint(key, "alice", |o| o.kid = Some(kid.to_string()))
}

async fn wait_in_flight(server: &Running, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.metrics.checks_in_flight.get() < n {
        assert!(Instant::now() < deadline, "checks never got in flight");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn envoys_grpc_deadline_is_answered_in_time_with_an_explicit_deny() {
    let s = stalled("", 3000).await;
    let mut c = client(s.server.grpc_addr).await;
    let token = unknown_kid_token(&s.key, "rotated");
    let started = Instant::now();
    let r = check_with_deadline(
        &mut c,
        Req::get("/api/x").bearer(&token),
        Duration::from_millis(200),
    )
    .await
    .expect("a CheckResponse, never a gRPC error (failure_mode_allow would allow it)");
    let took = started.elapsed();
    assert_eq!(
        (verdict(&r), reason(&r).as_str()),
        ((503, 14), "deadline_exceeded")
    );
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(1000),
        "answered after {took:?} for a 200 ms deadline"
    );
    assert_eq!(
        metric(
            &s.server,
            r#"mesh_authz_checks_total{decision="deny",reason="deadline_exceeded"}"#
        ),
        1.0
    );
    assert_eq!(s.server.metrics.checks_in_flight.get(), 0);
}

#[tokio::test]
async fn check_timeout_bounds_checks_without_a_deadline_over_grpc_and_http() {
    let s = stalled("limits: { check_timeout: 300ms }", 3000).await;
    let mut c = client(s.server.grpc_addr).await;
    let started = Instant::now();
    let r = check(
        &mut c,
        Req::get("/api/x").bearer(&unknown_kid_token(&s.key, "rotated-1")),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(
        (verdict(&r), reason(&r).as_str()),
        ((503, 14), "deadline_exceeded")
    );
    assert!(took < Duration::from_millis(1500), "took {took:?}");

    tokio::time::sleep(Duration::from_millis(200)).await; // past min_refetch_interval
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .get(format!("http://{}/check/api/x", s.server.http_addr))
        .bearer_auth(unknown_kid_token(&s.key, "rotated-2"))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(
        metric(
            &s.server,
            r#"mesh_authz_checks_total{decision="deny",reason="deadline_exceeded"}"#
        ),
        2.0
    );
    // The stalled fetches were attempted (so the deny was the deadline, not a refusal to try).
    assert!(s.jwks.hits.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn over_max_concurrent_checks_is_shed_at_once_with_503_overloaded() {
    let s = stalled(
        "limits: { max_concurrent_checks: 2, check_timeout: 10s }",
        1500,
    )
    .await;
    let c = client(s.server.grpc_addr).await;
    // Two checks held on the stalled refetch (the second waits for the first's fetch).
    let held: Vec<_> = (0..2)
        .map(|i| {
            let mut c = c.clone();
            let token = unknown_kid_token(&s.key, &format!("held-{i}"));
            tokio::spawn(async move { check(&mut c, Req::get("/api/x").bearer(&token)).await })
        })
        .collect();
    wait_in_flight(&s.server, 2).await;

    // The third, even one that needs no I/O at all, is refused at once.
    let valid = mint(&s.key, "bob", |_| {});
    let started = Instant::now();
    let r = check(&mut c.clone(), Req::get("/api/x").bearer(&valid)).await;
    let took = started.elapsed();
    assert_eq!(
        (verdict(&r), reason(&r).as_str()),
        ((503, 14), "overloaded")
    );
    assert!(
        took < Duration::from_millis(500),
        "shedding took {took:?}: it must not queue"
    );
    // The HTTP adapter shares the same limit.
    let resp = reqwest::Client::new()
        .get(format!("http://{}/check/api/x", s.server.http_addr))
        .bearer_auth(&valid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        metric(
            &s.server,
            r#"mesh_authz_checks_total{decision="deny",reason="overloaded"}"#
        ),
        2.0
    );

    // The held checks finish normally, their permits return, and checks pass again.
    for h in held {
        let r = h.await.unwrap();
        assert_eq!(reason(&r), "token_unknown_kid");
    }
    let r = check(&mut c.clone(), Req::get("/api/x").bearer(&valid)).await;
    assert_eq!(verdict(&r).0, 200, "{}", reason(&r));
}

#[tokio::test]
async fn shutdown_reports_not_serving_while_still_answering_then_drains_in_flight_checks() {
    let s = stalled(
        "server: { drain_delay: 1s, shutdown_grace: 10s }\nlimits: { check_timeout: 5s }",
        0,
    )
    .await;
    let mut health_c = health_client(s.server.grpc_addr).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while health(&mut health_c).await.unwrap() != ServingStatus::Serving {
        assert!(Instant::now() < deadline, "never SERVING");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An in-flight check: a rotated key the JWKS serves only after a 1.5 s stall.
    let rotated = key(Algorithm::RS256, "k9");
    s.jwks
        .set(&merge_jwks(&[&s.key.jwks_json, &rotated.jwks_json]));
    s.jwks.delay_ms.store(1500, Ordering::SeqCst);
    let token = mint(&rotated, "alice", |_| {});
    let mut c = client(s.server.grpc_addr).await;
    let in_flight =
        tokio::spawn(async move { check(&mut c, Req::get("/api/x").bearer(&token)).await });
    wait_in_flight(&s.server, 1).await;

    let grpc_addr = s.server.grpc_addr;
    let shutdown = tokio::spawn(s.server.shutdown());
    // Health says NOT_SERVING (an answer, not a broken connection) ...
    let started = Instant::now();
    loop {
        match health(&mut health_c).await {
            Ok(ServingStatus::NotServing) => break,
            Ok(_) => {}
            Err(e) => panic!("health failed before it reported NOT_SERVING: {e}"),
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "health never reported NOT_SERVING"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ... while the listener still accepts new connections and answers checks.
    let mut fresh = client(grpc_addr).await;
    let r = check(&mut fresh, Req::get("/api/x")).await;
    assert_eq!(reason(&r), "token_missing");

    shutdown.await.unwrap();
    let r = in_flight.await.unwrap();
    assert_eq!(
        verdict(&r).0,
        200,
        "in-flight check drained: {}",
        reason(&r)
    );
    assert!(tokio::net::TcpStream::connect(grpc_addr).await.is_err());
}

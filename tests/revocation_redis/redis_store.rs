//! The Redis revocation store against a real `redis-server` started by the test: the data model
//! written straight into Redis, the store API, failure policy, recovery and timeouts.

use std::time::{Duration, Instant};

use crate::common::ports::free_port;
use crate::common::redis::RedisServer;
use crate::common::*;
use mesh_authz::redis_store::{JTI_GRACE_SECS, RedisStore};
use mesh_authz::telemetry::Metrics;
use mesh_authz_core::config::RedisConfig;
use mesh_authz_core::revocation::{RevocationEntry, RevocationStore, RevokedBy, Status, TokenRef};

const SPIFFE_OK: &str = "spiffe://cluster.local/ns/shop/sa/frontend";
const PREFIX: &str = "mesh-authz:";

pub fn config(jwks_uri: &str, redis: &str) -> String {
    format!(
        r#"
providers:
  - name: corp
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ uri: "{jwks_uri}" }}
revocation:
{redis}
rules:
  - name: api
    match: {{ path_prefix: / }}
    require: {{ token: true }}
default_action: deny
"#
    )
}

fn redis_yaml(url: &str, extra: &str) -> String {
    format!(
        "  store: redis\n  redis:\n    url: \"{url}\"\n    cache_ttl: 1s\n    command_timeout: 300ms\n    connect_timeout: 300ms\n{extra}"
    )
}

async fn env(revocation_yaml: &str) -> Env {
    Env::start(|uri| config(uri, revocation_yaml)).await
}

impl Env {
    async fn status(&mut self, token: &str) -> (u16, String) {
        let r = check(
            &mut self.client,
            Req::get("/api").bearer(token).principal(SPIFFE_OK),
        )
        .await;
        (verdict(&r).0, reason(&r))
    }

    async fn readyz(&self) -> u16 {
        reqwest::get(format!("http://{}/readyz", self.server.http_addr))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// Polls until `token` is denied as revoked; returns the time it took.
    async fn until_revoked(&mut self, token: &str, limit: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            let (code, reason) = self.status(token).await;
            if code == 401 && reason == "token_revoked" {
                return t0.elapsed();
            }
            assert_eq!(code, 200, "unexpected {code} {reason}");
            assert!(t0.elapsed() < limit, "still allowed after {limit:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn store_config(url: &str) -> RedisConfig {
    RedisConfig {
        url: Some(url.to_string()),
        cluster_nodes: Vec::new(),
        key_prefix: PREFIX.into(),
        cache_ttl: Duration::from_secs(1),
        cache_capacity: 1000,
        connect_timeout: Duration::from_secs(1),
        command_timeout: Duration::from_secs(1),
        ca_file: None,
        username_file: None,
        password_file: None,
        min_replicas: 0,
        replication_timeout: Duration::from_millis(500),
    }
}

/// The bar: revocations written straight into Redis by key (no event published) deny within
/// `cache_ttl` + 0.5 s, for the jti, the subject cut-off and the parent cascade.
#[tokio::test]
async fn data_model_written_directly_denies_within_cache_ttl() {
    let redis = RedisServer::start();
    let mut e = env(&redis_yaml(&redis.url(), "")).await;
    let by_jti = mint(&e.key, "alice", |o| o.jti = Some("direct-jti".into()));
    let by_sub = mint(&e.key, "bob", |o| o.now = now() - 10);
    let by_parent = mint(&e.key, "carol", |o| {
        o.parent_jti = Some("direct-parent".into())
    });
    for t in [&by_jti, &by_sub, &by_parent] {
        // Twice: the second answer comes from the local cache.
        assert_eq!(e.status(t).await.0, 200);
        assert_eq!(e.status(t).await.0, 200);
    }
    let cached = e.server.metrics.render();
    assert!(
        cached.contains(r#"revocation_lookups_total{outcome="active",source="cache"}"#),
        "{cached}"
    );
    let cut = now().to_string();
    redis.cli(&["SET", "mesh-authz:jti:direct-jti", "1", "EX", "600"]);
    redis.cli(&["SET", "mesh-authz:sub:bob", &cut]);
    redis.cli(&["SET", "mesh-authz:jti:direct-parent", "1", "EX", "600"]);
    let bound = Duration::from_millis(1500);
    for t in [&by_jti, &by_sub, &by_parent] {
        let took = e.until_revoked(t, bound).await;
        eprintln!("direct write denied after {took:?}");
    }
    // A token of bob issued after the cut-off is fine.
    let fresh = mint(&e.key, "bob", |o| o.now = now() + 5);
    assert_eq!(e.status(&fresh).await.0, 200);
}

/// Writes through the store: keys and TTLs per the data model, status, un-revoke, recent list,
/// events published on `{prefix}events`.
#[tokio::test]
async fn store_writes_follow_the_data_model() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&store_config(&redis.url()), Metrics::new())
        .await
        .unwrap();
    assert!(store.wait_connected(Duration::from_secs(5)).await);
    let exp = now() + 600;
    store.revoke_jti("j1", exp).await.unwrap();
    let ttl: i64 = redis.cli(&["TTL", "mesh-authz:jti:j1"]).parse().unwrap();
    assert!(
        (600 + JTI_GRACE_SECS - 5..=600 + JTI_GRACE_SECS).contains(&ttl),
        "ttl {ttl}"
    );
    // Already expired: still stored briefly.
    store.revoke_jti("old", now() - 3600).await.unwrap();
    let ttl: i64 = redis.cli(&["TTL", "mesh-authz:jti:old"]).parse().unwrap();
    assert!(ttl > 0, "ttl {ttl}");

    store.revoke_subject("alice", 1000).await.unwrap();
    store.revoke_subject("alice", 500).await.unwrap();
    assert_eq!(
        redis.cli(&["GET", "mesh-authz:sub:alice"]),
        "1000",
        "later cut-off kept"
    );

    let tok = |jti, sub, iat, parent| TokenRef {
        jti,
        sub,
        iat,
        parent_jti: parent,
    };
    assert_eq!(
        store
            .status(tok(Some("j1"), None, None, None))
            .await
            .unwrap(),
        Status::Revoked(RevokedBy::Jti)
    );
    assert_eq!(
        store
            .status(tok(Some("x"), None, None, Some("j1")))
            .await
            .unwrap(),
        Status::Revoked(RevokedBy::Parent)
    );
    assert_eq!(
        store
            .status(tok(None, Some("alice"), Some(1000), None))
            .await
            .unwrap(),
        Status::Revoked(RevokedBy::Subject)
    );
    assert_eq!(
        store
            .status(tok(None, Some("alice"), Some(1001), None))
            .await
            .unwrap(),
        Status::Active
    );
    assert_eq!(
        store
            .status(tok(None, Some("alice"), None, None))
            .await
            .unwrap(),
        Status::Revoked(RevokedBy::Subject),
        "no iat: fail closed"
    );

    store.unrevoke_jti("j1").await.unwrap();
    store.unrevoke_subject("alice").await.unwrap();
    assert_eq!(redis.cli(&["EXISTS", "mesh-authz:jti:j1"]), "0");
    assert_eq!(
        store
            .status(tok(Some("j1"), Some("alice"), Some(1), Some("j1")))
            .await
            .unwrap(),
        Status::Active,
        "un-revoke is seen at once (the local cache entry is dropped)"
    );

    let recent = store.list_recent(10).await.unwrap();
    assert_eq!(recent.len(), 4);
    assert!(
        matches!(&recent[0], RevocationEntry::Subject { sub, before: 1000, .. } if sub == "alice")
    );

    // A garbage cut-off written by another tool fails closed (an error, never "active").
    redis.cli(&["SET", "mesh-authz:sub:mallory", "tomorrow"]);
    assert!(
        store
            .status(tok(None, Some("mallory"), Some(1), None))
            .await
            .is_err()
    );
}

/// Redis killed while checks run: nothing is allowed (`on_error: deny`), readiness fails;
/// Redis restarted: the service recovers by itself within 5 s.
#[tokio::test]
async fn redis_killed_fails_closed_then_recovers() {
    // Persistent, as the README asks of a Redis holding revocations: a restart keeps them.
    let mut redis = RedisServer::start_with(
        free_port(),
        &["--appendonly", "yes", "--appendfsync", "always"],
    );
    let mut e = env(&redis_yaml(&redis.url(), "  on_error: deny\n")).await;
    let active = mint(&e.key, "alice", |_| {});
    let revoked = mint(&e.key, "bob", |o| o.jti = Some("kill-1".into()));
    e.server
        .revocation
        .revoke_jti("kill-1", now() + 600)
        .await
        .unwrap();
    assert_eq!(e.status(&active).await.0, 200);
    assert_eq!(e.status(&revoked).await.0, 401);
    let t0 = Instant::now();
    while e.readyz().await != 200 {
        assert!(t0.elapsed() < Duration::from_secs(5), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    redis.kill();
    // The subscription drop is seen at once and the cache stops answering; give it a beat.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    let mut checks = 0;
    while t0.elapsed() < Duration::from_millis(1500) {
        let (code, reason) = e.status(&revoked).await;
        assert!(
            code == 401 || code == 503,
            "revoked token got {code} {reason}"
        );
        let (code, reason) = e.status(&active).await;
        assert_ne!(code, 200, "allowed while Redis is down ({reason})");
        assert_eq!(reason, "revocation_unavailable");
        checks += 2;
    }
    eprintln!("{checks} checks while Redis was down, none allowed");
    assert_eq!(e.readyz().await, 503);
    let metrics = e.server.metrics.render();
    assert!(metrics.contains("redis_errors_total"), "{metrics}");

    redis.restart();
    let t0 = Instant::now();
    loop {
        let (code, _) = e.status(&active).await;
        if code == 200 && e.readyz().await == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "did not recover in 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("recovered {:?} after restart", t0.elapsed());
    // The revocation survived the restart (AOF).
    assert_eq!(e.status(&revoked).await.0, 401);
}

/// `on_error: allow` is an explicit operator choice: with Redis down, valid tokens pass.
#[tokio::test]
async fn on_error_allow_lets_valid_tokens_through() {
    let mut redis = RedisServer::start();
    let mut e = env(&redis_yaml(&redis.url(), "  on_error: allow\n")).await;
    let t = mint(&e.key, "alice", |_| {});
    assert_eq!(e.status(&t).await.0, 200);
    redis.kill();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(e.status(&t).await.0, 200);
}

/// A blocked Redis (`DEBUG SLEEP`): checks still answer, within the command timeout.
#[tokio::test]
async fn blocked_redis_answers_within_the_command_timeout() {
    let redis = RedisServer::start();
    let mut e = env(&redis_yaml(&redis.url(), "")).await;
    let warm = mint(&e.key, "warm", |_| {});
    assert_eq!(e.status(&warm).await.0, 200);
    let port = redis.port;
    let sleeper =
        std::thread::spawn(move || crate::common::redis::cli(port, &["DEBUG", "SLEEP", "2"]));
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..3 {
        let t = mint(&e.key, &format!("fresh-{i}"), |_| {});
        let t0 = Instant::now();
        let (code, reason) = e.status(&t).await;
        let took = t0.elapsed();
        eprintln!("check against a blocked Redis answered {code} in {took:?}");
        assert_eq!((code, reason.as_str()), (503, "revocation_unavailable"));
        // command_timeout is 300 ms; generous slack for a loaded machine.
        assert!(took < Duration::from_millis(1000), "took {took:?}");
    }
    sleeper.join().unwrap();
}

/// `rediss://` with rustls and a custom CA, and a password from a secret file (never from the
/// URL); a wrong password or an untrusted CA leaves the store unready.
#[tokio::test]
async fn tls_with_custom_ca_and_password_file() {
    let pki = Pki::new();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &pki.ca).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let (cert_f, key_f, ca_f) = (
        w("redis.pem", &cert.pem()),
        w("redis.key", &key.serialize_pem()),
        w("ca.pem", &pki.ca_pem()),
    );
    let pass_f = w("password", "s3cret-pass\n");
    let wrong_f = w("wrong", "nope\n");
    let port = free_port();
    let redis = RedisServer::start_full(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &cert_f,
            "--tls-key-file",
            &key_f,
            "--tls-ca-cert-file",
            &ca_f,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "s3cret-pass",
        ],
        &[
            "--tls",
            "--cacert",
            &ca_f,
            "-a",
            "s3cret-pass",
            "--no-auth-warning",
        ],
    );
    let mut cfg = store_config(&format!("rediss://127.0.0.1:{port}"));
    cfg.ca_file = Some(ca_f.clone().into());
    cfg.password_file = Some(pass_f.into());
    let store = RedisStore::connect(&cfg, Metrics::new()).await.unwrap();
    assert!(store.wait_connected(Duration::from_secs(5)).await);
    store.revoke_jti("tls-1", now() + 60).await.unwrap();
    assert_eq!(redis.cli(&["EXISTS", "mesh-authz:jti:tls-1"]), "1");

    cfg.password_file = Some(wrong_f.into());
    let wrong = RedisStore::connect(&cfg, Metrics::new()).await.unwrap();
    assert!(!wrong.wait_connected(Duration::from_millis(500)).await);
    assert!(!wrong.ready());

    let other = Pki::new();
    let other_ca = w("other.pem", &other.ca_pem());
    cfg.ca_file = Some(other_ca.into());
    cfg.password_file = Some(dir.path().join("password"));
    let untrusted = RedisStore::connect(&cfg, Metrics::new()).await.unwrap();
    assert!(!untrusted.wait_connected(Duration::from_millis(500)).await);
}

/// The CLI straight to Redis: revoke, status (exit 1 when revoked), unrevoke.
#[tokio::test]
async fn cli_revoke_status_unrevoke_via_redis() {
    let redis = RedisServer::start();
    let bin = env!("CARGO_BIN_EXE_mesh-authz");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .args(["--redis", &redis.url()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    assert_eq!(
        run(&["status", "--jti", "cli-1"]),
        (Some(0), "active".into())
    );
    let exp = (now() + 600).to_string();
    assert_eq!(run(&["revoke", "--jti", "cli-1", "--exp", &exp]).0, Some(0));
    assert_eq!(
        run(&["status", "--jti", "cli-1"]),
        (Some(1), "revoked (by jti)".into())
    );
    assert_eq!(run(&["revoke", "--sub", "carol"]).0, Some(0));
    assert_eq!(
        run(&["status", "--sub", "carol", "--iat", "1"]),
        (Some(1), "revoked (by subject)".into())
    );
    assert_eq!(run(&["unrevoke", "--jti", "cli-1"]).0, Some(0));
    assert_eq!(run(&["status", "--jti", "cli-1"]).0, Some(0));
    assert_eq!(redis.cli(&["EXISTS", "mesh-authz:jti:cli-1"]), "0");
}

/// Redis settings are validated with their paths, and a URL's password never shows up in an
/// error or in the printed config.
#[test]
fn redis_config_is_validated_and_redacted() {
    let errors = |revocation: &str| {
        let yaml = config("http://127.0.0.1:1/jwks.json", revocation);
        match mesh_authz_core::config::from_str_with_env(&yaml, Vec::new()) {
            Err(e) => e.to_string(),
            Ok(c) => mesh_authz_core::config::validate(&c)
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    };
    let e = errors("  store: redis\n  redis:\n    url: \"http://:hunter2@x:1\"\n");
    assert!(e.contains("revocation.redis.url"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = errors(
        "  store: redis\n  redis:\n    url: redis://a:1\n    cluster_nodes: [redis://b:1]\n    command_timeout: 0s\n",
    );
    assert!(e.contains("not both"), "{e}");
    assert!(e.contains("revocation.redis.command_timeout"), "{e}");
    let e = errors(
        "  store: redis\n  redis:\n    url: redis://a:1\n    min_replicas: 17\n    replication_timeout: 0s\n",
    );
    assert!(e.contains("revocation.redis.min_replicas"), "{e}");
    assert!(e.contains("revocation.redis.replication_timeout"), "{e}");
    assert_eq!(
        errors("  store: redis\n  redis:\n    url: \"rediss://u:pw@h:6380\"\n"),
        ""
    );

    let yaml = config(
        "http://127.0.0.1:1/jwks.json",
        "  store: redis\n  redis:\n    url: \"rediss://user:hunter2@h:6380/0\"\n    cluster_nodes: []\n",
    );
    let c = mesh_authz_core::config::from_str_with_env(&yaml, Vec::new()).unwrap();
    let printed = serde_json::to_string(&c).unwrap();
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("rediss://user:***@h:6380/0"), "{printed}");
}

/// Polls `f` until it is true or `limit` passes; the time it took.
async fn eventually(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

/// A Redis restarted without persistence comes back empty: the replicas that knew its epoch
/// marker fail closed (every token, revoked or not, 503 `revocation_unavailable`), `/readyz`
/// names the reason, until an operator confirms; then they serve again.
#[tokio::test]
async fn emptied_redis_fails_closed_until_confirmed() {
    let mut redis = RedisServer::start();
    let mut e = env(&redis_yaml(&redis.url(), "  on_error: deny\n")).await;
    let active = mint(&e.key, "alice", |_| {});
    let revoked = mint(&e.key, "bob", |o| o.jti = Some("empty-1".into()));
    e.server
        .revocation
        .revoke_jti("empty-1", now() + 600)
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "epoch marker", async || {
        redis.cli(&["exists", "mesh-authz:epoch"]) == "1" && e.readyz().await == 200
    })
    .await;
    // Let the replica learn the marker (health loop, every 500 ms).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(e.status(&revoked).await.0, 401);

    redis.restart();
    assert_eq!(redis.cli(&["exists", "mesh-authz:jti:empty-1"]), "0");
    let t0 = Instant::now();
    let mut checks = 0;
    while t0.elapsed() < Duration::from_millis(1500) {
        let (code, reason) = e.status(&revoked).await;
        assert_ne!(
            code, 200,
            "revoked token allowed by an emptied Redis ({reason})"
        );
        checks += 1;
    }
    eprintln!("{checks} checks of the revoked token after the restart, none allowed");
    let (code, reason) = e.status(&active).await;
    assert_eq!((code, reason.as_str()), (503, "revocation_unavailable"));
    let body = reqwest::get(format!("http://{}/readyz", e.server.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("revocation set lost"), "{body}");
    let metrics = e.server.metrics.render();
    assert!(
        metrics.contains(r#"redis_errors_total{op="epoch"}"#),
        "{metrics}"
    );

    // The operator re-adds what is still needed and confirms.
    let admin = RedisStore::connect(&store_config(&redis.url()), Metrics::new())
        .await
        .unwrap();
    assert!(admin.wait_connected(Duration::from_secs(5)).await);
    admin.revoke_jti("empty-1", now() + 600).await.unwrap();
    admin.confirm_epoch().await.unwrap();
    let took = eventually(
        Duration::from_secs(3),
        "serving after confirm",
        async || e.status(&active).await.0 == 200,
    )
    .await;
    eprintln!("serving {took:?} after confirm-epoch");
    assert_eq!(e.status(&revoked).await.0, 401);
}

/// A master acknowledges a write its replica never gets, then fails over: with `min_replicas`
/// the write is reported as not confirmed (an error) instead of acknowledged and lost, and an
/// acknowledged one is on the promoted replica.
#[tokio::test]
async fn unreplicated_write_is_not_acknowledged() {
    let mut master = RedisServer::start();
    let master_port = master.port.to_string();
    let replica = RedisServer::start_with(free_port(), &["--replicaof", "127.0.0.1", &master_port]);
    replica.wait_replica_synced();
    let mut cfg = store_config(&master.url());
    cfg.min_replicas = 1;
    cfg.replication_timeout = Duration::from_millis(300);
    let store = RedisStore::connect(&cfg, Metrics::new()).await.unwrap();
    assert!(store.wait_connected(Duration::from_secs(5)).await);
    store.revoke_jti("acked", now() + 600).await.unwrap();
    store.revoke_subject("acked-sub", now()).await.unwrap();

    replica.pause();
    let err = store
        .revoke_jti("unacked", now() + 600)
        .await
        .expect_err("a write no replica holds must not be confirmed");
    assert!(err.to_string().contains("not confirmed"), "{err}");
    // Fail over: the master dies, the replica (which never got the write) is promoted.
    master.kill();
    replica.resume();
    assert_eq!(replica.cli(&["replicaof", "no", "one"]), "OK");
    assert_eq!(replica.cli(&["exists", "mesh-authz:jti:acked"]), "1");
    assert!(!replica.cli(&["get", "mesh-authz:sub:acked-sub"]).is_empty());
    // (The unconfirmed write may or may not have reached it: it sat in the kernel's socket
    // buffer. What matters is that nobody was told it was stored.)
}

/// A Redis 7 ACL user without channel rights: `SUBSCRIBE` is refused. The refusal is noticed,
/// the cache bypassed (a revocation is seen at once, not after `cache_ttl`), `/readyz` says so,
/// and once the ACL is fixed the subscription comes back by itself.
#[tokio::test]
async fn refused_subscription_is_detected_and_retried() {
    let redis = RedisServer::start();
    assert_eq!(
        redis.cli(&[
            "acl",
            "setuser",
            "app",
            "on",
            ">pw",
            "~*",
            "+@all",
            "resetchannels"
        ]),
        "OK"
    );
    let url = format!("redis://app:pw@127.0.0.1:{}", redis.port);
    let yaml = "  store: redis\n  redis:\n    url: \"URL\"\n    cache_ttl: 10s\n    command_timeout: 300ms\n    connect_timeout: 300ms\n"
        .replace("URL", &url);
    let mut e = env(&yaml).await;
    let t = mint(&e.key, "alice", |o| o.jti = Some("acl-1".into()));
    eventually(Duration::from_secs(5), "refusal reported", async || {
        let body = reqwest::get(format!("http://{}/readyz", e.server.http_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.contains("subscription")
    })
    .await;
    assert_eq!(e.readyz().await, 503);
    assert_eq!(e.status(&t).await.0, 200);
    assert_eq!(e.status(&t).await.0, 200);
    // Revoked with its event published: without a live subscription it must be seen at once.
    redis.cli(&["set", "mesh-authz:jti:acl-1", "1", "EX", "600"]);
    redis.cli(&["publish", "mesh-authz:events", "jti:acl-1"]);
    assert_eq!(
        e.status(&t).await.0,
        401,
        "cache used without a subscription"
    );
    let metrics = e.server.metrics.render();
    assert!(
        metrics.contains(r#"redis_errors_total{op="subscribe"}"#),
        "{metrics}"
    );

    redis.cli(&["acl", "setuser", "app", "allchannels"]);
    let took = eventually(Duration::from_secs(5), "resubscribed", async || {
        e.readyz().await == 200
    })
    .await;
    eprintln!("subscribed {took:?} after the ACL fix");
}

/// The subscription killed by Redis (`CLIENT KILL TYPE pubsub`): the cache is bypassed at once
/// and the subscription comes back.
#[tokio::test]
async fn killed_subscription_bypasses_cache_then_returns() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&store_config(&redis.url()), Metrics::new())
        .await
        .unwrap();
    assert!(store.wait_connected(Duration::from_secs(5)).await);
    eventually(Duration::from_secs(5), "subscribed", async || {
        store.subscribed()
    })
    .await;
    redis.cli(&["client", "kill", "type", "pubsub"]);
    let took = eventually(Duration::from_millis(1000), "cache bypassed", async || {
        !store.subscribed()
    })
    .await;
    eprintln!("cache bypassed {took:?} after the kill");
    eventually(Duration::from_secs(5), "resubscribed", async || {
        store.subscribed()
    })
    .await;
}

/// A hung Redis (SIGSTOP): the subscription answers no ping; the cache is bypassed within
/// 0.5 s.
#[tokio::test]
async fn silent_subscription_is_detected() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&store_config(&redis.url()), Metrics::new())
        .await
        .unwrap();
    assert!(store.wait_connected(Duration::from_secs(5)).await);
    eventually(Duration::from_secs(5), "subscribed", async || {
        store.subscribed()
    })
    .await;
    redis.pause();
    let took = eventually(Duration::from_millis(1000), "cache bypassed", async || {
        !store.subscribed()
    })
    .await;
    redis.resume();
    eprintln!("silent subscription noticed after {took:?}");
    eventually(Duration::from_secs(5), "resubscribed", async || {
        store.subscribed()
    })
    .await;
}

/// Sends inline Redis commands on one raw connection and returns each first reply line.
struct RawRedis(std::io::BufReader<std::net::TcpStream>);

impl RawRedis {
    fn connect(port: u16) -> RawRedis {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        RawRedis(std::io::BufReader::new(s))
    }

    fn cmd(&mut self, line: &str) -> String {
        use std::io::{BufRead, Write};
        self.0
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        let mut reply = String::new();
        self.0.read_line(&mut reply).unwrap();
        reply.trim().to_string()
    }
}

/// Redis at `maxclients`: mesh-authz's connections are killed and every reconnect is refused
/// ("max number of clients reached"). Nothing is allowed meanwhile (on_error deny: 503
/// revocation_unavailable), a revoked token is never allowed, and raising `maxclients` brings
/// Checks and /readyz back by themselves.
#[tokio::test]
async fn redis_at_maxclients_fails_closed_then_recovers() {
    let redis = RedisServer::start();
    let mut e = env(&redis_yaml(&redis.url(), "  on_error: deny\n")).await;
    let active = mint(&e.key, "alice", |_| {});
    let revoked = mint(&e.key, "bob", |o| o.jti = Some("maxclients-1".into()));
    redis.cli(&["SET", "mesh-authz:jti:maxclients-1", "1", "EX", "600"]);
    let t0 = Instant::now();
    while e.readyz().await != 200 {
        assert!(t0.elapsed() < Duration::from_secs(5), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(e.status(&active).await.0, 200);
    assert_eq!(e.status(&revoked).await, (401, "token_revoked".into()));

    // One raw connection holds the only slot and throws mesh-authz's connections out.
    let mut holder = RawRedis::connect(redis.port);
    assert_eq!(holder.cmd("CONFIG SET maxclients 1"), "+OK");
    holder.cmd("CLIENT KILL TYPE normal");
    holder.cmd("CLIENT KILL TYPE pubsub");
    let refused = RawRedis::connect(redis.port).cmd("PING");
    assert!(refused.contains("max number of clients"), "{refused}");

    let t0 = Instant::now();
    loop {
        let (code, reason) = e.status(&active).await;
        if code == 503 {
            assert_eq!(reason, "revocation_unavailable");
            break;
        }
        assert_eq!(code, 200, "{reason}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "still allowed from the cache 5 s after Redis refused every connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_millis(1500) {
        let (code, reason) = e.status(&active).await;
        assert_eq!((code, reason.as_str()), (503, "revocation_unavailable"));
        let (code, reason) = e.status(&revoked).await;
        assert!(
            code == 401 || code == 503,
            "revoked token got {code} {reason}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(e.readyz().await, 503);

    assert_eq!(holder.cmd("CONFIG SET maxclients 10000"), "+OK");
    let t0 = Instant::now();
    loop {
        if e.status(&active).await.0 == 200 && e.readyz().await == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "did not recover within 10 s of maxclients being raised"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("recovered {:?} after maxclients was raised", t0.elapsed());
    assert_eq!(e.status(&revoked).await, (401, "token_revoked".into()));
}

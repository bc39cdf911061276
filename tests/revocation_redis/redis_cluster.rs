//! The Redis store on a real 3-master Redis Cluster started by the test on loopback ports.

use std::time::{Duration, Instant};

use crate::common::redis::{RedisCluster, ReplicatedCluster};
use crate::common::*;
use mesh_authz::redis_store::{RedisStore, key_slot};
use mesh_authz::telemetry::Metrics;
use mesh_authz_core::config::RedisConfig;
use mesh_authz_core::revocation::{RevocationStore, RevokedBy, Status, TokenRef};

fn config(jwks_uri: &str, nodes: &[String]) -> String {
    let nodes = nodes
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
providers:
  - name: corp
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ uri: "{jwks_uri}" }}
revocation:
  store: redis
  redis:
    cluster_nodes: [{nodes}]
    cache_ttl: 1s
rules:
  - name: api
    match: {{ path_prefix: / }}
    require: {{ token: true }}
default_action: deny
"#
    )
}

/// The port of the node serving `key` (the others answer MOVED).
fn owner(cluster: &RedisCluster, key: &str) -> u16 {
    let slot = cluster.nodes[0].cli(&["CLUSTER", "KEYSLOT", key]);
    assert_eq!(slot, key_slot(key.as_bytes()).to_string(), "slot of {key}");
    cluster
        .nodes
        .iter()
        .find(|n| !n.cli(&["GET", key]).contains("MOVED"))
        .map(|n| n.port)
        .expect("an owner")
}

async fn status(
    c: &mut envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient<
        tonic::transport::Channel,
    >,
    t: &str,
) -> (u16, String) {
    let r = check(c, Req::get("/api").bearer(t)).await;
    (verdict(&r).0, reason(&r))
}

#[tokio::test]
async fn cluster_lookups_revocations_and_direct_writes() {
    let cluster = RedisCluster::start();
    let Env {
        key,
        server,
        client: mut c,
        jwks: _jwks,
    } = Env::start(|uri| config(uri, &cluster.urls())).await;

    // Facts of one token on different nodes: the lookup spans slots and still answers.
    let (jti, sub, parent) = ("c-jti-1", "c-sub-1", "c-parent-7");
    let owners = [
        owner(&cluster, &format!("mesh-authz:jti:{jti}")),
        owner(&cluster, &format!("mesh-authz:sub:{sub}")),
        owner(&cluster, &format!("mesh-authz:jti:{parent}")),
    ];
    eprintln!("owners of the three keys: {owners:?}");
    let token = mint(&key, sub, |o| {
        o.jti = Some(jti.into());
        o.parent_jti = Some(parent.into());
        o.now = now() - 10;
    });
    let t0 = Instant::now();
    while status(&mut c, &token).await.0 != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "cluster never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Through the store: seen at once (event + local invalidation).
    server
        .revocation
        .revoke_jti(parent, now() + 600)
        .await
        .unwrap();
    assert_eq!(
        status(&mut c, &token).await,
        (401, "token_revoked".to_string())
    );
    server.revocation.unrevoke_jti(parent).await.unwrap();
    assert_eq!(status(&mut c, &token).await.0, 200);

    // Straight into the cluster, no event: within cache_ttl + 0.5 s.
    let cut = now().to_string();
    cluster.cli(&["SET", &format!("mesh-authz:sub:{sub}"), &cut]);
    let t0 = Instant::now();
    loop {
        let (code, reason) = status(&mut c, &token).await;
        if code == 401 {
            assert_eq!(reason, "token_revoked");
            break;
        }
        assert!(t0.elapsed() < Duration::from_millis(1500), "still allowed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("direct cluster write denied after {:?}", t0.elapsed());
}

#[tokio::test]
async fn cluster_store_api() {
    let cluster = RedisCluster::start();
    let cfg = RedisConfig {
        url: None,
        cluster_nodes: cluster.urls(),
        key_prefix: "t:".into(),
        cache_ttl: Duration::from_secs(1),
        cache_capacity: 100,
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(2),
        ca_file: None,
        username_file: None,
        password_file: None,
        min_replicas: 0,
        replication_timeout: Duration::from_secs(1),
    };
    let store = RedisStore::connect(&cfg, Metrics::new()).await.unwrap();
    assert!(store.wait_connected(Duration::from_secs(10)).await);
    for i in 0..20 {
        store
            .revoke_jti(&format!("j{i}"), now() + 60)
            .await
            .unwrap();
    }
    store.revoke_subject("s", 100).await.unwrap();
    for i in 0..20 {
        let st = store
            .status(TokenRef {
                jti: Some("other"),
                sub: Some("s"),
                iat: Some(101),
                parent_jti: Some(&format!("j{i}")),
            })
            .await
            .unwrap();
        assert_eq!(st, Status::Revoked(RevokedBy::Parent));
    }
    assert_eq!(cluster.cli(&["GET", "t:sub:s"]), "100");
    assert_eq!(store.list_recent(5).await.unwrap().len(), 5);
    assert!(store.ready());
}

fn replicated_config(nodes: Vec<String>) -> RedisConfig {
    RedisConfig {
        url: None,
        cluster_nodes: nodes,
        key_prefix: "f:".into(),
        cache_ttl: Duration::from_secs(1),
        cache_capacity: 1000,
        connect_timeout: Duration::from_millis(500),
        // Generous for a loaded CI machine: a healthy lookup must never time out here.
        command_timeout: Duration::from_millis(500),
        ca_file: None,
        username_file: None,
        password_file: None,
        min_replicas: 1,
        replication_timeout: Duration::from_secs(1),
    }
}

fn token(jti: &str) -> TokenRef<'_> {
    TokenRef {
        jti: Some(jti),
        ..TokenRef::default()
    }
}

/// 3 masters, 3 replicas, `cluster-node-timeout` 1 s. A replica hangs (SIGSTOP) while a
/// mesh-authz store starts with all six nodes as seeds: it serves within 10 s. Then a master
/// hangs: no revoked token is ever reported active, revocations acknowledged with
/// `min_replicas: 1` survive the failover, and lookups on the hung master's slots answer
/// correctly within 2 s of its replica's promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_nodes_and_failover_keep_revocations() {
    let cluster = ReplicatedCluster::start(1000);
    let jtis: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
    let writer = RedisStore::connect(&replicated_config(cluster.urls()), Metrics::new())
        .await
        .unwrap();
    assert!(writer.wait_connected(Duration::from_secs(10)).await);
    for j in &jtis {
        writer.revoke_jti(j, now() + 600).await.unwrap();
    }

    // A hung replica among the seeds does not hold start-up up.
    let victim_master = cluster.master_of("f:jti:r0");
    let hung_replica = cluster.replica_of((victim_master + 1) % 3);
    cluster.nodes[hung_replica].pause();
    let t0 = Instant::now();
    let store = RedisStore::connect(&replicated_config(cluster.urls()), Metrics::new())
        .await
        .unwrap();
    loop {
        if matches!(
            store.status(token("r0")).await,
            Ok(Status::Revoked(RevokedBy::Jti))
        ) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "not serving 10 s after start beside a hung node"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "serving {:?} after start beside a hung replica",
        t0.elapsed()
    );
    // A write on the master whose only replica hangs is not confirmed (`WAIT` on a cluster).
    let lonely = (victim_master + 1) % 3;
    let unreplicated = (0..1000)
        .map(|i| format!("w{i}"))
        .find(|j| cluster.master_of_slot(key_slot(format!("f:jti:{j}").as_bytes()), None) == lonely)
        .unwrap();
    let err = store
        .revoke_jti(&unreplicated, now() + 600)
        .await
        .expect_err("confirmed without its replica");
    assert!(err.to_string().contains("not confirmed"), "{err}");
    cluster.nodes[hung_replica].resume();

    // The master of r0 hangs; its replica takes over after the node timeout.
    let slot = key_slot(b"f:jti:r0");
    let healthy: Vec<bool> = jtis
        .iter()
        .map(|j| {
            let s = key_slot(format!("f:jti:{j}").as_bytes());
            cluster.master_of_slot(s, None) != victim_master
        })
        .collect();
    assert!(healthy.iter().any(|h| *h) && healthy.iter().any(|h| !*h));
    cluster.nodes[victim_master].pause();
    let paused = Instant::now();
    let mut promoted: Option<Instant> = None;
    let mut correct_since: Option<Instant> = None;
    let mut lookups = 0u32;
    loop {
        let all = futures_util::future::join_all(jtis.iter().map(|j| store.status(token(j))));
        for ((j, st), healthy) in jtis.iter().zip(all.await).zip(&healthy) {
            lookups += 1;
            assert!(
                !matches!(st, Ok(Status::Active)),
                "revoked {j} reported active during the failover"
            );
            // Slots of the healthy masters never wait on (or fail because of) the hung one.
            assert!(
                !healthy || matches!(st, Ok(Status::Revoked(_))),
                "{j} on a healthy master: {st:?}"
            );
        }
        let ok = matches!(
            store.status(token("r0")).await,
            Ok(Status::Revoked(RevokedBy::Jti))
        ) && store.status(token("never-revoked-0")).await.is_ok();
        if promoted.is_none() && cluster.master_of_slot(slot, Some(victim_master)) != victim_master
        {
            promoted = Some(Instant::now());
            eprintln!("replica promoted {:?} after the hang", paused.elapsed());
        }
        match (ok, promoted) {
            (true, Some(p)) => {
                let since = *correct_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(500) {
                    eprintln!(
                        "correct answers {:?} after the promotion ({lookups} lookups, none \
                         active)",
                        since.saturating_duration_since(p)
                    );
                    assert!(
                        since.saturating_duration_since(p) < Duration::from_secs(2),
                        "failover followed too late"
                    );
                    break;
                }
            }
            _ => correct_since = None,
        }
        assert!(
            paused.elapsed() < Duration::from_secs(20),
            "never followed the failover (promoted: {promoted:?})"
        );
        // Lookups refused by the breaker complete at once: leave the runtime to the others.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Every acknowledged revocation is on the promoted replica.
    for j in &jtis {
        let st = store.status(token(j)).await;
        assert!(
            matches!(st, Ok(Status::Revoked(RevokedBy::Jti))),
            "{j}: {st:?}"
        );
    }
    cluster.nodes[victim_master].resume();
}

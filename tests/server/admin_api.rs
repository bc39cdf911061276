//! The revocation admin API: mTLS with required client certificates, SPIFFE ID allow-list, and
//! cross-replica revocation through a shared Redis.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::redis::RedisServer;
use crate::common::*;
use mesh_authz::server::admin::pb;
use mesh_authz::server::admin::pb::revocation_service_client::RevocationServiceClient;
use mesh_authz_core::token::Algorithm;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const ADMIN_ID: &str = "spiffe://cluster.local/ns/ops/sa/revoker";
const OTHER_ID: &str = "spiffe://cluster.local/ns/shop/sa/frontend";

struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

fn files(pki: &Pki) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki.leaf("spiffe://cluster.local/ns/mesh/sa/mesh-authz");
    let w = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    Files {
        cert: w("server.pem", &cert),
        key: w("server.key", &key),
        ca: w("ca.pem", &pki.ca_pem()),
        _dir: dir,
    }
}

fn config(jwks_uri: &str, f: &Files, revocation: &str, admin: bool) -> String {
    let admin = if admin {
        format!(
            "  admin:\n    addr: 127.0.0.1:0\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n    allowed_spiffe_ids: [\"{ADMIN_ID}\"]\n",
            f.cert.display(),
            f.key.display(),
            f.ca.display()
        )
    } else {
        "  shutdown_grace: 1s\n".to_string()
    };
    format!(
        r#"
server:
{admin}
providers:
  - name: corp
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    jwks: {{ uri: "{jwks_uri}" }}
revocation:
{revocation}
rules:
  - name: api
    match: {{ path_prefix: / }}
    require: {{ token: true }}
default_action: deny
"#
    )
}

async fn admin_client(
    addr: std::net::SocketAddr,
    server_ca: &Pki,
    client: (&str, &str),
) -> Result<RevocationServiceClient<Channel>, tonic::transport::Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca.ca_pem()))
        .identity(Identity::from_pem(client.0, client.1))
        .domain_name("client.test");
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(RevocationServiceClient::new(channel))
}

async fn verdict_of(
    c: &mut envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient<
        Channel,
    >,
    t: &str,
) -> (u16, String) {
    let r = check(c, Req::get("/api").bearer(t)).await;
    (verdict(&r).0, reason(&r))
}

#[tokio::test]
async fn allowed_client_revokes_on_the_memory_store() {
    let pki = Pki::new();
    let f = files(&pki);
    let Env {
        key,
        server,
        client: mut c,
        jwks: _jwks,
    } = Env::start(|uri| config(uri, &f, "  store: memory", true)).await;
    let token = mint(&key, "alice", |o| o.jti = Some("adm-1".into()));
    assert_eq!(verdict_of(&mut c, &token).await.0, 200);

    let (cert, k) = pki.leaf(ADMIN_ID);
    let mut admin = admin_client(server.admin_addr.unwrap(), &pki, (&cert, &k))
        .await
        .unwrap();
    admin
        .revoke_token(pb::RevokeTokenRequest {
            jti: "adm-1".into(),
            expires_at: now() + 600,
        })
        .await
        .unwrap();
    assert_eq!(verdict_of(&mut c, &token).await.0, 401);
    let st = admin
        .get_status(pb::GetStatusRequest {
            jti: "adm-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(st.revoked);
    assert_eq!(st.revoked_by, pb::RevokedBy::Jti as i32);
    let before = admin
        .revoke_subject(pb::RevokeSubjectRequest {
            sub: "bob".into(),
            before: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .before;
    assert!((now() - before).abs() < 5);
    let listed = admin
        .list_recent(pb::ListRecentRequest { limit: 10 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.revocations.len(), 2);
    admin
        .unrevoke(pb::UnrevokeRequest {
            target: Some(pb::unrevoke_request::Target::Jti("adm-1".into())),
        })
        .await
        .unwrap();
    assert_eq!(verdict_of(&mut c, &token).await.0, 200);
    // Input bounds.
    let e = admin
        .revoke_token(pb::RevokeTokenRequest {
            jti: "x".repeat(2000),
            expires_at: now() + 600,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn refused_callers() {
    let pki = Pki::new();
    let f = files(&pki);
    let key = key(Algorithm::RS256, "k1");
    let jwks = JwksServer::start(&key.jwks_json).await;
    let server = start(&config(&jwks.uri(), &f, "  store: memory", true)).await;
    let addr = server.admin_addr.unwrap();
    let req = || pb::RevokeTokenRequest {
        jti: "evil".into(),
        expires_at: now() + 600,
    };

    // A SPIFFE ID that is not allowed: PERMISSION_DENIED.
    let (cert, k) = pki.leaf(OTHER_ID);
    let mut c = admin_client(addr, &pki, (&cert, &k)).await.unwrap();
    let e = c.revoke_token(req()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);

    // A certificate from the right CA without any SPIFFE ID: PERMISSION_DENIED.
    let mut params = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ADMIN_ID);
    let plain_key = rcgen::KeyPair::generate().unwrap();
    let plain = params.signed_by(&plain_key, &pki.ca).unwrap();
    let mut c = admin_client(addr, &pki, (&plain.pem(), &plain_key.serialize_pem()))
        .await
        .unwrap();
    let e = c.revoke_token(req()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);

    // A client certificate from another CA: the TLS handshake refuses it.
    let other = Pki::new();
    let (cert, k) = other.leaf(ADMIN_ID);
    match admin_client(addr, &pki, (&cert, &k)).await {
        Err(_) => {}
        Ok(mut c) => {
            let e = c.revoke_token(req()).await.unwrap_err();
            assert_ne!(e.code(), tonic::Code::Ok);
        }
    }

    // No client certificate at all.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.ca_pem()))
        .domain_name("client.test");
    if let Ok(ch) = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
    {
        let e = RevocationServiceClient::new(ch)
            .revoke_token(req())
            .await
            .unwrap_err();
        assert_ne!(e.code(), tonic::Code::Ok);
    }

    let st = server
        .revocation
        .status(mesh_authz_core::revocation::TokenRef {
            jti: Some("evil"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        st,
        mesh_authz_core::revocation::Status::Active,
        "nothing was written"
    );
}

#[tokio::test]
async fn admin_config_is_validated() {
    let pki = Pki::new();
    let f = files(&pki);
    let yaml = config("http://127.0.0.1:1/jwks.json", &f, "  store: memory", true)
        .replace(ADMIN_ID, "not-a-spiffe-id");
    let cfg = mesh_authz_core::config::from_str_with_env(&yaml, Vec::new());
    let errors = match cfg {
        Err(e) => e.to_string(),
        Ok(c) => mesh_authz_core::config::validate(&c)
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    assert!(
        errors.contains("server.admin.allowed_spiffe_ids[0]"),
        "{errors}"
    );
}

/// Two replicas sharing one Redis: revoke through A's admin API, B denies within 100 ms.
#[tokio::test]
async fn revocation_through_replica_a_is_seen_by_replica_b() {
    let redis = RedisServer::start();
    let pki = Pki::new();
    let f = files(&pki);
    let key = key(Algorithm::RS256, "k1");
    let jwks = JwksServer::start(&key.jwks_json).await;
    let revocation = format!(
        "  store: redis\n  redis:\n    url: \"{}\"\n    cache_ttl: 30s\n",
        redis.url()
    );
    let a = start(&config(&jwks.uri(), &f, &revocation, true)).await;
    let b = start(&config(&jwks.uri(), &f, &revocation, false)).await;
    let mut cb = client(b.grpc_addr).await;
    let (cert, k) = pki.leaf(ADMIN_ID);
    let mut admin = admin_client(a.admin_addr.unwrap(), &pki, (&cert, &k))
        .await
        .unwrap();

    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let jti = format!("x-{i}");
        let token = mint(&key, "alice", |o| o.jti = Some(jti.clone()));
        // Wait for B's subscription, then warm B's cache (cache_ttl is 30 s: only the event can
        // make B see the revocation in time).
        let t0 = Instant::now();
        while !(b.revocation.ready() && verdict_of(&mut cb, &token).await.0 == 200) {
            assert!(t0.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(verdict_of(&mut cb, &token).await.0, 200);

        admin
            .revoke_token(pb::RevokeTokenRequest {
                jti: jti.clone(),
                expires_at: now() + 600,
            })
            .await
            .unwrap();
        let t0 = Instant::now();
        loop {
            let (code, reason) = verdict_of(&mut cb, &token).await;
            if code == 401 {
                assert_eq!(reason, "token_revoked");
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_millis(100),
                "replica B still allows after 100 ms"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        worst = worst.max(t0.elapsed());
    }
    eprintln!("cross-replica revocation: worst {worst:?} over 5 revocations");
    let metrics = b.metrics.render();
    assert!(
        metrics.contains(r#"revocation_invalidations_total{kind="jti"}"#),
        "{metrics}"
    );
}

/// The CLI through the admin API, with `--cert/--key/--ca`.
#[tokio::test]
async fn cli_through_the_admin_api() {
    let pki = Pki::new();
    let f = files(&pki);
    let key = key(Algorithm::RS256, "k1");
    let jwks = JwksServer::start(&key.jwks_json).await;
    let server = start(&config(&jwks.uri(), &f, "  store: memory", true)).await;
    let addr = server.admin_addr.unwrap().to_string();
    let (cert, k) = pki.leaf(ADMIN_ID);
    let dir = tempfile::tempdir().unwrap();
    let (cert_f, key_f) = (dir.path().join("c.pem"), dir.path().join("c.key"));
    std::fs::write(&cert_f, cert).unwrap();
    std::fs::write(&key_f, k).unwrap();
    let bin = env!("CARGO_BIN_EXE_mesh-authz");
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(bin)
            .args(&args)
            .output()
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    let conn = |cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        v.extend(
            [
                "--admin",
                &addr,
                "--cert",
                &cert_f.display().to_string(),
                "--key",
                &key_f.display().to_string(),
                "--ca",
                &f.ca.display().to_string(),
                "--server-name",
                "client.test",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        v
    };
    assert_eq!(run(conn(&["revoke", "--jti", "cli-a"])).await.0, Some(0));
    assert_eq!(
        run(conn(&["status", "--jti", "cli-a"])).await,
        (Some(1), "revoked (by jti)".into())
    );
    assert_eq!(run(conn(&["unrevoke", "--jti", "cli-a"])).await.0, Some(0));
    assert_eq!(
        run(conn(&["status", "--jti", "cli-a"])).await,
        (Some(0), "active".into())
    );
}

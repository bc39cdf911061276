//! `mesh-authz revoke | unrevoke | status`: through a server's admin API (mTLS) or straight to
//! Redis (the same data model and events the servers use).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use mesh_authz::redis_store::RedisStore;
use mesh_authz::server::admin::pb;
use mesh_authz::server::admin::pb::revocation_service_client::RevocationServiceClient;
use mesh_authz::telemetry::Metrics;
use mesh_authz_core::config::RedisConfig;
use mesh_authz_core::revocation::{RevocationStore, RevokedBy, Status, TokenRef};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Where to send the change: an admin API or a Redis.
#[derive(Args, Debug)]
pub(super) struct Target {
    /// Admin API address (`host:port`), reached over TLS with a client certificate.
    #[arg(long, required_unless_present = "redis", conflicts_with = "redis")]
    admin: Option<String>,
    /// Client certificate (PEM) for the admin API.
    #[arg(long, requires = "admin")]
    cert: Option<PathBuf>,
    /// Client key (PEM) for the admin API.
    #[arg(long, requires = "admin")]
    key: Option<PathBuf>,
    /// CA bundle (PEM) that the admin API's server certificate chains to.
    #[arg(long, requires = "admin")]
    ca: Option<PathBuf>,
    /// Name to verify in the admin API's certificate (default: the host of --admin).
    #[arg(long, requires = "admin")]
    server_name: Option<String>,
    /// Redis URL (`redis://` or `rediss://`); repeat for Redis Cluster seed nodes.
    #[arg(long, env = "MESH_AUTHZ_REDIS_URL")]
    redis: Vec<String>,
    /// The servers' `revocation.redis.key_prefix`.
    #[arg(long, default_value = "mesh-authz:")]
    key_prefix: String,
    /// Treat a single --redis URL as a Redis Cluster seed.
    #[arg(long)]
    cluster: bool,
    /// CA bundle (PEM) for `rediss://`.
    #[arg(long)]
    redis_ca: Option<PathBuf>,
    /// With --redis: confirm a write only once this many replicas hold it (`WAIT`).
    #[arg(long, default_value_t = 0)]
    min_replicas: u32,
}

/// `revoke` arguments.
#[derive(Args, Debug)]
pub(super) struct RevokeArgs {
    /// Revoke this token id.
    #[arg(long, required_unless_present = "sub", conflicts_with = "sub")]
    jti: Option<String>,
    /// The token's `exp` (unix seconds); the revocation lasts until then (plus the clock-skew
    /// grace). Default: one year from now, longer than any access token should live; pass the
    /// token's `exp` to let the entry end with it. A time in the past is refused.
    #[arg(long, requires = "jti")]
    exp: Option<i64>,
    /// Revoke every token of this subject issued at or before --before.
    #[arg(long)]
    sub: Option<String>,
    /// Cut-off for --sub: unix seconds or `now` (default).
    #[arg(long, requires = "sub")]
    before: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// `unrevoke` arguments.
#[derive(Args, Debug)]
pub(super) struct UnrevokeArgs {
    /// Lift this token id's revocation.
    #[arg(long, required_unless_present = "sub", conflicts_with = "sub")]
    jti: Option<String>,
    /// Lift this subject's cut-off.
    #[arg(long)]
    sub: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// `status` arguments.
#[derive(Args, Debug)]
pub(super) struct StatusArgs {
    /// The token's `jti`.
    #[arg(long)]
    jti: Option<String>,
    /// The token's `sub`.
    #[arg(long)]
    sub: Option<String>,
    /// The token's `iat` (unix seconds); without it any subject cut-off applies.
    #[arg(long)]
    iat: Option<i64>,
    /// The token's `parent_jti`.
    #[arg(long)]
    parent_jti: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// `confirm-epoch` arguments.
#[derive(Args, Debug)]
pub(super) struct ConfirmEpochArgs {
    #[command(flatten)]
    target: Target,
}

/// `mesh-authz confirm-epoch`: re-add what was lost first (the revocations still needed), then
/// run this so the replicas that failed closed on the lost set serve again.
pub(super) async fn confirm_epoch(args: ConfirmEpochArgs) -> anyhow::Result<ExitCode> {
    if args.target.admin.is_some() {
        bail!("confirm-epoch works on Redis directly: use --redis");
    }
    let Backend::Redis(store) = backend(&args.target).await? else {
        bail!("confirm-epoch needs --redis");
    };
    let id = store.confirm_epoch().await?;
    println!("confirmed revocation set epoch {id}");
    Ok(ExitCode::SUCCESS)
}

enum Backend {
    Admin(RevocationServiceClient<Channel>),
    Redis(Arc<RedisStore>),
}

/// How long a `revoke --jti` without `--exp` lasts: one year.
const DEFAULT_EXP_SECS: i64 = 365 * 24 * 3600;

async fn backend(t: &Target) -> anyhow::Result<Backend> {
    if let Some(addr) = &t.admin {
        let (Some(cert), Some(key), Some(ca)) = (&t.cert, &t.key, &t.ca) else {
            bail!("--admin needs --cert, --key and --ca");
        };
        let host = match &t.server_name {
            Some(n) => n.clone(),
            None => addr
                .rsplit_once(':')
                .map_or(addr.as_str(), |(h, _)| h)
                .trim_matches(['[', ']'])
                .to_string(),
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(
                std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?,
            ))
            .identity(Identity::from_pem(
                std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?,
                std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?,
            ))
            .domain_name(host);
        let channel = Channel::from_shared(format!("https://{addr}"))
            .context("invalid --admin")?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .tls_config(tls)?
            .connect()
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        return Ok(Backend::Admin(RevocationServiceClient::new(channel)));
    }
    if t.redis.is_empty() {
        bail!("one of --admin, --redis is required");
    }
    let cluster = t.cluster || t.redis.len() > 1;
    let cfg = RedisConfig {
        url: (!cluster).then(|| t.redis.first().cloned()).flatten(),
        cluster_nodes: if cluster { t.redis.clone() } else { Vec::new() },
        key_prefix: t.key_prefix.clone(),
        cache_ttl: Duration::from_secs(1),
        cache_capacity: 1,
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        ca_file: t.redis_ca.clone(),
        username_file: None,
        password_file: None,
        min_replicas: t.min_replicas,
        replication_timeout: Duration::from_secs(2),
    };
    let store = RedisStore::connect(&cfg, Metrics::new())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !store.wait_connected(Duration::from_secs(5)).await {
        bail!("cannot reach Redis");
    }
    Ok(Backend::Redis(Arc::new(store)))
}

fn parse_before(before: Option<&str>) -> anyhow::Result<i64> {
    match before {
        None | Some("now") => Ok(mesh_authz_core::clock::unix_now()),
        Some(t) => t
            .parse::<i64>()
            .ok()
            .filter(|t| *t > 0)
            .context("--before must be unix seconds or `now`"),
    }
}

/// `mesh-authz revoke`.
pub(super) async fn revoke(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let backend = backend(&args.target).await?;
    match (&args.jti, &args.sub) {
        (Some(jti), _) => {
            let exp = args.exp.unwrap_or_else(|| {
                mesh_authz_core::clock::unix_now().saturating_add(DEFAULT_EXP_SECS)
            });
            if exp
                < mesh_authz_core::clock::unix_now()
                    .saturating_sub(mesh_authz::redis_store::JTI_GRACE_SECS)
            {
                bail!("--exp is in the past: pass the token's exp (unix seconds)");
            }
            match backend {
                Backend::Admin(mut c) => {
                    c.revoke_token(pb::RevokeTokenRequest {
                        jti: jti.clone(),
                        expires_at: exp,
                    })
                    .await?;
                }
                Backend::Redis(s) => s.revoke_jti(jti, exp).await?,
            }
            println!("revoked jti until {exp}");
        }
        (None, Some(sub)) => {
            let before = parse_before(args.before.as_deref())?;
            match backend {
                Backend::Admin(mut c) => {
                    c.revoke_subject(pb::RevokeSubjectRequest {
                        sub: sub.clone(),
                        before,
                    })
                    .await?;
                }
                Backend::Redis(s) => s.revoke_subject(sub, before).await?,
            }
            println!("revoked subject's tokens issued at or before {before}");
        }
        (None, None) => bail!("one of --jti, --sub is required"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `mesh-authz unrevoke`.
pub(super) async fn unrevoke(args: UnrevokeArgs) -> anyhow::Result<ExitCode> {
    use pb::unrevoke_request::Target as T;
    let backend = backend(&args.target).await?;
    let target = match (&args.jti, &args.sub) {
        (Some(j), _) => T::Jti(j.clone()),
        (None, Some(s)) => T::Sub(s.clone()),
        (None, None) => bail!("one of --jti, --sub is required"),
    };
    match (backend, target) {
        (Backend::Admin(mut c), target) => {
            c.unrevoke(pb::UnrevokeRequest {
                target: Some(target),
            })
            .await?;
        }
        (Backend::Redis(s), T::Jti(j)) => s.unrevoke_jti(&j).await?,
        (Backend::Redis(s), T::Sub(sub)) => s.unrevoke_subject(&sub).await?,
    }
    println!("unrevoked");
    Ok(ExitCode::SUCCESS)
}

/// `mesh-authz status`: exit 0 when active, 1 when revoked.
pub(super) async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if args.jti.is_none() && args.sub.is_none() && args.parent_jti.is_none() {
        bail!("one of --jti, --sub, --parent-jti is required");
    }
    let by = match backend(&args.target).await? {
        Backend::Admin(mut c) => {
            let r = c
                .get_status(pb::GetStatusRequest {
                    jti: args.jti.clone().unwrap_or_default(),
                    sub: args.sub.clone().unwrap_or_default(),
                    iat: args.iat,
                    parent_jti: args.parent_jti.clone().unwrap_or_default(),
                })
                .await?
                .into_inner();
            match pb::RevokedBy::try_from(r.revoked_by) {
                _ if !r.revoked => None,
                Ok(pb::RevokedBy::Jti) => Some("jti"),
                Ok(pb::RevokedBy::Subject) => Some("subject"),
                Ok(pb::RevokedBy::Parent) => Some("parent"),
                _ => Some("unknown"),
            }
        }
        Backend::Redis(s) => {
            let token = TokenRef {
                jti: args.jti.as_deref(),
                sub: args.sub.as_deref(),
                iat: args.iat,
                parent_jti: args.parent_jti.as_deref(),
            };
            match s.status(token).await? {
                Status::Active => None,
                Status::Revoked(RevokedBy::Jti) => Some("jti"),
                Status::Revoked(RevokedBy::Subject) => Some("subject"),
                Status::Revoked(RevokedBy::Parent) => Some("parent"),
            }
        }
    };
    match by {
        None => {
            println!("active");
            Ok(ExitCode::SUCCESS)
        }
        Some(by) => {
            println!("revoked (by {by})");
            Ok(ExitCode::from(1))
        }
    }
}

//! The revocation admin API (`mesh_authz.admin.v1.RevocationService`) on its own listener.
//!
//! Transport: TLS with a client certificate required, chained to `client_ca_file` (rustls'
//! WebPKI client verifier, via tonic). Authorization: the leaf's SPIFFE ID (its single
//! `spiffe://` URI SAN) must be listed in `allowed_spiffe_ids`; otherwise `PERMISSION_DENIED`.
//! Writes go to the configured store, which announces them to every replica.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use mesh_authz_core::config::AdminConfig;
use mesh_authz_core::identity::certificate;
use mesh_authz_core::revocation::{RevocationEntry, RevocationStore, RevokedBy, TokenRef};

/// Code generated from `proto/mesh_authz/admin/v1/revocation.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("mesh_authz.admin.v1");
}

use pb::revocation_service_server::{RevocationService, RevocationServiceServer};

/// Longest `jti` or `sub` accepted, in bytes.
pub const MAX_ID_LEN: usize = 1024;
/// Default and largest `ListRecent` page.
pub const DEFAULT_LIST_LIMIT: u32 = 100;
/// Largest `ListRecent` page.
pub const MAX_LIST_LIMIT: u32 = 1000;
/// How far in the past a `RevokeToken` `expires_at` may lie (the largest clock skew a provider
/// may allow, as [`crate::redis_store::JTI_GRACE_SECS`]); older is refused.
pub const MAX_EXPIRED_SKEW_SECS: i64 = crate::redis_store::JTI_GRACE_SECS;

/// The admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// TLS material could not be loaded.
    #[error("admin TLS setup failed: {0}")]
    Tls(String),
}

/// Binds `cfg.addr` and serves the admin API until `cancel`; returns the bound address.
pub async fn serve(
    cfg: &AdminConfig,
    store: Arc<dyn RevocationStore>,
    cancel: CancellationToken,
) -> Result<SocketAddr, AdminError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| AdminError::Tls(format!("cannot read {}: {e}", p.display())))
    };
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            read(&cfg.cert_file)?,
            read(&cfg.key_file)?,
        ))
        .client_ca_root(Certificate::from_pem(read(&cfg.client_ca_file)?))
        .client_auth_optional(false);
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .map_err(|e| AdminError::Bind(cfg.addr, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| AdminError::Bind(cfg.addr, e))?;
    let allowed: Arc<HashSet<String>> = Arc::new(cfg.allowed_spiffe_ids.iter().cloned().collect());
    let service = RevocationServiceServer::with_interceptor(
        AdminService { store },
        move |req: Request<()>| authorize(&allowed, req),
    );
    let router = Server::builder()
        .tls_config(tls)
        .map_err(|e| AdminError::Tls(e.to_string()))?
        .add_service(service);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, cancel.cancelled())
            .await
        {
            tracing::error!(error = %e, "admin API server failed");
        }
    });
    tracing::info!(%addr, "revocation admin API serving");
    Ok(addr)
}

/// Lets the call through only for a client certificate whose SPIFFE ID is allowed.
fn authorize(allowed: &HashSet<String>, req: Request<()>) -> Result<Request<()>, Status> {
    let denied = || Status::permission_denied("caller not allowed");
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("client certificate required"))?;
    let leaf = certs.first().ok_or_else(denied)?;
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", leaf.to_vec()));
    let Some(id) = certificate::parse_forwarded(&pem)
        .ok()
        .and_then(|c| c.spiffe_id)
    else {
        tracing::warn!("admin API call refused: client certificate has no valid SPIFFE ID");
        return Err(denied());
    };
    if !allowed.contains(id.as_str()) {
        tracing::warn!(spiffe_id = %id.as_str(), "admin API call refused: SPIFFE ID not allowed");
        return Err(denied());
    }
    tracing::info!(spiffe_id = %id.as_str(), "admin API call");
    Ok(req)
}

/// The service implementation over any [`RevocationStore`].
pub struct AdminService {
    store: Arc<dyn RevocationStore>,
}

impl AdminService {
    /// A service writing to `store`.
    pub fn new(store: Arc<dyn RevocationStore>) -> AdminService {
        AdminService { store }
    }
}

fn check_id(field: &str, v: &str) -> Result<(), Status> {
    if v.is_empty() || v.len() > MAX_ID_LEN {
        return Err(Status::invalid_argument(format!(
            "{field} must be 1..={MAX_ID_LEN} bytes"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

fn optional_id<'a>(field: &str, v: &'a str) -> Result<Option<&'a str>, Status> {
    if v.is_empty() {
        return Ok(None);
    }
    check_id(field, v)?;
    Ok(Some(v))
}

fn unavailable(e: mesh_authz_core::revocation::StoreError) -> Status {
    tracing::warn!(error = %e, "admin API: revocation store failed");
    Status::unavailable("revocation store unavailable")
}

#[tonic::async_trait]
impl RevocationService for AdminService {
    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let r = request.into_inner();
        check_id("jti", &r.jti)?;
        if r.expires_at <= 0 {
            return Err(Status::invalid_argument(
                "expires_at must be the token's exp (unix seconds)",
            ));
        }
        // A revocation that ends before the token does would silently lapse while the token is
        // still accepted; past `exp` plus the largest clock skew the token is dead anyway.
        if r.expires_at < mesh_authz_core::clock::unix_now().saturating_sub(MAX_EXPIRED_SKEW_SECS) {
            return Err(Status::invalid_argument(
                "expires_at is in the past: pass the token's exp (unix seconds)",
            ));
        }
        self.store
            .revoke_jti(&r.jti, r.expires_at)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn revoke_subject(
        &self,
        request: Request<pb::RevokeSubjectRequest>,
    ) -> Result<Response<pb::RevokeSubjectResponse>, Status> {
        let r = request.into_inner();
        check_id("sub", &r.sub)?;
        let before = match r.before {
            0 => mesh_authz_core::clock::unix_now(),
            b if b < 0 => return Err(Status::invalid_argument("before must not be negative")),
            b => b,
        };
        self.store
            .revoke_subject(&r.sub, before)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(pb::RevokeSubjectResponse { before }))
    }

    async fn unrevoke(
        &self,
        request: Request<pb::UnrevokeRequest>,
    ) -> Result<Response<pb::UnrevokeResponse>, Status> {
        use pb::unrevoke_request::Target;
        match request.into_inner().target {
            Some(Target::Jti(jti)) => {
                check_id("jti", &jti)?;
                self.store.unrevoke_jti(&jti).await.map_err(unavailable)?;
            }
            Some(Target::Sub(sub)) => {
                check_id("sub", &sub)?;
                self.store
                    .unrevoke_subject(&sub)
                    .await
                    .map_err(unavailable)?;
            }
            None => return Err(Status::invalid_argument("one of jti, sub is required")),
        }
        Ok(Response::new(pb::UnrevokeResponse {}))
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let r = request.into_inner();
        let token = TokenRef {
            jti: optional_id("jti", &r.jti)?,
            sub: optional_id("sub", &r.sub)?,
            iat: r.iat,
            parent_jti: optional_id("parent_jti", &r.parent_jti)?,
        };
        if token.jti.is_none() && token.sub.is_none() && token.parent_jti.is_none() {
            return Err(Status::invalid_argument(
                "one of jti, sub, parent_jti is required",
            ));
        }
        let status = self.store.status(token).await.map_err(unavailable)?;
        let by = match status {
            mesh_authz_core::revocation::Status::Active => None,
            mesh_authz_core::revocation::Status::Revoked(RevokedBy::Jti) => {
                Some(pb::RevokedBy::Jti)
            }
            mesh_authz_core::revocation::Status::Revoked(RevokedBy::Subject) => {
                Some(pb::RevokedBy::Subject)
            }
            mesh_authz_core::revocation::Status::Revoked(RevokedBy::Parent) => {
                Some(pb::RevokedBy::Parent)
            }
        };
        Ok(Response::new(pb::GetStatusResponse {
            revoked: by.is_some(),
            revoked_by: by.unwrap_or(pb::RevokedBy::Unspecified) as i32,
        }))
    }

    async fn list_recent(
        &self,
        request: Request<pb::ListRecentRequest>,
    ) -> Result<Response<pb::ListRecentResponse>, Status> {
        let limit = match request.into_inner().limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        };
        let entries = self
            .store
            .list_recent(limit as usize)
            .await
            .map_err(unavailable)?;
        let revocations = entries
            .into_iter()
            .map(|e| pb::Revocation {
                kind: Some(match e {
                    RevocationEntry::Jti {
                        jti,
                        expires_at,
                        revoked_at,
                    } => pb::revocation::Kind::Jti(pb::JtiRevocation {
                        jti,
                        expires_at,
                        revoked_at,
                    }),
                    RevocationEntry::Subject {
                        sub,
                        before,
                        revoked_at,
                    } => pb::revocation::Kind::Subject(pb::SubjectRevocation {
                        sub,
                        before,
                        revoked_at,
                    }),
                }),
            })
            .collect();
        Ok(Response::new(pb::ListRecentResponse { revocations }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_authz_core::revocation::MemoryStore;

    fn svc() -> AdminService {
        AdminService::new(Arc::new(MemoryStore::default()))
    }

    #[tokio::test]
    async fn input_bounds() {
        let s = svc();
        let long = "x".repeat(MAX_ID_LEN + 1);
        for jti in ["", long.as_str(), "a\nb"] {
            let e = s
                .revoke_token(Request::new(pb::RevokeTokenRequest {
                    jti: jti.into(),
                    expires_at: mesh_authz_core::clock::unix_now() + 600,
                }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
        }
        let e = s
            .revoke_token(Request::new(pb::RevokeTokenRequest {
                jti: "ok".into(),
                expires_at: 0,
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        // An expiry in the past would let the entry lapse while the token is still valid.
        let e = s
            .revoke_token(Request::new(pb::RevokeTokenRequest {
                jti: "ok".into(),
                expires_at: mesh_authz_core::clock::unix_now() - MAX_EXPIRED_SKEW_SECS - 60,
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let e = s
            .get_status(Request::new(pb::GetStatusRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn revoke_status_unrevoke_on_memory() {
        let s = svc();
        let exp = mesh_authz_core::clock::unix_now() + 600;
        s.revoke_token(Request::new(pb::RevokeTokenRequest {
            jti: "t1".into(),
            expires_at: exp,
        }))
        .await
        .unwrap();
        let st = s
            .get_status(Request::new(pb::GetStatusRequest {
                parent_jti: "t1".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(st.revoked);
        assert_eq!(st.revoked_by, pb::RevokedBy::Parent as i32);
        let listed = s
            .list_recent(Request::new(pb::ListRecentRequest { limit: 0 }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.revocations.len(), 1);
        s.unrevoke(Request::new(pb::UnrevokeRequest {
            target: Some(pb::unrevoke_request::Target::Jti("t1".into())),
        }))
        .await
        .unwrap();
        let st = s
            .get_status(Request::new(pb::GetStatusRequest {
                jti: "t1".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(!st.revoked);
    }
}

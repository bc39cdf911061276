//! The HTTP listener: `/healthz` (live), `/readyz` (keys loaded, not draining), `/metrics`, and
//! Envoy's HTTP ext_authz under `/check` (see [`super::http_authz`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::gate::Gate;
use crate::telemetry::Metrics;

/// What the HTTP handlers share.
pub(crate) struct HttpState {
    /// The checks' front door (its current checker's verifier decides readiness).
    pub gate: Arc<Gate>,
    /// Metrics registry.
    pub metrics: Metrics,
    /// The revocation store (its health is part of readiness).
    pub revocation: Arc<dyn mesh_authz_core::revocation::RevocationStore>,
    /// Set when shutdown begins: readiness fails first so load balancers drain us.
    pub draining: AtomicBool,
}

impl HttpState {
    /// Whether the server should receive traffic.
    pub(crate) fn ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
            && self.gate.checker().verifier().ready()
            && self.revocation.ready()
    }
}

/// The router for the HTTP listener.
pub(crate) fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(super::http_authz::routes())
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn readyz(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    if state.ready() {
        (StatusCode::OK, "ready\n".to_string())
    } else if state.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_string())
    } else if !state.revocation.ready() {
        let why = state
            .revocation
            .not_ready_reason()
            .unwrap_or_else(|| "revocation store unreachable".into());
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for verification keys\n".to_string(),
        )
    }
}

async fn metrics(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

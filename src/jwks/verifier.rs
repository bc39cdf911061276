//! Putting the core's verifier together with this crate's JWKS caches: one cache per provider,
//! loaded once, then refreshed in the background.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{JwksCache, JwksError};
use crate::telemetry::Metrics;
use mesh_authz_core::compile::Compiled;
use mesh_authz_core::config::{ConfigError, ConfigErrors, LimitsConfig, ProviderConfig};
use mesh_authz_core::metrics::MetricsSink;
use mesh_authz_core::token::{KeySource, Verifier};

/// The verifier for `compiled` and the JWKS cache of each of its providers (config order). A
/// provider that `reuse` holds a cache for (same name, issuer and `jwks` settings) keeps that
/// cache, and so its keys: a reload loses no good key set. The verified-token cache is always new,
/// since validation rules may have changed. No network I/O (see [`load_all`]).
pub fn build_verifier(
    compiled: &Compiled,
    metrics: &Metrics,
    reuse: &[Arc<JwksCache>],
) -> Result<(Verifier, Vec<Arc<JwksCache>>), ConfigErrors> {
    build_verifier_with_sink(compiled, metrics, reuse, metrics.core_sink())
}

/// [`build_verifier`], with the verifier counting into `sink` rather than `metrics`' Prometheus
/// series (the Envoy module counts into Envoy's stats; the caches still use `metrics`).
pub fn build_verifier_with_sink(
    compiled: &Compiled,
    metrics: &Metrics,
    reuse: &[Arc<JwksCache>],
    sink: Arc<dyn MetricsSink>,
) -> Result<(Verifier, Vec<Arc<JwksCache>>), ConfigErrors> {
    let config = compiled.config();
    let mut caches = Vec::with_capacity(config.providers.len());
    let mut errors = Vec::new();
    for (i, (p, source)) in config
        .providers
        .iter()
        .zip(compiled.jwks_sources())
        .enumerate()
    {
        match reuse.iter().find(|c| c.serves(p)) {
            Some(cache) => caches.push(Arc::clone(cache)),
            None => match JwksCache::new(p, source, metrics.clone()) {
                Ok(cache) => caches.push(Arc::new(cache)),
                Err(e) => errors.push(ConfigError::new(
                    format!("providers[{i}].jwks"),
                    e.to_string(),
                )),
            },
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let verifier = assemble(&config.providers, &config.limits, &caches, sink)
        .map_err(|e| ConfigErrors(vec![ConfigError::new("providers", e.to_string())]))?
        .keep_claims_for(config.rule_claim_paths());
    Ok((verifier, caches))
}

fn assemble(
    providers: &[ProviderConfig],
    limits: &LimitsConfig,
    caches: &[Arc<JwksCache>],
    sink: Arc<dyn MetricsSink>,
) -> Result<Verifier, mesh_authz_core::token::VerifierError> {
    let sources: Vec<Arc<dyn KeySource>> = caches
        .iter()
        .map(|c| Arc::clone(c) as Arc<dyn KeySource>)
        .collect();
    Verifier::new(providers, limits, sources, sink)
}

/// One load of every cache, concurrently (first keys, or a re-read). Failures are logged and
/// counted by each cache; a provider without keys fails closed (not ready).
pub async fn load_all(caches: &[Arc<JwksCache>]) {
    let loads = caches.iter().map(|c| c.refresh_now());
    let _ = futures_util::future::join_all(loads).await;
}

/// A verifier for `providers`, outside a running server (tools and tests), with its caches: each
/// provider's source is checked as the compile step checks it, its keys are loaded once, then
/// refreshed in the background until `cancel`.
pub async fn start_verifier(
    providers: &[ProviderConfig],
    limits: &LimitsConfig,
    metrics: &Metrics,
    cancel: CancellationToken,
) -> Result<(Verifier, Vec<Arc<JwksCache>>), JwksError> {
    let mut caches = Vec::with_capacity(providers.len());
    for p in providers {
        caches.push(Arc::new(JwksCache::from_provider(p, metrics.clone())?));
    }
    load_all(&caches).await;
    for c in &caches {
        c.spawn_refresh(cancel.clone());
    }
    let verifier = assemble(providers, limits, &caches, metrics.core_sink())
        .map_err(|e| JwksError::Config(e.to_string()))?;
    Ok((verifier, caches))
}

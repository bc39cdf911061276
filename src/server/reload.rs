//! Config reload: the new config is compiled and its parts built beside the old, then swapped in
//! atomically; JWKS caches of unchanged providers are kept.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::run::Running;
use crate::jwks::{JwksCache, build_verifier, load_all};
use crate::telemetry::Metrics;
use mesh_authz_core::check::Checker;
use mesh_authz_core::compile::compile;
use mesh_authz_core::config::{Config, ConfigErrors};

/// What a reload needs: the config in force and the running JWKS refresh loops.
pub(super) struct ReloadState {
    pub(super) config: Config,
    /// One refresh loop per JWKS cache in use; a cache dropped by a reload has its loop stopped.
    pub(super) refreshers: Vec<(Arc<JwksCache>, CancellationToken)>,
}

impl Running {
    /// Replaces the rules, providers, identity settings and limits with `config`'s, atomically:
    /// checks that start after the swap use the new config, checks in flight finish with the old.
    ///
    /// A config that does not validate (or whose JWKS sources cannot be set up) is refused with
    /// every error, each logged with its path, and the old config keeps serving. A provider whose
    /// name, issuer and `jwks` settings are unchanged keeps its key cache (no key is lost); a
    /// `file:` JWKS is re-read at once; a new provider's keys are loaded before the swap.
    /// Listener addresses, TLS, the admin API, the revocation store and logging are fixed at
    /// start: a change to them is logged and takes effect only after a restart.
    pub async fn reload(&self, config: Config) -> Result<(), ConfigErrors> {
        let mut state = self.reload.lock().await;
        let result = self.apply(&mut state, &config).await;
        match &result {
            Ok(()) => {
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                warn_restart_only(&state.config, &config);
                state.config = config;
                tracing::info!("config reloaded");
            }
            Err(errors) => refused(&self.metrics, errors),
        }
        result
    }

    async fn apply(&self, state: &mut ReloadState, config: &Config) -> Result<(), ConfigErrors> {
        let compiled = compile(config.clone())?;
        let current: Vec<Arc<JwksCache>> = state
            .refreshers
            .iter()
            .map(|(c, _)| Arc::clone(c))
            .collect();
        let (verifier, caches) = build_verifier(&compiled, &self.metrics, &current)?;
        let verifier = Arc::new(verifier);
        let checker = Arc::new(Checker::new(
            &compiled,
            verifier,
            self.revocation.clone(),
            self.metrics.core_sink(),
        ));
        // New caches load their first key set, and file sources are re-read, before the swap.
        let to_load: Vec<Arc<JwksCache>> = config
            .providers
            .iter()
            .zip(&caches)
            .filter(|(p, cache)| {
                let known = current.iter().any(|c| Arc::ptr_eq(c, cache));
                !known || p.jwks.file.is_some()
            })
            .map(|(_, cache)| Arc::clone(cache))
            .collect();
        load_all(&to_load).await;

        self.gate.replace(checker, &config.limits);
        state.refreshers = track_refreshers(&caches, &state.refreshers, &self.cancel);
        Ok(())
    }
}

/// Logs and counts a refused reload.
pub(super) fn refused(metrics: &Metrics, errors: &ConfigErrors) {
    metrics.config_reloads.with_label_values(&["refused"]).inc();
    for e in &errors.0 {
        tracing::error!(path = %e.path, error = %e.message, "config reload refused");
    }
    tracing::error!(
        errors = errors.0.len(),
        "config reload refused; the previous config keeps serving"
    );
}

/// Warns about changes a reload cannot apply.
pub(super) fn warn_restart_only(old: &Config, new: &Config) {
    for (section, changed) in [
        (
            "server (listener addresses, TLS, admin API, shutdown_grace, worker_threads)",
            old.server != new.server,
        ),
        ("revocation", old.revocation != new.revocation),
        ("logging", old.logging != new.logging),
        ("tracing", old.tracing != new.tracing),
    ] {
        if changed {
            tracing::warn!(
                section,
                "config section changed; it cannot change on reload and takes effect only after a restart"
            );
        }
    }
}

/// Keeps one refresh loop per JWKS cache in use: loops of caches still in use go on, new caches
/// get one, and loops of caches no longer used are stopped.
pub(super) fn track_refreshers(
    caches: &[Arc<JwksCache>],
    current: &[(Arc<JwksCache>, CancellationToken)],
    cancel: &CancellationToken,
) -> Vec<(Arc<JwksCache>, CancellationToken)> {
    let mut next = Vec::new();
    for cache in caches {
        match current.iter().find(|(c, _)| Arc::ptr_eq(c, cache)) {
            Some((c, token)) => next.push((Arc::clone(c), token.clone())),
            None => {
                let token = cancel.child_token();
                cache.spawn_refresh(token.clone());
                next.push((Arc::clone(cache), token));
            }
        }
    }
    for (cache, token) in current {
        if !next.iter().any(|(c, _)| Arc::ptr_eq(c, cache)) {
            token.cancel();
        }
    }
    next
}

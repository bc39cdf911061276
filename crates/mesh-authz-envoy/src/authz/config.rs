//! One `mesh-authz` filter config: the YAML of `serve --config` (read without environment
//! overrides), compiled by the same step; its JWKS caches (loaded on the module's runtime, then
//! refreshed there), its revocation store (memory, or Redis on the runtime), its stats, and the
//! one [`Checker`] every worker shares (so the verified-token cache is shared too). Dropping the
//! config (Envoy's config destroy) stops its refresh loops and, with the last in-flight check, its
//! Redis tasks.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mesh_authz::jwks::{JwksCache, build_verifier_with_sink, load_all};
use mesh_authz::redis_store::RedisStore;
use mesh_authz::telemetry::Metrics;
use mesh_authz_core::check::Checker;
use mesh_authz_core::compile::{Compiled, compile};
use mesh_authz_core::config::Config;
use mesh_authz_core::metrics::MetricsSink;
use mesh_authz_core::revocation::{MemoryStore, RevocationStore};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use super::filter::AuthzFilter;
use super::route::RouteSpec;
use super::stats::{FLUSH_INTERVAL, Stats};
use crate::filter::{Filter, FilterConfig};
use crate::host::{ConfigContext, ConfigScheduler, MainThread};

/// How long the config hook (Envoy's main thread) waits for the first key sets. Past it the
/// refresh loops keep trying in the background and checks fail closed until keys arrive.
const FIRST_LOAD_WAIT: Duration = Duration::from_secs(2);

/// Each per-route rule set seen, with its checker (or why it could not be built).
type RouteCheckers = Vec<(Arc<RouteSpec>, Result<Arc<Checker>, String>)>;

/// One filter config, shared by every worker's streams.
pub(crate) struct AuthzConfig {
    pub(crate) checker: Arc<Checker>,
    pub(crate) stats: Stats,
    pub(crate) check_timeout: Duration,
    pub(crate) runtime: &'static Runtime,
    /// The config as loaded, for per-route rule sets.
    config: Config,
    caches: Vec<Arc<JwksCache>>,
    store: Arc<dyn RevocationStore>,
    /// The server's Prometheus metrics the JWKS caches and the Redis store count into (not
    /// exported by the module; the core's counts go to Envoy's stats).
    internal: Metrics,
    cancel: CancellationToken,
    /// Checkers of per-route rule sets, built on a route's first request.
    routes: Mutex<RouteCheckers>,
}

impl Drop for AuthzConfig {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What a stream's route asks for.
pub(crate) enum RouteChoice {
    /// `disabled: true`: no check.
    Disabled,
    /// Check with this checker.
    Check(Arc<Checker>),
    /// The route's rule set does not compile against this filter's config: fail closed.
    Broken,
}

impl AuthzConfig {
    /// The checker for a stream on a route with `spec` (none: the filter's).
    pub(crate) fn choose(&self, spec: Option<&Arc<RouteSpec>>) -> RouteChoice {
        let Some(spec) = spec else {
            return RouteChoice::Check(Arc::clone(&self.checker));
        };
        if spec.disabled {
            return RouteChoice::Disabled;
        }
        let Some((rules, action)) = &spec.rules else {
            return RouteChoice::Check(Arc::clone(&self.checker));
        };
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, built)) = routes.iter().find(|(s, _)| Arc::ptr_eq(s, spec)) {
            return match built {
                Ok(c) => RouteChoice::Check(Arc::clone(c)),
                Err(_) => RouteChoice::Broken,
            };
        }
        // Routes Envoy no longer holds (only this list does) are forgotten.
        routes.retain(|(s, _)| Arc::strong_count(s) > 1);
        let mut config = self.config.clone();
        config.rules = rules.clone();
        if let Some(a) = action {
            config.default_action = *a;
        }
        let built = compile(config)
            .map_err(|e| e.to_string())
            .and_then(|compiled| self.route_checker(&compiled));
        if let Err(e) = &built {
            tracing::error!(error = %e, "per-route rules refused: requests on the route fail closed");
        }
        let choice = match &built {
            Ok(c) => RouteChoice::Check(Arc::clone(c)),
            Err(_) => RouteChoice::Broken,
        };
        routes.push((Arc::clone(spec), built));
        choice
    }

    /// A checker for a route's rule set: this config's key caches and revocation store; its own
    /// verified-token cache (the claims it keeps depend on the rules).
    fn route_checker(&self, compiled: &Compiled) -> Result<Arc<Checker>, String> {
        let sink: Arc<dyn MetricsSink> = Arc::new(self.stats.sink());
        let (verifier, _) =
            build_verifier_with_sink(compiled, &self.internal, &self.caches, Arc::clone(&sink))
                .map_err(|e| e.to_string())?;
        Ok(Arc::new(Checker::new(
            compiled,
            Arc::new(verifier),
            Arc::clone(&self.store),
            sink,
        )))
    }
}

/// What Envoy holds for the filter config.
struct Handle(Arc<AuthzConfig>);

/// The config scheduler's event: flush the stats counted since the last one.
const FLUSH_STATS: u64 = 1;

impl FilterConfig for Handle {
    fn new_filter(&self) -> Box<dyn Filter> {
        Box::new(AuthzFilter::new(Arc::clone(&self.0)))
    }

    fn on_scheduled(&self, main: &mut MainThread<'_>, event_id: u64) {
        if event_id == FLUSH_STATS {
            self.0.stats.flush(main);
        }
    }
}

/// Asks the main thread to flush the stats every [`FLUSH_INTERVAL`] until `cancel`.
async fn flush_stats_every_interval(scheduler: ConfigScheduler, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {
                // A no-op (false) once Envoy destroyed the config.
                if !scheduler.commit(FLUSH_STATS) {
                    return;
                }
            }
        }
    }
}

/// Builds the filter config from `filter_config`'s text, or refuses it with the config's
/// path-qualified errors (Envoy logs them; `envoy --mode validate` fails).
pub(crate) fn new_config(
    bytes: &[u8],
    ctx: &mut ConfigContext<'_>,
) -> Result<Arc<dyn FilterConfig>, String> {
    super::logging::init();
    let text = std::str::from_utf8(bytes).map_err(|_| "config is not UTF-8".to_string())?;
    let loaded = mesh_authz_core::config::from_str_with_env(text, Vec::new())
        .map_err(|e| format!("invalid mesh-authz config:\n{e}"))?;
    let compiled = compile(loaded).map_err(|e| format!("invalid mesh-authz config:\n{e}"))?;
    let runtime = super::runtime::runtime()?;
    let stats = Stats::define(ctx).map_err(|e| format!("cannot define stats: {e}"))?;
    let scheduler = ctx
        .scheduler()
        .ok_or_else(|| "Envoy gave no config scheduler (stats could not be flushed)".to_string())?;
    let internal = Metrics::new();
    let sink: Arc<dyn MetricsSink> = Arc::new(stats.sink());
    let (verifier, caches) = build_verifier_with_sink(&compiled, &internal, &[], Arc::clone(&sink))
        .map_err(|e| format!("invalid mesh-authz config:\n{e}"))?;
    let config = compiled.config();
    let store: Arc<dyn RevocationStore> =
        match (&config.revocation.redis, compiled.redis_endpoints()) {
            // Connecting does not wait for Redis: it starts the store's tasks on the runtime.
            (Some(redis), Some(_)) => Arc::new(
                runtime
                    .block_on(RedisStore::connect(redis, internal.clone()))
                    .map_err(|e| format!("revocation.redis: {e}"))?,
            ),
            _ => Arc::new(MemoryStore::default()),
        };
    let checker = Arc::new(Checker::new(
        &compiled,
        Arc::new(verifier),
        Arc::clone(&store),
        sink,
    ));
    let cancel = CancellationToken::new();
    runtime.block_on(async {
        if tokio::time::timeout(FIRST_LOAD_WAIT, load_all(&caches))
            .await
            .is_err()
        {
            tracing::warn!("first JWKS load still running; checks fail closed until keys arrive");
        }
        for cache in &caches {
            cache.spawn_refresh(cancel.clone());
        }
    });
    runtime.spawn(flush_stats_every_interval(scheduler, cancel.clone()));
    tracing::info!(
        providers = config.providers.len(),
        rules = config.rules.len(),
        store = store.kind(),
        "filter config loaded"
    );
    Ok(Arc::new(Handle(Arc::new(AuthzConfig {
        checker,
        stats,
        check_timeout: config.limits.check_timeout,
        runtime,
        config: config.clone(),
        caches,
        store,
        internal,
        cancel,
        routes: Mutex::new(Vec::new()),
    }))))
}

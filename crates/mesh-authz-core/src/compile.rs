//! The one compile step: a loaded [`Config`] becomes a [`Compiled`] config, checked as a whole
//! (syntax, rules, sources) with every problem path-qualified. `serve`, reload, `check-config`
//! and the Envoy module all go through here, so a component can never fail on a config that has
//! passed, nor accept one that `check-config` refused.

use std::sync::Arc;

use crate::config::{
    Config, ConfigError, ConfigErrors, JwksSource, RedisEndpoints, StoreKind, validate,
};
use crate::policy::Policy;

/// A config that passed every check, with the parts that are built from it.
#[derive(Debug)]
pub struct Compiled {
    config: Config,
    policy: Arc<Policy>,
    jwks: Vec<JwksSource>,
    redis: Option<RedisEndpoints>,
}

impl Compiled {
    /// The config as loaded.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The config as loaded, taken out.
    pub fn into_config(self) -> Config {
        self.config
    }

    /// The compiled rules.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Each provider's key source, in `providers` order.
    pub fn jwks_sources(&self) -> &[JwksSource] {
        &self.jwks
    }

    /// The Redis endpoints, with `revocation.store: redis`.
    pub fn redis_endpoints(&self) -> Option<&RedisEndpoints> {
        self.redis.as_ref()
    }
}

/// Reads config text with environment overrides (`env`, usually the process environment) and
/// compiles it.
pub fn from_str_with_env<I>(text: &str, env: I) -> Result<Compiled, ConfigErrors>
where
    I: IntoIterator<Item = (String, String)>,
{
    compile(crate::config::from_str_with_env(text, env)?)
}

/// Reads the config file at `path` with the process environment's overrides and compiles it.
pub fn load(path: &std::path::Path) -> Result<Compiled, ConfigErrors> {
    compile(crate::config::load(path)?)
}

/// Checks `config` as a whole and builds its compiled parts; every problem is reported, each
/// with its config path, in document order.
pub fn compile(config: Config) -> Result<Compiled, ConfigErrors> {
    let mut errors = validate(&config);
    let policy = match Policy::new(&config.rules, config.default_action) {
        Ok(p) => Some(p),
        Err(problems) => {
            errors.extend(
                problems
                    .into_iter()
                    .map(|e| ConfigError::new(e.path, e.message)),
            );
            None
        }
    };
    let jwks: Vec<Option<JwksSource>> = config
        .providers
        .iter()
        .map(|p| p.jwks.source(&p.issuer).ok())
        .collect();
    let redis = match (&config.revocation.store, &config.revocation.redis) {
        (StoreKind::Redis, Some(r)) => r.endpoints().ok(),
        _ => None,
    };
    let store_needs_redis = config.revocation.store == StoreKind::Redis;
    match (
        policy,
        jwks.into_iter().collect::<Option<Vec<_>>>(),
        errors.is_empty(),
    ) {
        (Some(policy), Some(jwks), true) if redis.is_some() || !store_needs_redis => Ok(Compiled {
            policy: Arc::new(policy),
            jwks,
            redis,
            config,
        }),
        // `validate` reports every source problem; this is for a rule it missed.
        _ if errors.is_empty() => Err(ConfigErrors(vec![ConfigError::new(
            "",
            "config could not be compiled".to_string(),
        )])),
        _ => Err(ConfigErrors(errors)),
    }
}

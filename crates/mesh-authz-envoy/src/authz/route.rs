//! Per-route config (`DynamicModuleFilterPerRoute` with `filter_name: mesh-authz`), a
//! `StringValue` holding YAML of one of these shapes:
//!
//! ```yaml
//! disabled: true                 # no check on this route
//! ```
//!
//! ```yaml
//! rules: [...]                   # this route's rule set, instead of the filter's `rules`
//! default_action: deny           # optional; the filter's when absent
//! context_extensions: {k: v}     # optional; what ext_authz's check_settings would send
//! ```
//!
//! The rules have the filter config's schema and are checked here (syntax, rule compilation, with
//! path-qualified errors); provider names and the rest are checked against the filter's config
//! when a request first uses the route (see [`super::config::AuthzConfig`]).

use std::collections::HashMap;
use std::sync::Arc;

use mesh_authz_core::config::{Action, RuleConfig};
use mesh_authz_core::policy::Policy;
use serde::Deserialize;

use crate::filter::RouteConfig;

/// A route's mesh-authz settings.
#[derive(Debug)]
pub(crate) struct RouteSpec {
    /// Skip the check on this route.
    pub(crate) disabled: bool,
    /// The route's rule set and default action (`None`: the filter's).
    pub(crate) rules: Option<(Vec<RuleConfig>, Option<Action>)>,
    /// `Request::context_extensions` for this route.
    pub(crate) context_extensions: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteYaml {
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    context_extensions: HashMap<String, String>,
    #[serde(default)]
    rules: Option<serde_json::Value>,
    #[serde(default)]
    default_action: Option<serde_json::Value>,
}

/// Parses a per-route config, or refuses it with the reasons.
pub(crate) fn new_route_config(config: &[u8]) -> Result<RouteConfig, String> {
    parse(config).map(|spec| Arc::new(spec) as RouteConfig)
}

fn parse(config: &[u8]) -> Result<RouteSpec, String> {
    let text = std::str::from_utf8(config).map_err(|_| "config is not UTF-8".to_string())?;
    let raw: RouteYaml =
        serde_saphyr::from_str(text).map_err(|e| format!("invalid per-route config: {e}"))?;
    if raw.disabled && (raw.rules.is_some() || raw.default_action.is_some()) {
        return Err("`disabled: true` takes no `rules` or `default_action`".into());
    }
    let rules = match (raw.rules, raw.default_action) {
        (None, None) => None,
        (rules, action) => {
            // The same loader as the filter config (and `serve --config`): a document that holds
            // only `rules` and `default_action`, with the same path-qualified errors.
            let mut doc = serde_json::Map::new();
            doc.insert(
                "rules".into(),
                rules.unwrap_or(serde_json::Value::Array(Vec::new())),
            );
            if let Some(a) = &action {
                doc.insert("default_action".into(), a.clone());
            }
            let loaded = mesh_authz_core::config::from_str_with_env(
                &serde_json::Value::Object(doc).to_string(),
                Vec::new(),
            )
            .map_err(|e| format!("invalid per-route rules:\n{e}"))?;
            if let Err(problems) = Policy::new(&loaded.rules, loaded.default_action) {
                let text: Vec<String> = problems
                    .into_iter()
                    .map(|p| format!("{}: {}", p.path, p.message))
                    .collect();
                return Err(format!("invalid per-route rules:\n{}", text.join("\n")));
            }
            Some((loaded.rules, action.map(|_| loaded.default_action)))
        }
    };
    Ok(RouteSpec {
        disabled: raw.disabled,
        rules,
        context_extensions: raw.context_extensions,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::parse;

    #[test]
    fn shapes() {
        let d = parse(b"disabled: true").unwrap_or_else(|e| panic!("{e}"));
        assert!(d.disabled && d.rules.is_none());
        let r = parse(
            b"rules:\n  - name: open\n    match: { path_prefix: /open }\n    require: { token: false }\ndefault_action: allow\ncontext_extensions: { route: public }\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (rules, action) = r.rules.unwrap_or_else(|| panic!("no rules"));
        assert_eq!(rules.len(), 1);
        assert!(action.is_some());
        assert_eq!(r.context_extensions["route"], "public");
        assert!(
            parse(b"")
                .map(|s| !s.disabled && s.rules.is_none())
                .unwrap_or(false)
        );
    }

    #[test]
    fn refusals_say_why() {
        for (bad, want) in [
            (&b"disabled: true\nrules: []"[..], "takes no"),
            (b"unknown: 1", "unknown"),
            (b"rules:\n  - name: x\n    nope: 1\n", "rules[0]"),
        ] {
            let e = parse(bad).err().unwrap_or_default();
            assert!(e.contains(want), "{e}");
        }
    }
}

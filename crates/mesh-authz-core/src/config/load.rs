//! Reading a config: YAML (or JSON) text → JSON tree → environment overrides → typed [`Config`],
//! with every error tagged by its path.

use std::path::Path;

use serde_json::{Map, Value};

use super::{Config, ConfigError, ConfigErrors};

/// Environment variables starting with this override config keys.
pub const ENV_PREFIX: &str = "MESH_AUTHZ_";

/// Top-level keys an environment override may address; other `MESH_AUTHZ_*` variables (such as
/// `MESH_AUTHZ_CONFIG`) belong to the command line and are left alone.
const TOP_LEVEL_KEYS: &[&str] = &[
    "server",
    "providers",
    "identity",
    "revocation",
    "rules",
    "default_action",
    "limits",
    "logging",
];

/// Parses config text, applies overrides from `env` and deserializes: the reading step only.
/// Whether the config is usable is the compile step's to say (`compile::compile`).
pub fn from_str_with_env<I>(text: &str, env: I) -> Result<Config, ConfigErrors>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut tree = parse_tree(text)?;
    apply_env(&mut tree, env)?;
    to_typed(tree)
}

/// Reads `path` and applies the process environment (the reading step only; see
/// [`from_str_with_env`]).
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            "",
            format!("cannot read {}: {e}", path.display()),
        )])
    })?;
    from_str_with_env(&text, std::env::vars())
}

fn parse_tree(text: &str) -> Result<Value, ConfigErrors> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let tree: Value = serde_saphyr::from_str(text)
        .map_err(|e| ConfigErrors(vec![ConfigError::new("", format!("not valid YAML: {e}"))]))?;
    match tree {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(_) => Ok(tree),
        _ => Err(ConfigErrors(vec![ConfigError::new(
            "",
            "the config must be a mapping".to_string(),
        )])),
    }
}

/// `MESH_AUTHZ_REVOCATION__REDIS__URL=…` sets `revocation.redis.url`; a numeric segment indexes a
/// list (`MESH_AUTHZ_PROVIDERS__0__ISSUER`). Values are read as YAML, so `[a, b]`, `true` and `30`
/// have their natural types.
fn apply_env<I>(tree: &mut Value, env: I) -> Result<(), ConfigErrors>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    let mut errors = Vec::new();
    for (name, raw) in vars {
        let rest = name[ENV_PREFIX.len()..].to_ascii_lowercase();
        let segments: Vec<&str> = rest.split("__").collect();
        if !TOP_LEVEL_KEYS.contains(&segments[0]) {
            continue;
        }
        let value = parse_env_value(&raw);
        if let Err(message) = set_path(tree, &segments, value) {
            errors.push(ConfigError::new(
                segments.join("."),
                format!("{name}: {message}"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

fn parse_env_value(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::String(raw.to_string());
    }
    match serde_saphyr::from_str::<Value>(raw) {
        Ok(Value::Null) | Err(_) => Value::String(raw.to_string()),
        Ok(v) => v,
    }
}

fn set_path(node: &mut Value, segments: &[&str], value: Value) -> Result<(), String> {
    let Some((head, tail)) = segments.split_first() else {
        *node = value;
        return Ok(());
    };
    if head.is_empty() {
        return Err("empty path segment".into());
    }
    if node.is_null() {
        *node = if head.parse::<usize>().is_ok() {
            Value::Array(Vec::new())
        } else {
            Value::Object(Map::new())
        };
    }
    match node {
        Value::Object(map) => {
            let child = map.entry(head.to_string()).or_insert(Value::Null);
            set_path(child, tail, value)
        }
        Value::Array(items) => {
            let index: usize = head
                .parse()
                .map_err(|_| format!("{head:?} is not a list index"))?;
            if index > items.len() {
                return Err(format!(
                    "index {index} is past the end of a list of {}",
                    items.len()
                ));
            }
            if index == items.len() {
                items.push(Value::Null);
            }
            set_path(&mut items[index], tail, value)
        }
        _ => Err(format!("cannot set {head:?} inside a scalar")),
    }
}

fn to_typed(tree: Value) -> Result<Config, ConfigErrors> {
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = display_path(&e.path().to_string());
        ConfigErrors(vec![ConfigError::new(path, e.into_inner().to_string())])
    })
}

/// serde_path_to_error prints `providers[0].jwks`; its root is `.`.
fn display_path(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_text_is_the_default_config() {
        let c = from_str_with_env("", env(&[])).unwrap();
        assert_eq!(c.server.grpc_addr.port(), 9001);
        assert!(c.providers.is_empty());
    }

    #[test]
    fn env_overrides_nested_keys_and_list_items() {
        let text = "providers:\n  - name: a\n    issuer: https://a\n    audiences: [api]\n    jwks: { file: Cargo.toml }\n";
        let c = from_str_with_env(
            text,
            env(&[
                ("MESH_AUTHZ_PROVIDERS__0__ISSUER", "https://b"),
                ("MESH_AUTHZ_SERVER__GRPC_ADDR", "127.0.0.1:7000"),
                ("MESH_AUTHZ_IDENTITY__TRUST_DOMAINS", "[a.org, b.org]"),
                ("MESH_AUTHZ_DEFAULT_ACTION", "deny"),
                ("MESH_AUTHZ_CONFIG", "/ignored/because/not/a/config/key"),
            ]),
        )
        .unwrap();
        assert_eq!(c.providers[0].issuer, "https://b");
        assert_eq!(c.server.grpc_addr.port(), 7000);
        assert_eq!(c.identity.trust_domains, vec!["a.org", "b.org"]);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let err = from_str_with_env("identity:\n  trust_xfc: true\n", env(&[])).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("identity"), "{text}");
        assert!(text.contains("trust_xfc"), "{text}");
    }

    #[test]
    fn type_errors_name_the_list_index() {
        let text = "providers:\n  - name: a\n    issuer: https://a\n    jwks: { file: /x }\n    clock_skew: soon\n";
        let text = from_str_with_env(text, env(&[])).unwrap_err().to_string();
        assert!(text.contains("providers[0].clock_skew"), "{text}");
    }

    #[test]
    fn refused_algorithms_are_config_errors() {
        let text = "providers:\n  - name: a\n    issuer: https://a\n    jwks: { file: /x }\n    algorithms: [RS256, HS256]\n";
        let text = from_str_with_env(text, env(&[])).unwrap_err().to_string();
        assert!(text.contains("providers[0].algorithms[1]"), "{text}");
    }

    #[test]
    fn env_index_past_the_end_is_an_error() {
        let err =
            from_str_with_env("", env(&[("MESH_AUTHZ_PROVIDERS__3__NAME", "x")])).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
    }

    #[test]
    fn json_is_accepted() {
        let c = from_str_with_env(r#"{"default_action": "allow"}"#, env(&[])).unwrap();
        assert_eq!(c.default_action, super::super::Action::Allow);
    }

    #[test]
    fn non_mapping_is_refused() {
        assert!(from_str_with_env("- a\n- b\n", env(&[])).is_err());
    }
}

//! `serve --dev`: a self-contained configuration with an ephemeral issuer, no files, no Redis.

use std::path::Path;
use std::time::Duration;

use crate::tools::issuer::{self, GeneratedKey, IssuerError, MintOptions};
use mesh_authz_core::compile::{self, Compiled};
use mesh_authz_core::token::Algorithm;

/// The dev issuer's `iss`.
pub const DEV_ISSUER: &str = "https://dev.mesh-authz.local";
/// The dev audience.
pub const DEV_AUDIENCE: &str = "mesh-authz-dev";
/// The dev key id.
pub const DEV_KID: &str = "dev-1";

/// A dev setup: the config to serve and a key to mint tokens with.
pub struct DevSetup {
    /// The config, compiled (`jwks.file` points into the setup's directory).
    pub config: Compiled,
    /// The ephemeral signing key (never written outside the temp dir).
    pub key: GeneratedKey,
}

/// Generates a key, writes its JWKS into `dir`, and builds the dev config listening on
/// `grpc_addr` / `http_addr`.
pub fn setup(dir: &Path, grpc_addr: &str, http_addr: &str) -> anyhow::Result<DevSetup> {
    let key = issuer::generate_key(Algorithm::RS256, 2048, DEV_KID)?;
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, &key.jwks_json)?;
    let yaml = format!(
        r#"
server:
  grpc_addr: "{grpc_addr}"
  http_addr: "{http_addr}"
  shutdown_grace: 5s
  allow_metadata: true
providers:
  - name: dev
    issuer: {DEV_ISSUER}
    audiences: [{DEV_AUDIENCE}]
    jwks:
      file: {jwks}
    algorithms: [RS256]
    claims_to_headers: {{ sub: x-auth-subject, scope: x-auth-scope }}
    claims_to_metadata: true
rules:
  - name: public-health
    match: {{ path_prefix: /healthz }}
    allow_anonymous: true
  - name: admin
    match: {{ path_prefix: /admin }}
    require: {{ scopes: [admin] }}
  - name: api
    match: {{ path_prefix: / }}
    require: {{ token: true }}
default_action: deny
logging:
  format: text
"#,
        jwks = serde_json::to_string(&jwks.display().to_string())?,
    );
    let config = compile::from_str_with_env(&yaml, Vec::new())
        .map_err(|e| anyhow::anyhow!("dev config is invalid:\n{e}"))?;
    Ok(DevSetup { config, key })
}

/// Mints a dev token for `sub` with `scope`, valid for `ttl`.
pub fn token(
    key: &GeneratedKey,
    sub: &str,
    scope: &str,
    ttl: Duration,
    now: i64,
) -> Result<String, IssuerError> {
    issuer::mint(
        &key.private_pem,
        &MintOptions {
            iss: DEV_ISSUER.into(),
            sub: sub.into(),
            aud: vec![DEV_AUDIENCE.into()],
            ttl,
            now,
            kid: Some(key.kid.clone()),
            scope: Some(scope.into()),
            ..Default::default()
        },
    )
}

//! `mesh-authz keygen` and `mesh-authz mint`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use mesh_authz::tools::issuer::{self, MintOptions};
use mesh_authz_core::token::Algorithm;
use serde_json::{Map, Value};

/// `keygen` arguments.
#[derive(Args, Debug)]
pub(super) struct KeygenArgs {
    /// RS256 (default), RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA.
    #[arg(long, default_value = "RS256")]
    alg: Algorithm,
    /// RSA modulus size: 2048, 3072 or 4096.
    #[arg(long, default_value_t = 4096)]
    bits: usize,
    /// Key id.
    #[arg(long)]
    kid: String,
    /// Output directory: writes `<kid>.pem` (mode 0600) and `jwks.json`.
    #[arg(long)]
    out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

/// `mint` arguments.
#[derive(Args, Debug)]
pub(super) struct MintArgs {
    /// Private key PEM (PKCS#8, as `keygen` writes).
    #[arg(long)]
    key: PathBuf,
    /// Key id for the header.
    #[arg(long)]
    kid: Option<String>,
    /// Algorithm; default inferred from the key.
    #[arg(long)]
    alg: Option<Algorithm>,
    /// `iss`.
    #[arg(long)]
    iss: String,
    /// `aud` (repeatable).
    #[arg(long)]
    aud: Vec<String>,
    /// `sub`.
    #[arg(long)]
    sub: String,
    /// Lifetime, e.g. 15m.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    ttl: std::time::Duration,
    /// `scope` (space-separated).
    #[arg(long)]
    scope: Option<String>,
    /// `jti`; random if absent.
    #[arg(long)]
    jti: Option<String>,
    /// `parent_jti`.
    #[arg(long)]
    parent_jti: Option<String>,
    /// Bind the token to this client certificate (PEM): adds `cnf.x5t#S256` (RFC 8705).
    #[arg(long)]
    bind_cert: Option<PathBuf>,
    /// Extra claim `name=value`; the value is read as JSON when it parses, else as a string.
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    claims: Vec<String>,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    mesh_authz_core::config::duration::parse(s)
}

pub(super) fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let key = issuer::generate_key(args.alg, args.bits, &args.kid)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let pem_path = args.out.join(format!("{}.pem", args.kid));
    let jwks_path = args.out.join("jwks.json");
    for p in [&pem_path, &jwks_path] {
        if p.exists() && !args.force {
            anyhow::bail!("{} exists (use --force to overwrite)", p.display());
        }
    }
    write_private(&pem_path, key.private_pem.as_bytes())?;
    std::fs::write(&jwks_path, format!("{}\n", key.jwks_json))
        .with_context(|| format!("writing {}", jwks_path.display()))?;
    eprintln!(
        "wrote {} (private, keep secret) and {} ({} key, kid {})",
        pem_path.display(),
        jwks_path.display(),
        key.alg,
        key.kid
    );
    Ok(ExitCode::SUCCESS)
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

pub(super) fn mint(args: MintArgs) -> anyhow::Result<ExitCode> {
    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let cnf = match &args.bind_cert {
        Some(p) => {
            let cert =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let digest = mesh_authz_core::identity::certificate::sha256_of_pem(&cert)
                .with_context(|| format!("{}", p.display()))?;
            Some(mesh_authz_core::identity::certificate::thumbprint_b64url(
                &digest,
            ))
        }
        None => None,
    };
    let mut extra = Map::new();
    for c in &args.claims {
        let (name, value) = c
            .split_once('=')
            .with_context(|| format!("--claim {c:?}: expected NAME=VALUE"))?;
        let value =
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        extra.insert(name.to_string(), value);
    }
    let token = issuer::mint(
        &pem,
        &MintOptions {
            iss: args.iss,
            sub: args.sub,
            aud: args.aud,
            ttl: args.ttl,
            now: mesh_authz_core::clock::unix_now(),
            kid: args.kid,
            alg: args.alg,
            scope: args.scope,
            jti: args.jti,
            parent_jti: args.parent_jti,
            cnf_x5t_s256: cnf,
            extra,
        },
    )?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

//! Argument parsing and the subcommands.

mod check;
mod issue;
mod revoke;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// External authorization for Envoy and Istio: mTLS identity + JWT + revocation.
#[derive(Parser, Debug)]
#[command(name = "mesh-authz", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve ext_authz (gRPC) and health/metrics (HTTP).
    Serve(serve::ServeArgs),
    /// Validate a config file: print the effective config, or every error with its path.
    CheckConfig {
        /// The config file (YAML or JSON).
        #[arg(long, env = "MESH_AUTHZ_CONFIG")]
        config: PathBuf,
    },
    /// Send one CheckRequest to a running server and print the decision.
    Check(check::CheckArgs),
    /// Generate a signing key: private PEM and jwks.json.
    Keygen(issue::KeygenArgs),
    /// Mint a signed token (for tests and demos).
    Mint(issue::MintArgs),
    /// Revoke a token (--jti) or a subject's tokens (--sub), via --admin or --redis.
    Revoke(revoke::RevokeArgs),
    /// Lift a revocation, via --admin or --redis.
    Unrevoke(revoke::UnrevokeArgs),
    /// Tell whether a token is revoked (exit 0 active, 1 revoked), via --admin or --redis.
    Status(revoke::StatusArgs),
    /// After Redis lost its revocations (emptied, replaced), accept its current contents:
    /// writes a new epoch marker so replicas that failed closed serve again. Via --redis.
    ConfirmEpoch(revoke::ConfirmEpochArgs),
}

/// Threads of the runtime the subcommands other than `serve` run on: they send a request or two.
const TOOL_WORKER_THREADS: usize = 1;

/// Runs the parsed command on its runtime; the exit code says allow (0), deny (1) or error (2)
/// where that applies. `serve` sizes its runtime from the config ([`serve::main`]).
pub(crate) fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::main(args),
        command => runtime(TOOL_WORKER_THREADS).and_then(|rt| rt.block_on(run(command))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A multi-threaded runtime with `workers` worker threads, everything enabled.
pub(crate) fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

/// Runs a subcommand other than `serve`.
async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(_) => unreachable_serve(),
        Command::CheckConfig { config } => check_config(&config),
        Command::Check(args) => check::run(args).await,
        Command::Keygen(args) => issue::keygen(args),
        Command::Mint(args) => issue::mint(args),
        Command::Revoke(args) => revoke::revoke(args).await,
        Command::Unrevoke(args) => revoke::unrevoke(args).await,
        Command::Status(args) => revoke::status(args).await,
        Command::ConfirmEpoch(args) => revoke::confirm_epoch(args).await,
    }
}

/// `serve` never reaches [`run`]: [`main`] sends it to [`serve::main`].
fn unreachable_serve() -> anyhow::Result<ExitCode> {
    anyhow::bail!("serve runs on its own runtime")
}

fn check_config(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    match mesh_authz_core::compile::load(path) {
        Ok(compiled) => {
            let config = compiled.config();
            print!("{}", serde_saphyr::to_string(config)?);
            for w in config_warnings(config) {
                eprintln!("warning: {w}");
            }
            eprintln!("{}: OK", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// What a valid config may still get wrong: a provider that skips the `aud` check, and, for a
/// `file:` JWKS, each key the server would drop (with its reason) or a file without usable keys.
fn config_warnings(config: &mesh_authz_core::config::Config) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, p) in config.providers.iter().enumerate() {
        if p.allow_any_audience {
            warnings.push(format!(
                "providers[{i}].allow_any_audience: the token's aud is not checked \
                 (RFC 9068 §4 requires it): a token {:?} issued for any other service is accepted",
                p.issuer
            ));
        }
        if let Some(file) = &p.jwks.file {
            let (result, dropped) = mesh_authz::jwks::inspect_file(file);
            for d in &dropped {
                warnings.push(format!("providers[{i}].jwks.file: {d}: dropped"));
            }
            if let Err(e) = result {
                warnings.push(format!("providers[{i}].jwks.file: {e}"));
            }
        }
    }
    warnings
}

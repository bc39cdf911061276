//! `mesh-authz serve`.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use mesh_authz::server;
use mesh_authz_core::compile::compile;
use mesh_authz_core::config::{self, Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// `serve` arguments.
#[derive(Args, Debug)]
pub(super) struct ServeArgs {
    /// The config file (YAML or JSON).
    #[arg(long, env = "MESH_AUTHZ_CONFIG", conflicts_with = "dev")]
    config: Option<PathBuf>,
    /// Run on embedded defaults: no config file, no Redis, an ephemeral dev issuer.
    #[arg(long)]
    dev: bool,
    /// gRPC listen address (overrides the config; `--dev` default 127.0.0.1:9001).
    #[arg(long)]
    grpc_addr: Option<String>,
    /// HTTP listen address (overrides the config; `--dev` default 127.0.0.1:9002).
    #[arg(long)]
    http_addr: Option<String>,
}

/// `serve`: reads and compiles the config, then builds the runtime with `server.worker_threads`
/// threads (default: the CPUs this process may use) and serves on it.
pub(super) fn main(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.dev {
        let threads = mesh_authz_core::config::ServerConfig::default().effective_worker_threads();
        return super::runtime(threads)?.block_on(dev(args, threads));
    }
    let Some(path) = args.config.clone() else {
        anyhow::bail!("serve needs --config FILE (or MESH_AUTHZ_CONFIG), or --dev");
    };
    // Before loading, so a change made while the server starts is reloaded, not missed.
    let watch = server::WatchStart::before_load(&path);
    let mut config = match config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{}: invalid config:", path.display());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    override_addrs(&mut config, args.grpc_addr.clone(), args.http_addr.clone())?;
    let compiled = match compile(config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{}: invalid config:", path.display());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let threads = compiled.config().server.effective_worker_threads();
    super::runtime(threads)?.block_on(serve(args, path, compiled, watch, threads))
}

async fn serve(
    args: ServeArgs,
    path: PathBuf,
    compiled: mesh_authz_core::compile::Compiled,
    watch: server::WatchStart,
    threads: usize,
) -> anyhow::Result<ExitCode> {
    init_logging(compiled.config());
    log_runtime(compiled.config(), threads);
    raise_open_files_limit(compiled.config());
    // SIGHUP and a change to the file (or a JWKS file source) re-read the same file with the
    // same environment and address overrides.
    let reload = move || {
        let mut config = config::load(&path)?;
        override_addrs(&mut config, args.grpc_addr.clone(), args.http_addr.clone()).map_err(
            |e| config::ConfigErrors(vec![config::ConfigError::new("server", format!("{e:#}"))]),
        )?;
        Ok(config)
    };
    server::run_with_reload_and_watch(&compiled, &reload, watch).await?;
    Ok(ExitCode::SUCCESS)
}

/// Says how many runtime threads serve, and where the number came from.
fn log_runtime(config: &Config, threads: usize) {
    let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
    match config.server.worker_threads {
        Some(_) => tracing::info!(
            worker_threads = threads,
            usable_cpus = usable,
            "runtime: server.worker_threads"
        ),
        None => tracing::info!(
            worker_threads = threads,
            "runtime: one worker thread per usable CPU (affinity and CPU quota)"
        ),
    }
}

async fn dev(args: ServeArgs, threads: usize) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir().context("creating a temp dir for the dev JWKS")?;
    let grpc = args.grpc_addr.unwrap_or_else(|| "127.0.0.1:9001".into());
    let http = args.http_addr.unwrap_or_else(|| "127.0.0.1:9002".into());
    let setup = mesh_authz::dev::setup(dir.path(), &grpc, &http)?;
    init_logging(setup.config.config());
    log_runtime(setup.config.config(), threads);
    raise_open_files_limit(setup.config.config());
    let running = server::start(&setup.config).await?;
    let now = mesh_authz_core::clock::unix_now();
    let token = mesh_authz::dev::token(
        &setup.key,
        "dev-user",
        "read",
        Duration::from_secs(3600),
        now,
    )?;
    let admin = mesh_authz::dev::token(
        &setup.key,
        "dev-admin",
        "read admin",
        Duration::from_secs(3600),
        now,
    )?;
    let addr = running.grpc_addr;
    println!(
        "\nmesh-authz dev mode: gRPC ext_authz on {addr}, health/metrics on http://{}\n\
         issuer {iss}, audience {aud}; rules: /healthz public, /admin needs scope admin, / needs a token.\n\n\
         A token for dev-user (scope read, 1h):\n{token}\n\n\
         Try it:\n  mesh-authz check --addr {addr} --path /hello --token {token}\n\
         See a denial (no token → 401) and why:\n  mesh-authz check --addr {addr} --path /hello --explain\n\
         Scope admin (dev-admin):\n  mesh-authz check --addr {addr} --path /admin --token {admin}\n",
        running.http_addr,
        iss = mesh_authz::dev::DEV_ISSUER,
        aud = mesh_authz::dev::DEV_AUDIENCE,
    );
    server::wait_for_shutdown_signal().await;
    running.shutdown().await;
    drop(dir);
    Ok(ExitCode::SUCCESS)
}

fn override_addrs(
    config: &mut Config,
    grpc: Option<String>,
    http: Option<String>,
) -> anyhow::Result<()> {
    if let Some(a) = grpc {
        config.server.grpc_addr = a.parse().with_context(|| format!("--grpc-addr {a:?}"))?;
    }
    if let Some(a) = http {
        config.server.http_addr = a.parse().with_context(|| format!("--http-addr {a:?}"))?;
    }
    Ok(())
}

/// Raises the soft open-files limit to the hard one (a container's soft limit is often 1024 while
/// its hard limit is far higher); the listeners' connection caps are fitted to it when they start.
fn raise_open_files_limit(config: &Config) {
    match server::listener::raise_open_files_limit() {
        // When the listeners' caps do not fit, `ListenerLimits::fitted` lowers them and warns.
        Ok(limit) => tracing::info!(
            open_files_limit = limit,
            max_connections = config.server.max_connections,
            "open-files limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
}

/// JSON (default) or text logs on stdout; `RUST_LOG` overrides `logging.level`. Text has colour
/// codes only when stdout is a terminal.
fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.logging.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match config.logging.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
    };
    for p in config.providers.iter().filter(|p| p.allow_any_audience) {
        tracing::warn!(
            provider = %p.name,
            "allow_any_audience is set: the token's aud is not checked (RFC 9068 section 4)"
        );
    }
}

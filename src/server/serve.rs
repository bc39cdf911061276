//! Serving until a signal: SIGTERM/Ctrl-C drain, SIGHUP and file-change reloads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::reload::refused;
use super::run::{Running, ServeError, start};
use mesh_authz_core::compile::Compiled;
use mesh_authz_core::config::{Config, ConfigErrors};

/// Where `run` gets a new config on SIGHUP: typically re-reading the config file with the
/// environment overrides. Its errors are logged and the old config keeps serving.
pub type ConfigSource = dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync;

/// Serves until SIGTERM or Ctrl-C, then drains. SIGHUP is logged and ignored (there is no file
/// to re-read); use [`run_with_reload`] to reload on SIGHUP.
pub async fn run(compiled: &Compiled) -> Result<(), ServeError> {
    serve_until_signal(compiled, None, None).await
}

/// Serves until SIGTERM or Ctrl-C, then drains; on SIGHUP asks `source` for a new config and
/// [reloads](Running::reload) it (a bad one is refused and the old config keeps serving).
pub async fn run_with_reload(compiled: &Compiled, source: &ConfigSource) -> Result<(), ServeError> {
    serve_until_signal(compiled, Some(source), None).await
}

/// As [`run_with_reload`], and also reloads when the bytes of the config file or of a JWKS `file:`
/// source change, checked every `server.watch_interval` (`0s`: SIGHUP only).
pub async fn run_with_reload_and_watch(
    compiled: &Compiled,
    source: &ConfigSource,
    watch: WatchStart,
) -> Result<(), ServeError> {
    serve_until_signal(compiled, Some(source), Some(watch)).await
}

/// The config file's bytes as read *before* it was loaded: the watch compares against them, so a
/// change made while the server starts is reloaded rather than missed.
pub struct WatchStart {
    path: PathBuf,
    digest: Option<Digest>,
}

impl WatchStart {
    /// Reads `path` now; call it before loading the config from `path`.
    pub fn before_load(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            digest: std::fs::read(path).ok().and_then(|b| digest_of(&b)),
        }
    }
}

pub(super) async fn serve_until_signal(
    compiled: &Compiled,
    source: Option<&ConfigSource>,
    watch_start: Option<WatchStart>,
) -> Result<(), ServeError> {
    let config = compiled.config();
    // JWKS files are read before `start` loads them, for the same reason as WatchStart.
    let mut watch = match (source, watch_start) {
        (Some(_), Some(w)) if !config.server.watch_interval.is_zero() => {
            Some(FileWatch::new(w, config, config.server.watch_interval).await)
        }
        _ => None,
    };
    // Before `start` logs "serving": a SIGHUP sent once that line is seen must not meet the
    // default disposition (which ends the process).
    let mut hangup = Hangup::new();
    let running = start(compiled).await?;
    // Created once, so a SIGTERM that arrives during a reload is not lost.
    let shutdown = wait_for_shutdown_signal();
    tokio::pin!(shutdown);
    if let Some(w) = &watch {
        tracing::info!(
            path = %w.config_path.display(),
            interval = ?config.server.watch_interval,
            "watching the config file and JWKS file sources for changes"
        );
    }
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = hangup.recv() => {
                tracing::info!("SIGHUP received; reloading the config");
                match source {
                    None => tracing::warn!("no config file to reload (started without --config)"),
                    Some(source) => {
                        reload_from(&running, source).await;
                        if let Some(w) = watch.as_mut() {
                            // What SIGHUP just loaded is not a change for the watcher.
                            let config = running.reload.lock().await.config.clone();
                            w.seen = read_all(&watched_paths(&w.config_path, &config)).await;
                        }
                    }
                }
            }
            Some(changed) = next_change(watch.as_mut()) => {
                let (Some(w), Some(source)) = (watch.as_mut(), source) else { continue };
                tracing::info!(path = %changed.display(), "watched file changed; reloading the config");
                reload_from(&running, source).await;
                let config = running.reload.lock().await.config.clone();
                w.settle(&config).await;
            }
        }
    }
    tracing::info!("shutdown signal received; draining");
    running.shutdown().await;
    Ok(())
}

/// Asks `source` for a config and reloads it; either failure is logged and counted as refused.
pub(super) async fn reload_from(running: &Running, source: &ConfigSource) {
    match source() {
        Ok(new) => {
            let _ = running.reload(new).await;
        }
        Err(errors) => refused(&running.metrics, &errors),
    }
}

/// How long a changed file must keep the same bytes before it is reloaded: a burst of writes (an
/// editor's save, a partly written file) becomes one reload of the final content.
pub(super) const WATCH_DEBOUNCE: Duration = Duration::from_millis(300);

/// Polls the config file and the JWKS `file:` sources by content (SHA-256 of their bytes, read
/// through symlinks). Polling sees every way a file is replaced: in-place writes, an editor's
/// rename over the file, and Kubernetes' atomic swap of a ConfigMap volume's `..data` symlink,
/// which an inotify watch on the file itself misses. A touch (same bytes) is not a change.
pub(super) struct FileWatch {
    config_path: PathBuf,
    interval: tokio::time::Interval,
    /// Each watched path and the digest of what was last acted on (`None`: unreadable).
    seen: Vec<(PathBuf, Option<Digest>)>,
    /// The digests that triggered the reload in progress.
    pending: Vec<(PathBuf, Option<Digest>)>,
}

pub(super) type Digest = [u8; 32];

impl FileWatch {
    async fn new(start: WatchStart, config: &Config, every: Duration) -> Self {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick fires at once; start with the next one.
        interval.reset();
        let config_path = start.path;
        let mut seen = vec![(config_path.clone(), start.digest)];
        seen.extend(read_all(&watched_paths(&config_path, config)[1..]).await);
        Self {
            config_path,
            interval,
            seen,
            pending: Vec::new(),
        }
    }

    /// Waits for a tick at which some watched file's bytes differ from what was last acted on
    /// and stay the same for [`WATCH_DEBOUNCE`]; returns the first such path.
    async fn changed(&mut self) -> PathBuf {
        loop {
            self.interval.tick().await;
            let paths: Vec<PathBuf> = self.seen.iter().map(|(p, _)| p.clone()).collect();
            let now = read_all(&paths).await;
            if now == self.seen {
                continue;
            }
            tokio::time::sleep(WATCH_DEBOUNCE).await;
            let again = read_all(&paths).await;
            if again != now {
                // Still being written; look again at the next tick.
                continue;
            }
            let changed = again
                .iter()
                .zip(&self.seen)
                .find(|(a, b)| a.1 != b.1)
                .map(|(a, _)| a.0.clone())
                .unwrap_or_else(|| self.config_path.clone());
            self.pending = again;
            return changed;
        }
    }

    /// After a reload (applied or refused): the triggering bytes count as seen, and the watch
    /// follows the JWKS files of the config now in force.
    async fn settle(&mut self, config: &Config) {
        let paths = watched_paths(&self.config_path, config);
        let mut seen = Vec::with_capacity(paths.len());
        for p in paths {
            match self.pending.iter().find(|(q, _)| *q == p) {
                Some(known) => seen.push(known.clone()),
                None => seen.push((p.clone(), read_digest(&p).await)),
            }
        }
        self.seen = seen;
        self.pending.clear();
    }
}

/// [`FileWatch::changed`], or never when there is no watch.
pub(super) async fn next_change(watch: Option<&mut FileWatch>) -> Option<PathBuf> {
    match watch {
        Some(w) => Some(w.changed().await),
        None => std::future::pending().await,
    }
}

/// The config file and every JWKS `file:` source of `config`.
pub(super) fn watched_paths(config_path: &Path, config: &Config) -> Vec<PathBuf> {
    let mut paths = vec![config_path.to_path_buf()];
    for p in &config.providers {
        if let Some(f) = &p.jwks.file {
            if !paths.contains(f) {
                paths.push(f.clone());
            }
        }
    }
    paths
}

pub(super) async fn read_all(paths: &[PathBuf]) -> Vec<(PathBuf, Option<Digest>)> {
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        out.push((p.clone(), read_digest(p).await));
    }
    out
}

pub(super) async fn read_digest(path: &Path) -> Option<Digest> {
    let bytes = tokio::fs::read(path).await.ok()?;
    digest_of(&bytes)
}

pub(super) fn digest_of(bytes: &[u8]) -> Option<Digest> {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().try_into().ok()
}

/// SIGHUP as a stream (never fires where there are no Unix signals).
pub(super) struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Self {
        #[cfg(unix)]
        {
            let signal =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            if signal.is_none() {
                tracing::warn!("cannot listen for SIGHUP; config reload by signal is off");
            }
            Self { signal }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.signal {
            if s.recv().await.is_some() {
                return;
            }
            self.signal = None;
        }
        std::future::pending::<()>().await
    }
}
/// Resolves on SIGTERM or Ctrl-C.
pub async fn wait_for_shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

//! The health loop: readiness pings, the epoch marker, this replica's heartbeat.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::commands::run;
use super::epoch::Observed;
use super::{Shared, setup, subscription};

/// Reads `{prefix}epoch` every 500 ms (initialising it in a new deployment), pings so readiness
/// follows Redis without traffic, and publishes this replica's heartbeat every second.
pub(super) async fn health_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut beat_at = tokio::time::Instant::now();
    loop {
        let ok = if shared.cluster {
            shared.healthy.load(Ordering::Relaxed)
        } else {
            run::<String>(&shared, "ping", &redis::cmd("PING"))
                .await
                .is_ok()
        };
        if ok {
            let mut get = redis::cmd("GET");
            get.arg(shared.epoch_key());
            if let Ok(seen) = run::<Option<String>>(&shared, "epoch", &get).await {
                match shared.epoch.observe(seen.as_deref()) {
                    Observed::Uninitialised => setup::init_epoch(&shared).await,
                    Observed::Lost(_) => shared
                        .metrics
                        .redis_errors
                        .with_label_values(&["epoch"])
                        .inc(),
                    Observed::Steady | Observed::Confirmed => {}
                }
            }
            if tokio::time::Instant::now() >= beat_at {
                beat_at = tokio::time::Instant::now() + subscription::HEARTBEAT_INTERVAL;
                let (n, payload) = shared.heartbeat.next();
                let mut publish = redis::cmd("PUBLISH");
                publish
                    .arg(format!("{}heartbeat", shared.prefix))
                    .arg(payload);
                if run::<i64>(&shared, "write", &publish).await.is_ok() {
                    shared.heartbeat.published(n);
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

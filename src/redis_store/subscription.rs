//! The supervised events subscription.
//!
//! The local cache may only serve while invalidations arrive, so the subscription is checked,
//! not assumed: the reply to `SUBSCRIBE` is confirmed (a connection that really subscribed
//! answers `PING` with `pong` as a message; one whose `SUBSCRIBE` was refused, e.g. `NOPERM`,
//! answers `PONG`), the connection is pinged every [`PING_INTERVAL`] (no answer within
//! [`PING_TIMEOUT`] counts as lost), and a heartbeat this replica publishes through its command
//! connection must come back within [`HEARTBEAT_GRACE`] (a subscription that still answers pings
//! but no longer delivers). While it is down the cache is empty and bypassed, `/readyz` says so,
//! `mesh_authz_redis_errors_total{op="subscribe"}` counts each loss, a warning names the reason,
//! and it is re-established with backoff.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::{Client, Value};
use tokio_util::sync::CancellationToken;

use super::Shared;

/// How often the subscribed connection is pinged.
pub const PING_INTERVAL: Duration = Duration::from_millis(150);
/// How long a ping of the subscribed connection may take.
pub const PING_TIMEOUT: Duration = Duration::from_millis(250);
/// How often a replica publishes its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a published heartbeat may take to come back.
pub const HEARTBEAT_GRACE: Duration = Duration::from_secs(3);

/// This replica's heartbeats: the oldest published one not yet received back.
pub(super) struct Heartbeat {
    /// Random id of this store, so a replica only waits for its own heartbeats.
    pub(super) id: String,
    seq: AtomicU64,
    pending: Mutex<Option<(u64, Instant)>>,
}

impl Heartbeat {
    pub(super) fn new() -> Heartbeat {
        Heartbeat {
            id: super::epoch::new_id(false),
            seq: AtomicU64::new(0),
            pending: Mutex::new(None),
        }
    }

    /// The payload of the next heartbeat.
    pub(super) fn next(&self) -> (u64, String) {
        let n = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        (n, format!("{}:{n}", self.id))
    }

    /// A heartbeat was published (Redis took it).
    pub(super) fn published(&self, n: u64) {
        if let Ok(mut p) = self.pending.lock()
            && p.is_none()
        {
            *p = Some((n, Instant::now()));
        }
    }

    fn received(&self, payload: &[u8]) {
        let Some(n) = std::str::from_utf8(payload)
            .ok()
            .and_then(|p| p.strip_prefix(self.id.as_str()))
            .and_then(|p| p.strip_prefix(':'))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return;
        };
        if let Ok(mut p) = self.pending.lock()
            && p.is_some_and(|(want, _)| want <= n)
        {
            *p = None;
        }
    }

    fn overdue(&self) -> bool {
        self.pending
            .lock()
            .ok()
            .and_then(|p| *p)
            .is_some_and(|(_, at)| at.elapsed() > HEARTBEAT_GRACE)
    }

    fn reset(&self) {
        if let Ok(mut p) = self.pending.lock() {
            *p = None;
        }
    }
}

/// Whether a `PING` reply comes from a connection in subscribed mode.
fn subscribed_pong(v: &Value) -> bool {
    let items = match v {
        Value::Array(items) => items,
        Value::Push { data, .. } => data,
        _ => return false,
    };
    matches!(items.first(), Some(Value::BulkString(b)) if b.eq_ignore_ascii_case(b"pong"))
}

/// Keeps one supervised subscription to the events and heartbeat channels, on the first
/// reachable node (cluster pub/sub is broadcast to every node).
pub(super) async fn run(
    shared: Arc<Shared>,
    clients: Vec<Client>,
    timeout: Duration,
    cancel: CancellationToken,
) {
    let events = format!("{}events", shared.prefix);
    let heartbeat = format!("{}heartbeat", shared.prefix);
    let mut delay = Duration::from_millis(50);
    let mut next = 0usize;
    loop {
        let Some(client) = clients.get(next % clients.len().max(1)) else {
            return;
        };
        next = next.wrapping_add(1);
        let channels = [events.as_str(), heartbeat.as_str()];
        let connected = async {
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            // One channel per call: `subscribe` waits for one reply, and a second one still
            // in flight would be taken for the answer to the ping below.
            for channel in channels {
                sink.subscribe(channel).await?;
            }
            // `subscribe` does not look at the reply; a ping tells whether it took effect.
            let pong: Value = sink.ping().await?;
            Ok::<_, redis::RedisError>((sink, stream, subscribed_pong(&pong)))
        };
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(timeout, connected) => r,
        };
        let why = match result {
            Ok(Ok((mut sink, mut stream, true))) => {
                delay = Duration::from_millis(50);
                shared.heartbeat.reset();
                // Whatever was cached may have missed events while we were not subscribed.
                shared.cache.invalidate_all();
                shared.cache.set_enabled(true);
                tracing::info!("Redis events subscription established");
                let mut tick = tokio::time::interval(PING_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let why = loop {
                    tokio::select! {
                        _ = cancel.cancelled() => {
                            shared.cache.set_enabled(false);
                            return;
                        }
                        m = stream.next() => {
                            let Some(msg) = m else { break "connection closed".to_string() };
                            if msg.get_channel_name() == heartbeat {
                                shared.heartbeat.received(msg.get_payload_bytes());
                                continue;
                            }
                            match std::str::from_utf8(msg.get_payload_bytes()) {
                                Ok(payload) => shared.cache.invalidate_event(payload),
                                Err(_) => shared.cache.invalidate_all(),
                            }
                        }
                        _ = tick.tick() => {
                            match tokio::time::timeout(PING_TIMEOUT, sink.ping::<Value>()).await {
                                Ok(Ok(v)) if subscribed_pong(&v) => {}
                                Ok(Ok(_)) => break "no longer subscribed".to_string(),
                                Ok(Err(e)) => break format!("ping failed: {e}"),
                                Err(_) => break "ping timed out".to_string(),
                            }
                            if shared.heartbeat.overdue() {
                                break "heartbeat not delivered".to_string();
                            }
                        }
                    }
                };
                shared.cache.set_enabled(false);
                format!("subscription lost: {why}")
            }
            Ok(Ok((_, _, false))) => format!(
                "SUBSCRIBE refused (the ACL user needs `&{events}` and `&{heartbeat}` channel \
                 rights)"
            ),
            Ok(Err(e)) => format!("subscription failed: {e}"),
            Err(_) => "subscription timed out".to_string(),
        };
        shared.cache.set_enabled(false);
        if let Ok(mut w) = shared.subscription_error.lock() {
            *w = Some(why.clone());
        }
        tracing::warn!(reason = %why, "Redis events subscription down: cache bypassed; retrying");
        shared
            .metrics
            .redis_errors
            .with_label_values(&["subscribe"])
            .inc();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pong_tells_subscribed_mode() {
        assert!(subscribed_pong(&Value::Array(vec![
            Value::BulkString(b"pong".to_vec()),
            Value::BulkString(Vec::new()),
        ])));
        assert!(!subscribed_pong(&Value::SimpleString("PONG".into())));
        assert!(!subscribed_pong(&Value::Nil));
    }

    #[test]
    fn heartbeat_overdue_only_when_not_received() {
        let h = Heartbeat::new();
        let (n, payload) = h.next();
        h.published(n);
        assert!(!h.overdue());
        h.received(format!("other:{n}").as_bytes());
        assert!(
            h.pending.lock().unwrap().is_some(),
            "another replica's beat"
        );
        h.received(payload.as_bytes());
        assert!(h.pending.lock().unwrap().is_none());
    }
}

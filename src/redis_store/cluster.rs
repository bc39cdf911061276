//! Following a Redis Cluster's topology, including failovers the client library misses.
//!
//! The library refreshes its slot map on connection errors and `MOVED`, not when a master
//! hangs (its replies time out, no connection resets, no node redirects), so a hung master that
//! has been replaced would keep receiving its slots' commands. Here a supervisor asks the seed
//! nodes for `CLUSTER SLOTS` every [`REFRESH_INTERVAL`] (and at once after a lookup timed out);
//! when the masters changed it builds a new cluster connection from the seeds that answered and
//! swaps it in. Start-up likewise connects through the seeds that answer, so one hung seed does
//! not hold it up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::{Client, ConnectionInfo, Value};
use tokio_util::sync::CancellationToken;

use super::{Conn, Shared};

/// How often the seeds are asked for the topology.
pub(super) const REFRESH_INTERVAL: Duration = Duration::from_millis(300);
/// Shortest time between two topology rounds (lookups failing on a hung node ask for one).
pub(super) const MIN_ROUND_GAP: Duration = Duration::from_millis(50);
/// How long one seed may take to answer `CLUSTER SLOTS`.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

/// How long a master whose lookup timed out is skipped (lookups on its slots fail at once).
pub(super) const BREAKER_OPEN: Duration = Duration::from_secs(1);
/// A master skipped this long gets a fresh connection (a dead TCP connection may never reset).
pub(super) const BREAKER_REBUILD: Duration = Duration::from_secs(3);

/// The masters of each slot range, sorted.
type Topology = Vec<(i64, i64, String)>;

/// Per-master circuit breaking over the slot map of the current connection: once a master's
/// lookup timed out, lookups on its slots fail at once for [`BREAKER_OPEN`] (then one goes
/// through again), so nothing piles up on a hung node and no check waits on it.
#[derive(Default)]
pub(super) struct Breaker {
    topology: Topology,
    /// Master address → (skipped until, first timeout of this run).
    open: std::collections::HashMap<String, (Instant, Instant)>,
}

impl Breaker {
    fn master(&self, slot: u16) -> Option<&str> {
        let slot = i64::from(slot);
        let i = self.topology.partition_point(|(_, end, _)| *end < slot);
        self.topology
            .get(i)
            .filter(|(start, _, _)| *start <= slot)
            .map(|(_, _, a)| a.as_str())
    }

    /// The master of `slot` if it is being skipped.
    pub(super) fn blocked(&self, slot: u16) -> Option<String> {
        let m = self.master(slot)?;
        self.open
            .get(m)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|_| m.to_string())
    }

    /// A lookup on `slot` timed out.
    pub(super) fn trip(&mut self, slot: u16) {
        if let Some(m) = self.master(slot).map(str::to_string) {
            let now = Instant::now();
            let since = self.open.get(&m).map_or(now, |(_, s)| *s);
            self.open.insert(m, (now + BREAKER_OPEN, since));
        }
    }

    /// A lookup on `slot` was answered.
    pub(super) fn answered(&mut self, slot: u16) {
        if let Some(m) = self.master(slot).map(str::to_string) {
            self.open.remove(&m);
        }
    }

    fn stuck(&self) -> bool {
        self.open
            .values()
            .any(|(_, since)| since.elapsed() > BREAKER_REBUILD)
    }

    fn reset(&mut self, topology: Topology) {
        self.topology = topology;
        self.open.clear();
    }
}

/// What it takes to build a cluster connection.
pub(super) struct ClusterSetup {
    pub(super) seeds: Vec<ConnectionInfo>,
    pub(super) probes: Vec<Client>,
    pub(super) ca: Option<Vec<u8>>,
    pub(super) connect_timeout: Duration,
}

struct Seed {
    conn: Option<MultiplexedConnection>,
    retry_at: Instant,
    backoff: Duration,
}

fn parse_topology(v: &Value) -> Option<Topology> {
    let Value::Array(ranges) = v else { return None };
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        let Value::Array(items) = r else { return None };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (items.first(), items.get(1), items.get(2))
        else {
            return None;
        };
        let host = match master.first() {
            Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
            Some(Value::SimpleString(h)) => h.clone(),
            _ => return None,
        };
        let Some(Value::Int(port)) = master.get(1) else {
            return None;
        };
        out.push((*start, *end, format!("{host}:{port}")));
    }
    out.sort();
    Some(out)
}

async fn probe(client: &Client, seed: &mut Seed) -> Option<Topology> {
    if seed.conn.is_none() && Instant::now() < seed.retry_at {
        return None;
    }
    let asked = async {
        let mut conn = match seed.conn.take() {
            Some(c) => c,
            None => client.get_multiplexed_async_connection().await?,
        };
        let v: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await?;
        Ok::<_, redis::RedisError>((conn, v))
    };
    match tokio::time::timeout(PROBE_TIMEOUT, asked).await {
        Ok(Ok((conn, v))) => {
            seed.conn = Some(conn);
            seed.backoff = REFRESH_INTERVAL;
            parse_topology(&v).filter(|t| !t.is_empty())
        }
        _ => {
            // A seed that does not answer is asked less often (each try may leave a connection
            // in a hung node's backlog).
            seed.retry_at = Instant::now() + seed.backoff;
            seed.backoff = (seed.backoff * 2).min(Duration::from_secs(5));
            None
        }
    }
}

async fn build(setup: &ClusterSetup, live: Vec<ConnectionInfo>) -> Result<Conn, String> {
    // The library's own response timeout would make it reconnect to a hung node, and while it
    // does so no command goes to any node; every call here has its own timeout instead, and the
    // breaker keeps traffic off a hung master.
    let mut builder = ClusterClientBuilder::new(live)
        .connection_timeout(setup.connect_timeout)
        .response_timeout(Duration::from_secs(60))
        .retries(1)
        .min_retry_wait(10)
        .max_retry_wait(100);
    if let Some(ca) = &setup.ca {
        builder = builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.clone()),
        });
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    match tokio::time::timeout(setup.connect_timeout, client.get_async_connection()).await {
        Ok(Ok(c)) => Ok(Conn::Cluster(c)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Connects, then keeps the connection on the cluster's current masters.
pub(super) async fn supervise(shared: Arc<Shared>, setup: ClusterSetup, cancel: CancellationToken) {
    let mut seeds: Vec<Seed> = setup
        .probes
        .iter()
        .map(|_| Seed {
            conn: None,
            retry_at: Instant::now(),
            backoff: REFRESH_INTERVAL,
        })
        .collect();
    let mut current: Option<Topology> = None;
    // Warn once per outage, not on every round.
    let mut unreachable = false;
    loop {
        let round = tokio::time::Instant::now();
        let answers = futures_util::future::join_all(
            setup
                .probes
                .iter()
                .zip(seeds.iter_mut())
                .map(|(c, s)| probe(c, s)),
        )
        .await;
        let live: Vec<ConnectionInfo> = setup
            .seeds
            .iter()
            .zip(&answers)
            .filter(|(_, a)| a.is_some())
            .map(|(i, _)| i.clone())
            .collect();
        let topology = answers.into_iter().flatten().next();
        let answered = topology.is_some();
        shared.healthy.store(
            topology.is_some() && shared.conn.load().is_some(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let stuck = shared.breaker.lock().is_ok_and(|b| b.stuck());
        match topology {
            Some(t) if current.as_ref() != Some(&t) || shared.conn.load().is_none() || stuck => {
                match build(&setup, live).await {
                    Ok(conn) => {
                        if current.is_some() {
                            tracing::warn!("Redis Cluster masters changed; connection rebuilt");
                        } else {
                            tracing::info!("connected to Redis Cluster");
                        }
                        shared.conn.store(Some(Arc::new(conn)));
                        if let Ok(mut b) = shared.breaker.lock() {
                            b.reset(t.clone());
                        }
                        shared
                            .healthy
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        current = Some(t);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Redis Cluster connection failed; retrying");
                        shared
                            .metrics
                            .redis_errors
                            .with_label_values(&["connect"])
                            .inc();
                    }
                }
            }
            Some(_) => {}
            None => {
                if !unreachable {
                    tracing::warn!("no Redis Cluster seed node answers; retrying");
                }
                shared
                    .metrics
                    .redis_errors
                    .with_label_values(&["connect"])
                    .inc();
            }
        }
        if unreachable && answered {
            tracing::info!("Redis Cluster seed nodes answer again");
        }
        unreachable = !answered;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
            _ = shared.refresh.notified() => {}
        }
        // Timed-out lookups ask for a round at once, but at most every MIN_ROUND_GAP.
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(round + MIN_ROUND_GAP) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_skips_only_the_tripped_master() {
        let mut b = Breaker::default();
        b.reset(vec![(0, 99, "a:1".into()), (100, 16383, "b:2".into())]);
        assert_eq!(b.blocked(5), None);
        b.trip(5);
        assert_eq!(b.blocked(99).as_deref(), Some("a:1"));
        assert_eq!(b.blocked(100), None);
        b.answered(0);
        assert_eq!(b.blocked(5), None);
        assert!(!b.stuck());
    }

    #[test]
    fn topology_parses_and_sorts() {
        let node = |h: &str, p| {
            Value::Array(vec![
                Value::BulkString(h.as_bytes().to_vec()),
                Value::Int(p),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let v = Value::Array(vec![
            Value::Array(vec![Value::Int(100), Value::Int(200), node("b", 2)]),
            Value::Array(vec![Value::Int(0), Value::Int(99), node("a", 1)]),
        ]);
        assert_eq!(
            parse_topology(&v),
            Some(vec![(0, 99, "a:1".into()), (100, 200, "b:2".into())])
        );
        assert_eq!(parse_topology(&Value::Nil), None);
    }
}

//! `check-load`: gRPC ext_authz Check load straight at a server (mesh-authz or `noop-authz`).
//!
//! N concurrent request loops over a few HTTP/2 connections for a fixed duration (after a
//! warm-up), or until a request count is reached. Counts outcomes by gRPC status and allow/deny,
//! records latency in an HDR histogram, and reads the CPU the target process used from `/proc`.
//! Prints one JSON object (`"kind": "summary"`).
//!
//! Two optional modes, used by `bench/soak`:
//!
//! - `--rate N`: fixed rate for the whole process instead of as fast as possible. Request `k` is
//!   scheduled at `start + k / N`; each loop takes the next slot from a shared counter and sleeps
//!   until it, so one slow response delays only the loop waiting for it, not the schedule. A
//!   request sent more than `--late-ms` after its slot is counted as `late` (coordinated omission
//!   stays visible instead of silently lowering the rate).
//! - `--interval S`: one JSON line (`"kind": "interval"`) every `S` measured seconds, with that
//!   interval's requests, outcomes, p50/p99 and the RSS and CPU of each `--pid`, before the
//!   summary line.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use hdrhistogram::Histogram;
use mesh_authz_bench::{cpu_seconds, mint, rss_kib};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "gRPC Check load generator")]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:9001")]
    addr: SocketAddr,
    /// Scenario label copied into the output.
    #[arg(long, default_value = "check")]
    label: String,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// Concurrent request loops (spread over the connections). With --rate, the most requests
    /// outstanding at once: it must exceed rate × latency or requests start late.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured warm-up seconds before.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Stop after this many requests instead (no warm-up, no time limit).
    #[arg(long)]
    requests: Option<u64>,
    /// Target requests per second for the whole process (fixed-rate schedule). Without it, every
    /// loop sends its next request as soon as the previous one is answered.
    #[arg(long)]
    rate: Option<f64>,
    /// With --rate: a request sent more than this many milliseconds after its scheduled time
    /// counts as late.
    #[arg(long, default_value_t = 100.0)]
    late_ms: f64,
    /// Print one JSON line per this many measured seconds, then the summary.
    #[arg(long)]
    interval: Option<f64>,
    /// Give up on a Check after this many seconds (outcome `timeout`). Without it, wait forever.
    #[arg(long)]
    timeout: Option<f64>,
    /// Process whose CPU is measured (repeatable).
    #[arg(long)]
    pid: Vec<u32>,
    /// Token file, one per line, used round robin. Without it (and without --fresh-key) requests
    /// carry no token.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Mint a new token for every request with this private key (memory scenario).
    #[arg(long)]
    fresh_key: Option<PathBuf>,
    /// Key id for --fresh-key.
    #[arg(long, default_value = "eddsa")]
    kid: String,
    /// Expected outcome: allow, deny16, deny7, ... (others are counted as unexpected).
    #[arg(long, default_value = "allow")]
    expect: String,
    /// Request path.
    #[arg(long, default_value = "/api/orders/42")]
    path: String,
    /// Forward this PEM certificate as `attributes.source.certificate`, URL-encoded, as Envoy's
    /// ext_authz filter does with `include_peer_certificate`.
    #[arg(long)]
    peer_cert: Option<PathBuf>,
    /// `attributes.source.principal` (Envoy: the peer certificate's URI SAN).
    #[arg(long)]
    principal: Option<String>,
    /// Connect over TLS, trusting this CA (PEM).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// With --tls-ca: present this client certificate (PEM) ...
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// ... with this private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With --tls-ca: the server name to verify.
    #[arg(long, default_value = "localhost")]
    tls_server_name: String,
}

/// What every request of a loop looks like, and what it expects back.
struct Shape {
    path: String,
    expect: String,
    source: Source,
}

/// What the request says about the downstream connection.
#[derive(Clone, Default)]
struct Source {
    principal: String,
    certificate: String,
}

/// URL-encodes like Envoy does for `source.certificate`: everything but unreserved characters.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where tokens come from.
enum Tokens {
    None,
    List(Vec<String>),
    Fresh { pem: String, kid: String },
}

/// When requests are sent and which ones are measured; shared by every loop.
#[derive(Clone, Copy)]
struct Plan {
    start: Instant,
    measure_start: Instant,
    /// No request starts (without --rate) or is scheduled (with it) at or after this.
    end: Option<Instant>,
    /// At most this many requests (slots) in all.
    limit: Option<u64>,
    /// Requests per second (fixed-rate mode).
    rate: Option<f64>,
    late_after: Duration,
    timeout: Option<Duration>,
}

impl Plan {
    /// Scheduled start of request `n` in fixed-rate mode.
    fn slot(&self, n: u64) -> Option<Instant> {
        self.rate
            .map(|r| self.start + Duration::from_secs_f64(n as f64 / r))
    }
}

/// Outcome counts and latencies of a set of requests.
struct Tally {
    hist: Histogram<u64>,
    outcomes: HashMap<String, u64>,
    /// Requests sent more than `late_after` after their slot.
    late: u64,
    /// Largest delay between a slot and its send, in µs.
    max_lag_us: u64,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            outcomes: HashMap::new(),
            late: 0,
            max_lag_us: 0,
        })
    }

    fn record(&mut self, key: &str, latency_us: u64, lag: Option<Duration>, late_after: Duration) {
        *self.outcomes.entry(key.to_string()).or_default() += 1;
        self.hist.record(latency_us).ok();
        if let Some(lag) = lag {
            self.max_lag_us = self.max_lag_us.max(lag.as_micros() as u64);
            if lag > late_after {
                self.late += 1;
            }
        }
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.hist.add(&other.hist)?;
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        self.late += other.late;
        self.max_lag_us = self.max_lag_us.max(other.max_lag_us);
        Ok(())
    }

    fn sorted_outcomes(&self) -> BTreeMap<&str, u64> {
        self.outcomes
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }
}

/// What one request loop hands back.
struct WorkerOut {
    tally: Tally,
    /// Encoded size of the last CheckResponse seen (what Envoy has to decode and apply).
    resp_bytes: usize,
    /// When this loop last sent a measured request.
    last_send: Option<Instant>,
}

/// The current `--interval` window, filled by every loop and emptied by the reporter.
struct Live {
    tally: Tally,
    since: Instant,
}

fn request(path: &str, token: Option<&str>, source: &Source) -> CheckRequest {
    let mut headers = HashMap::new();
    headers.insert(":authority".to_string(), "api.bench".to_string());
    if let Some(t) = token {
        headers.insert("authorization".to_string(), format!("Bearer {t}"));
    }
    let peer = (!source.principal.is_empty() || !source.certificate.is_empty()).then(|| Peer {
        principal: source.principal.clone(),
        certificate: source.certificate.clone(),
        ..Default::default()
    });
    CheckRequest {
        attributes: Some(AttributeContext {
            source: peer,
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: path.into(),
                    host: "api.bench".into(),
                    protocol: "HTTP/1.1".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let positive = |v: Option<f64>| v.is_none_or(|v| v.is_finite() && v > 0.0);
    if !positive(args.rate) {
        bail!("--rate must be a positive number of requests per second");
    }
    if !positive(args.interval) {
        bail!("--interval must be a positive number of seconds");
    }
    if !positive(args.timeout) {
        bail!("--timeout must be a positive number of seconds");
    }
    if !(args.late_ms.is_finite() && args.late_ms >= 0.0) {
        bail!(
            "--late-ms must be a non-negative number, got {}",
            args.late_ms
        );
    }
    let tokens = if let Some(p) = &args.fresh_key {
        Tokens::Fresh {
            pem: std::fs::read_to_string(p).context("reading --fresh-key")?,
            kid: args.kid.clone(),
        }
    } else if let Some(p) = &args.tokens {
        let list: Vec<String> = std::fs::read_to_string(p)
            .context("reading --tokens")?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if list.is_empty() {
            bail!("token file is empty");
        }
        Tokens::List(list)
    } else {
        Tokens::None
    };
    let tokens = Arc::new(tokens);
    let source = Source {
        principal: args.principal.clone().unwrap_or_default(),
        certificate: match &args.peer_cert {
            Some(p) => url_encode(&std::fs::read_to_string(p).context("reading --peer-cert")?),
            None => String::new(),
        },
    };

    let tls = match &args.tls_ca {
        None => None,
        Some(ca) => {
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(
                    std::fs::read(ca).context("reading --tls-ca")?,
                ))
                .domain_name(args.tls_server_name.clone());
            if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
                tls = tls.identity(Identity::from_pem(
                    std::fs::read(cert).context("reading --tls-cert")?,
                    std::fs::read(key).context("reading --tls-key")?,
                ));
            }
            Some(tls)
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut clients = Vec::new();
    for _ in 0..args.conns.max(1) {
        let mut endpoint = Channel::from_shared(format!("{scheme}://{}", args.addr))?;
        if let Some(tls) = &tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        let ch = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {}", args.addr))?;
        clients.push(AuthorizationClient::new(ch));
    }

    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (measure_start, end) = match args.requests {
        Some(_) => (start, None),
        None => {
            let m = start + Duration::from_secs_f64(args.warmup);
            (m, Some(m + Duration::from_secs_f64(args.duration)))
        }
    };
    let plan = Plan {
        start,
        measure_start,
        end,
        limit: args.requests,
        rate: args.rate,
        late_after: Duration::from_secs_f64(args.late_ms / 1000.0),
        timeout: args.timeout.map(Duration::from_secs_f64),
    };
    let live = match args.interval {
        Some(_) => Some(Arc::new(Mutex::new(Live {
            tally: Tally::new()?,
            since: measure_start,
        }))),
        None => None,
    };

    let mut handles = Vec::new();
    for i in 0..args.concurrency.max(1) {
        handles.push(tokio::spawn(worker(
            clients[i % clients.len()].clone(),
            tokens.clone(),
            counter.clone(),
            plan,
            Shape {
                path: args.path.clone(),
                expect: args.expect.clone(),
                source: source.clone(),
            },
            live.clone(),
        )));
    }
    let reporter = match (&live, args.interval) {
        (Some(live), Some(every)) => Some(tokio::spawn(report_intervals(
            live.clone(),
            plan,
            Duration::from_secs_f64(every),
            args.label.clone(),
            args.pid.clone(),
        ))),
        _ => None,
    };

    // CPU of the targets over exactly the measured window.
    let (outs, secs, cpu0, cpu1) = if let Some(e) = end {
        tokio::time::sleep_until(measure_start.into()).await;
        let cpu0 = cpu_all(&args.pid)?;
        tokio::time::sleep_until(e.into()).await;
        let cpu1 = cpu_all(&args.pid)?;
        let outs = join(handles).await?;
        // With --rate, the time over which the measured requests were really sent: longer than
        // --duration when the loops fell behind the schedule.
        let secs = match args.rate {
            Some(_) => outs
                .iter()
                .filter_map(|o| o.last_send)
                .max()
                .map(|t| (t - measure_start).as_secs_f64())
                .unwrap_or(0.0)
                .max(args.duration),
            None => args.duration,
        };
        (outs, secs, cpu0, cpu1)
    } else {
        let cpu0 = cpu_all(&args.pid)?;
        let outs = join(handles).await?;
        let secs = start.elapsed().as_secs_f64();
        let cpu1 = cpu_all(&args.pid)?;
        (outs, secs, cpu0, cpu1)
    };
    if let (Some(reporter), Some(live)) = (reporter, &live) {
        reporter.abort();
        // An aborted task ends with a cancellation error, which is the expected way out here.
        let _ = reporter.await;
        // The last (possibly short) interval: everything answered since the last line.
        print_interval(live, measure_start, &args.label, &args.pid)?;
    }
    report(&args, outs, secs, &cpu0, &cpu1)
}

/// One request loop: takes the next request number, sends it, records the outcome.
async fn worker(
    mut client: AuthorizationClient<Channel>,
    tokens: Arc<Tokens>,
    counter: Arc<AtomicU64>,
    plan: Plan,
    shape: Shape,
    live: Option<Arc<Mutex<Live>>>,
) -> anyhow::Result<WorkerOut> {
    let Shape {
        path,
        expect,
        source,
    } = shape;
    let mut out = WorkerOut {
        tally: Tally::new()?,
        resp_bytes: 0,
        last_send: None,
    };
    loop {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        if plan.limit.is_some_and(|l| n >= l) {
            break;
        }
        let slot = plan.slot(n);
        if slot.zip(plan.end).is_some_and(|(s, e)| s >= e) {
            break;
        }
        let req = match &*tokens {
            Tokens::None => request(&path, None, &source),
            Tokens::List(l) => request(&path, l.get(n as usize % l.len()).map(|s| &**s), &source),
            Tokens::Fresh { pem, kid } => request(&path, Some(&mint(pem, kid, n)?), &source),
        };
        if let Some(s) = slot {
            tokio::time::sleep_until(s.into()).await;
        }
        let t0 = Instant::now();
        if slot.is_none() && plan.end.is_some_and(|e| t0 >= e) {
            break;
        }
        let res = match plan.timeout {
            Some(d) => tokio::time::timeout(d, client.check(req)).await.ok(),
            None => Some(client.check(req).await),
        };
        let t1 = Instant::now();
        let measured = match slot {
            // Fixed rate: a request belongs to the window its slot is in, however late it runs.
            Some(s) => s >= plan.measure_start,
            None => t0 >= plan.measure_start && plan.end.is_none_or(|e| t1 <= e),
        };
        if !measured {
            continue;
        }
        let key = match res {
            None => "timeout".to_string(),
            Some(Err(s)) => format!("grpc_error_{:?}", s.code()),
            Some(Ok(r)) => {
                let r = r.into_inner();
                out.resp_bytes = prost::Message::encoded_len(&r);
                outcome(&r)
            }
        };
        let key = if key == expect {
            key
        } else {
            format!("unexpected_{key}")
        };
        let latency_us = (t1 - t0).as_micros().max(1) as u64;
        let lag = slot.map(|s| t0.saturating_duration_since(s));
        out.tally.record(&key, latency_us, lag, plan.late_after);
        out.last_send = Some(out.last_send.map_or(t0, |l| l.max(t0)));
        if let Some(live) = &live {
            let mut live = live.lock().unwrap_or_else(PoisonError::into_inner);
            live.tally.record(&key, latency_us, lag, plan.late_after);
        }
    }
    Ok(out)
}

/// `allow` for an OK response, `deny<code>` otherwise.
fn outcome(r: &CheckResponse) -> String {
    let code = r.status.as_ref().map(|s| s.code).unwrap_or(-1);
    match r.http_response {
        Some(HttpResponse::OkResponse(_)) if code == 0 => "allow".to_string(),
        _ => format!("deny{code}"),
    }
}

/// Prints an interval line every `every` measured seconds while the next tick is before the end
/// of the measured window (the last interval is printed by `main` once every loop is done).
async fn report_intervals(
    live: Arc<Mutex<Live>>,
    plan: Plan,
    every: Duration,
    label: String,
    pids: Vec<u32>,
) -> anyhow::Result<()> {
    let mut k: u32 = 1;
    loop {
        let Some(tick) = every.checked_mul(k).map(|d| plan.measure_start + d) else {
            return Ok(());
        };
        if plan.end.is_some_and(|e| tick >= e) {
            return Ok(());
        }
        tokio::time::sleep_until(tick.into()).await;
        print_interval(&live, plan.measure_start, &label, &pids)?;
        k = k.saturating_add(1);
    }
}

/// Empties the current interval and prints it as one JSON line.
fn print_interval(
    live: &Mutex<Live>,
    measure_start: Instant,
    label: &str,
    pids: &[u32],
) -> anyhow::Result<()> {
    let now = Instant::now();
    let (tally, since) = {
        let mut live = live.lock().unwrap_or_else(PoisonError::into_inner);
        let tally = std::mem::replace(&mut live.tally, Tally::new()?);
        (tally, std::mem::replace(&mut live.since, now))
    };
    let secs = (now - since).as_secs_f64();
    let n = tally.hist.len();
    // A process that went away reads as null: the soak report flags it.
    let rss: Vec<Option<u64>> = pids.iter().map(|p| rss_kib(*p).ok()).collect();
    let cpu: Vec<Option<f64>> = pids.iter().map(|p| cpu_seconds(*p).ok()).collect();
    // A report timestamp (sub-second), not a check's `now`: the one place a tool reads it.
    #[allow(clippy::disallowed_methods)]
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let line = serde_json::json!({
        "kind": "interval",
        "label": label,
        "t": (now - measure_start).as_secs_f64(),
        "unix": unix,
        "seconds": secs,
        "requests": n,
        "rps": if secs > 0.0 { n as f64 / secs } else { 0.0 },
        "p50_us": tally.hist.value_at_quantile(0.50),
        "p99_us": tally.hist.value_at_quantile(0.99),
        "max_us": tally.hist.max(),
        "outcomes": tally.sorted_outcomes(),
        "late": tally.late,
        "rss_kib": rss,
        "cpu_s": cpu,
    });
    println!("{line}");
    Ok(())
}

fn cpu_all(pids: &[u32]) -> anyhow::Result<Vec<f64>> {
    pids.iter().map(|p| cpu_seconds(*p)).collect()
}

async fn join(
    handles: Vec<tokio::task::JoinHandle<anyhow::Result<WorkerOut>>>,
) -> anyhow::Result<Vec<WorkerOut>> {
    let mut outs = Vec::new();
    for h in handles {
        outs.push(h.await??);
    }
    Ok(outs)
}

fn report(
    args: &Args,
    outs: Vec<WorkerOut>,
    secs: f64,
    cpu0: &[f64],
    cpu1: &[f64],
) -> anyhow::Result<()> {
    let mut all = Tally::new()?;
    let resp_bytes = outs.iter().map(|o| o.resp_bytes).max().unwrap_or(0);
    for o in outs {
        all.merge(o.tally)?;
    }
    let hist = &all.hist;
    let n = hist.len();
    let cpu: Vec<f64> = cpu0.iter().zip(cpu1).map(|(a, b)| b - a).collect();
    let cpu_ms_per_1k: Vec<f64> = cpu
        .iter()
        .map(|c| if n > 0 { c * 1e6 / n as f64 } else { 0.0 })
        .collect();
    let out = serde_json::json!({
        "kind": "summary",
        "label": args.label,
        "requests": n,
        "seconds": secs,
        "rps": n as f64 / secs,
        "target_rps": args.rate,
        "p50_us": hist.value_at_quantile(0.50),
        "p99_us": hist.value_at_quantile(0.99),
        "max_us": hist.max(),
        "mean_us": hist.mean(),
        "outcomes": all.sorted_outcomes(),
        "expected": args.expect,
        "late": all.late,
        "late_ms": args.late_ms,
        "max_lag_us": all.max_lag_us,
        "response_bytes": resp_bytes,
        "cpu_s": cpu,
        "cpu_ms_per_1k": cpu_ms_per_1k,
    });
    println!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::ext_authz::v3::pb::{DeniedHttpResponse, OkHttpResponse};
    use envoy_types::pb::google::rpc;

    fn plan(rate: Option<f64>) -> Plan {
        let start = Instant::now();
        Plan {
            start,
            measure_start: start,
            end: None,
            limit: None,
            rate,
            late_after: Duration::from_millis(100),
            timeout: None,
        }
    }

    #[test]
    fn slots_follow_the_rate() {
        let p = plan(Some(2000.0));
        assert_eq!(p.slot(0), Some(p.start));
        assert_eq!(p.slot(2000), Some(p.start + Duration::from_secs(1)));
        assert_eq!(p.slot(1), Some(p.start + Duration::from_micros(500)));
        assert_eq!(plan(None).slot(5), None);
    }

    #[test]
    fn tally_counts_late_requests_and_merges() {
        let late_after = Duration::from_millis(100);
        let mut a = Tally::new().unwrap();
        a.record("allow", 300, Some(Duration::from_millis(5)), late_after);
        a.record("allow", 400, Some(Duration::from_millis(150)), late_after);
        let mut b = Tally::new().unwrap();
        b.record("unexpected_deny16", 500, None, late_after);
        a.merge(b).unwrap();
        assert_eq!(a.hist.len(), 3);
        assert_eq!(a.late, 1);
        assert_eq!(a.max_lag_us, 150_000);
        assert_eq!(
            a.sorted_outcomes().into_iter().collect::<Vec<_>>(),
            vec![("allow", 2), ("unexpected_deny16", 1)]
        );
    }

    #[test]
    fn certificates_are_url_encoded_like_envoy_does() {
        assert_eq!(
            url_encode("-----BEGIN X-----\nab+/=\n"),
            "-----BEGIN%20X-----%0Aab%2B%2F%3D%0A"
        );
    }

    #[test]
    fn outcomes_are_named_by_decision_and_code() {
        let status = |code| {
            Some(rpc::Status {
                code,
                ..Default::default()
            })
        };
        let ok = CheckResponse {
            status: status(0),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
            ..Default::default()
        };
        let denied = CheckResponse {
            status: status(16),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse::default())),
            ..Default::default()
        };
        assert_eq!(outcome(&ok), "allow");
        assert_eq!(outcome(&denied), "deny16");
        assert_eq!(outcome(&CheckResponse::default()), "deny-1");
    }
}

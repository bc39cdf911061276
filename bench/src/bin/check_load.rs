//! `check-load`: gRPC ext_authz Check load straight at a server (mesh-authz or `noop-authz`).
//!
//! N concurrent request loops over a few HTTP/2 connections for a fixed duration (after a
//! warm-up), or until a request count is reached. Counts outcomes by gRPC status and allow/deny,
//! records latency in an HDR histogram, and reads the CPU the target process used from `/proc`.
//! Prints one JSON object.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use hdrhistogram::Histogram;
use mesh_authz_bench::{cpu_seconds, mint};
use tonic::transport::Channel;

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
    /// Concurrent request loops (spread over the connections).
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
}

/// Where tokens come from.
enum Tokens {
    None,
    List(Vec<String>),
    Fresh { pem: String, kid: String },
}

struct WorkerOut {
    hist: Histogram<u64>,
    outcomes: HashMap<String, u64>,
    /// Encoded size of the last CheckResponse seen (what Envoy has to decode and apply).
    resp_bytes: usize,
}

fn request(path: &str, token: Option<&str>) -> CheckRequest {
    let mut headers = HashMap::new();
    headers.insert(":authority".to_string(), "api.bench".to_string());
    if let Some(t) = token {
        headers.insert("authorization".to_string(), format!("Bearer {t}"));
    }
    CheckRequest {
        attributes: Some(AttributeContext {
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

    let mut clients = Vec::new();
    for _ in 0..args.conns.max(1) {
        let ch = Channel::from_shared(format!("http://{}", args.addr))?
            .connect()
            .await
            .context("connecting")?;
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
    let limit = args.requests;

    let mut handles = Vec::new();
    for i in 0..args.concurrency.max(1) {
        let mut client = clients[i % clients.len()].clone();
        let tokens = tokens.clone();
        let counter = counter.clone();
        let path = args.path.clone();
        let expect = args.expect.clone();
        handles.push(tokio::spawn(async move {
            let mut out = WorkerOut {
                hist: Histogram::new_with_bounds(1, 60_000_000, 3)?,
                outcomes: HashMap::new(),
                resp_bytes: 0,
            };
            loop {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if limit.is_some_and(|l| n >= l) {
                    break;
                }
                let req = match &*tokens {
                    Tokens::None => request(&path, None),
                    Tokens::List(l) => request(&path, l.get(n as usize % l.len()).map(|s| &**s)),
                    Tokens::Fresh { pem, kid } => request(&path, Some(&mint(pem, kid, n)?)),
                };
                let t0 = Instant::now();
                if end.is_some_and(|e| t0 >= e) {
                    break;
                }
                let res = client.check(req).await;
                let t1 = Instant::now();
                if t0 < measure_start || end.is_some_and(|e| t1 > e) {
                    continue;
                }
                let key = match res {
                    Err(s) => format!("grpc_error_{:?}", s.code()),
                    Ok(r) => {
                        let r = r.into_inner();
                        out.resp_bytes = prost::Message::encoded_len(&r);
                        let code = r.status.as_ref().map(|s| s.code).unwrap_or(-1);
                        match r.http_response {
                            Some(HttpResponse::OkResponse(_)) if code == 0 => "allow".to_string(),
                            _ => format!("deny{code}"),
                        }
                    }
                };
                let key = if key == expect {
                    key
                } else {
                    format!("unexpected_{key}")
                };
                *out.outcomes.entry(key).or_default() += 1;
                out.hist.record((t1 - t0).as_micros().max(1) as u64).ok();
            }
            anyhow::Ok(out)
        }));
    }

    // CPU of the targets over exactly the measured window.
    if let Some(e) = end {
        tokio::time::sleep_until(measure_start.into()).await;
        let cpu0: Vec<f64> = args
            .pid
            .iter()
            .map(|p| cpu_seconds(*p))
            .collect::<Result<_, _>>()?;
        tokio::time::sleep_until(e.into()).await;
        let cpu1: Vec<f64> = args
            .pid
            .iter()
            .map(|p| cpu_seconds(*p))
            .collect::<Result<_, _>>()?;
        let outs = join(handles).await?;
        report(&args, outs, args.duration, &cpu0, &cpu1)
    } else {
        let cpu0: Vec<f64> = args
            .pid
            .iter()
            .map(|p| cpu_seconds(*p))
            .collect::<Result<_, _>>()?;
        let outs = join(handles).await?;
        let secs = start.elapsed().as_secs_f64();
        let cpu1: Vec<f64> = args
            .pid
            .iter()
            .map(|p| cpu_seconds(*p))
            .collect::<Result<_, _>>()?;
        report(&args, outs, secs, &cpu0, &cpu1)
    }
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
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let resp_bytes = outs.iter().map(|o| o.resp_bytes).max().unwrap_or(0);
    for o in outs {
        hist.add(&o.hist)?;
        for (k, v) in o.outcomes {
            *outcomes.entry(k).or_default() += v;
        }
    }
    let n = hist.len();
    let cpu: Vec<f64> = cpu0.iter().zip(cpu1).map(|(a, b)| b - a).collect();
    let cpu_ms_per_1k: Vec<f64> = cpu
        .iter()
        .map(|c| if n > 0 { c * 1e6 / n as f64 } else { 0.0 })
        .collect();
    let out = serde_json::json!({
        "label": args.label,
        "requests": n,
        "seconds": secs,
        "rps": n as f64 / secs,
        "p50_us": hist.value_at_quantile(0.50),
        "p99_us": hist.value_at_quantile(0.99),
        "mean_us": hist.mean(),
        "outcomes": outcomes,
        "expected": args.expect,
        "response_bytes": resp_bytes,
        "cpu_s": cpu,
        "cpu_ms_per_1k": cpu_ms_per_1k,
    });
    println!("{out}");
    Ok(())
}

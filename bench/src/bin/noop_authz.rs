//! `noop-authz`: an allow-all Envoy ext_authz v3 gRPC server, the floor mesh-authz is compared to.
//!
//! It answers every Check with `OK` without reading the request, so its cost is tonic + HTTP/2 +
//! protobuf only. Two shapes:
//!
//! - default: tokio's default runtime (a worker per usable CPU) and an empty `OkHttpResponse`;
//! - `--workers 1 --set-header x-auth-subject=bench`: the shape an outside reviewer used as the
//!   floor — one tokio worker, an allow that sets one header. On a small machine shared with
//!   Envoy and the load generator, fewer threads contend less, and a response with a header is
//!   what an authorizer really sends back.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Allow-all ext_authz gRPC server (benchmark baseline)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9101")]
    addr: SocketAddr,
    /// Tokio worker threads (default: tokio's, one per usable CPU).
    #[arg(long)]
    workers: Option<usize>,
    /// A header every allow sets upstream, `NAME=VALUE` (overwriting a client's copy).
    #[arg(long, value_parser = parse_header)]
    set_header: Option<(String, String)>,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))?;
    if k.is_empty() {
        return Err("empty header name".into());
    }
    Ok((k.to_ascii_lowercase(), v.to_string()))
}

/// The allow-all service.
struct Noop {
    header: Option<(String, String)>,
}

#[tonic::async_trait]
impl Authorization for Noop {
    async fn check(
        &self,
        _request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let headers = match &self.header {
            None => Vec::new(),
            Some((key, value)) => vec![HeaderValueOption {
                header: Some(HeaderValue {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                }),
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                ..Default::default()
            }],
        };
        Ok(Response::new(CheckResponse {
            status: Some(rpc::Status {
                code: 0,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers,
                ..Default::default()
            })),
            ..Default::default()
        }))
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.workers {
        builder.worker_threads(n.max(1));
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        tonic::transport::Server::builder()
            .add_service(AuthorizationServer::new(Noop {
                header: args.set_header,
            }))
            .serve_with_shutdown(args.addr, shutdown)
            .await
    })?;
    Ok(())
}

//! `noop-authz`: an allow-all Envoy ext_authz v3 gRPC server, the floor mesh-authz is compared to.
//!
//! It answers every Check with `OK` and an empty `OkHttpResponse` without reading the request, so
//! its cost is tonic + HTTP/2 + protobuf only.

use std::net::SocketAddr;

use clap::Parser;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HttpResponse, OkHttpResponse,
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
}

/// The allow-all service.
struct Noop;

#[tonic::async_trait]
impl Authorization for Noop {
    async fn check(
        &self,
        _request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(CheckResponse {
            status: Some(rpc::Status {
                code: 0,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
            ..Default::default()
        }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(Noop))
        .serve_with_shutdown(args.addr, shutdown)
        .await?;
    Ok(())
}

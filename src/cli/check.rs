//! `mesh-authz check`: one CheckRequest to a running server, decision printed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::google::protobuf::value::Kind;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// `check` arguments.
#[derive(Args, Debug)]
pub(super) struct CheckArgs {
    /// The server's gRPC address.
    #[arg(long, default_value = "127.0.0.1:9001")]
    addr: String,
    /// Bearer token to send (as `authorization: Bearer …`).
    #[arg(long)]
    token: Option<String>,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Request method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request host.
    #[arg(long, default_value = "localhost")]
    host: String,
    /// Extra request header `name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Peer principal (as Envoy's `source.principal`), e.g. a SPIFFE ID.
    #[arg(long)]
    spiffe_id: Option<String>,
    /// Peer certificate PEM file (sent as `source.certificate`).
    #[arg(long)]
    peer_cert: Option<PathBuf>,
    /// Envoy per-route context extension `KEY=VALUE` (repeatable), as a route's
    /// `check_settings.context_extensions` sends it.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    context: Vec<String>,
    /// Print the reason, rule, headers and metadata.
    #[arg(long)]
    explain: bool,
    /// CA bundle to verify a TLS server.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate for mTLS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Client key for mTLS.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
}

pub(super) async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let channel = connect(&args).await?;
    let mut headers: HashMap<String, String> = HashMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?}: expected NAME: VALUE"))?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    if let Some(t) = &args.token {
        headers.insert("authorization".into(), format!("Bearer {t}"));
    }
    headers.insert(":authority".into(), args.host.clone());
    let mut context_extensions: HashMap<String, String> = HashMap::new();
    for c in &args.context {
        let (key, value) = c
            .split_once('=')
            .with_context(|| format!("--context {c:?}: expected KEY=VALUE"))?;
        context_extensions.insert(key.to_string(), value.to_string());
    }
    let certificate = match &args.peer_cert {
        Some(p) => {
            let pem =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        }
        None => String::new(),
    };
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                principal: args.spiffe_id.clone().unwrap_or_default(),
                certificate,
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: args.method.to_ascii_uppercase(),
                    path: args.path.clone(),
                    host: args.host.clone(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions,
            ..Default::default()
        }),
    };
    let response = AuthorizationClient::new(channel)
        .check(request)
        .await
        .context("Check RPC failed")?
        .into_inner();
    let code = response.status.as_ref().map(|s| s.code).unwrap_or(-1);
    let meta = response
        .dynamic_metadata
        .as_ref()
        .and_then(|m| m.fields.get("mesh_authz"))
        .map(describe)
        .unwrap_or_default();
    match response.http_response {
        Some(HttpResponse::OkResponse(ok)) if code == 0 => {
            println!("ALLOW");
            if args.explain {
                for h in &ok.headers {
                    if let Some(hv) = &h.header {
                        println!("  set header    {}: {}", hv.key, hv.value);
                    }
                }
                for name in &ok.headers_to_remove {
                    println!("  remove header {name}");
                }
                println!("  metadata      {meta}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(HttpResponse::DeniedResponse(d)) => {
            let status = d.status.map(|s| s.code).unwrap_or(403);
            println!("DENY {status} (grpc status {code})");
            if args.explain {
                println!("  why           {meta}");
                for h in &d.headers {
                    if let Some(hv) = &h.header {
                        println!("  header        {}: {}", hv.key, hv.value);
                    }
                }
                println!("  body          {}", d.body);
            }
            Ok(ExitCode::from(1))
        }
        _ => {
            println!("DENY (grpc status {code}, no HTTP response)");
            Ok(ExitCode::from(1))
        }
    }
}

async fn connect(args: &CheckArgs) -> anyhow::Result<Channel> {
    let tls = args.ca.is_some() || args.cert.is_some();
    let scheme = if tls { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{}", args.addr))
        .context("invalid --addr")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    if tls {
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &args.ca {
            config = config.ca_certificate(Certificate::from_pem(std::fs::read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
            config = config.identity(Identity::from_pem(
                std::fs::read(cert)?,
                std::fs::read(key)?,
            ));
        }
        endpoint = endpoint.tls_config(config)?;
    }
    endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", args.addr))
}

/// Renders our metadata struct compactly as `key=value` pairs (nested structs in braces).
fn describe(v: &envoy_types::pb::google::protobuf::Value) -> String {
    describe_at(v, true)
}

fn describe_at(v: &envoy_types::pb::google::protobuf::Value, top: bool) -> String {
    match &v.kind {
        Some(Kind::StructValue(s)) => {
            let mut fields: Vec<_> = s.fields.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            let inner = fields
                .iter()
                .map(|(k, v)| format!("{k}={}", describe_at(v, false)))
                .collect::<Vec<_>>()
                .join(" ");
            if top { inner } else { format!("{{{inner}}}") }
        }
        Some(Kind::StringValue(s)) => s.clone(),
        Some(Kind::NumberValue(n)) => n.to_string(),
        Some(Kind::BoolValue(b)) => b.to_string(),
        Some(Kind::ListValue(l)) => format!(
            "[{}]",
            l.values
                .iter()
                .map(|v| describe_at(v, false))
                .collect::<Vec<_>>()
                .join(",")
        ),
        _ => "null".into(),
    }
}

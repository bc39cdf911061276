//! The door `gateways/envoy-gateway-in-proxy/` as Envoy Gateway v1.9.0 translates it, run in a
//! real Envoy 1.40 with this module.
//!
//! The xDS is built here the way Envoy Gateway v1.9.0 builds it (envoyproxy/gateway tag v1.9.0,
//! commit 39763b1c07ec30a5526fe70434a2cfe4181de642):
//!  - `internal/gatewayapi/envoyextensionpolicy.go` `buildDynamicModules`: the policy's
//!    `dynamicModule[i].name` is looked up in the EnvoyProxy's `dynamicModules` registry; the IR
//!    name is `envoyextensionpolicy/<namespace>/<name>/dynamic-module/<i>`, `doNotClose` comes from
//!    the registry entry, `path` from its `source.local.path`, `config` is the policy's raw JSON;
//!  - `internal/xds/translator/dynamicmodule.go`: one HCM filter named
//!    `envoy.filters.http.dynamic_modules/<IR name>` (`perRouteFilterName` in `utils.go`) with
//!    `disabled: true`, a `DynamicModuleFilter` whose `dynamic_module_config` sets `do_not_close`,
//!    `load_globally` and `module.local.filename` = the path (no `name`; Envoy 1.40's
//!    `DynamicModuleConfig.module` takes precedence over `name` and needs no search path),
//!    `filter_name`, and `filter_config` = `StringValue(string(config.Raw))`; each covered route
//!    enables it with `typed_per_filter_config[<filter name>] = config.route.v3.FilterConfig` with
//!    an empty `config` (`patchRoute`, `enableFilterOnRoute`). Compare
//!    `internal/xds/translator/testdata/out/xds-ir/dynamicmodule.{listeners,routes}.yaml`;
//!  - the listener's TLS (ClientTrafficPolicy `tls.clientValidation`) and HCM defaults follow
//!    `testdata/out/xds-ir/http-route-https-mtls-*.listeners.yaml`, with files instead of SDS and an
//!    inline route table instead of RDS.

use super::authz::{Ca, Caller, jwks};
use super::*;
use mesh_authz::tools::issuer::{self, MintOptions};
use mesh_authz_core::decision::CHALLENGE_MISSING;
use mesh_authz_core::token::Algorithm;
use serde_json::{Value, json};

const DOOR: &str = "gateways/envoy-gateway-in-proxy";
const SPIFFE_IN: &str = "spiffe://cluster.local/ns/shop/sa/frontend";
const SPIFFE_FOREIGN: &str = "spiffe://evil.org/ns/shop/sa/frontend";

/// One manifest of the door, parsed.
fn manifest(file: &str) -> Value {
    let path = repo_root().join(DOOR).join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `v` as the API server hands a custom resource's `x-kubernetes-preserve-unknown-fields` value to
/// Envoy Gateway (`apiextensionsv1.JSON.Raw`): Go's encoding/json, compact, object keys sorted
/// bytewise. (Go also escapes `<`, `>` and `&`; the door's config has none, asserted below.)
fn go_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(v)).unwrap()
}

/// What Envoy Gateway derives from the EnvoyProxy and the EnvoyExtensionPolicy for the filter.
struct Translated {
    /// The HCM filter's name (and the `typed_per_filter_config` key).
    hcm_name: String,
    /// The policy's `filterName`.
    filter_name: String,
    /// The registry entry's `doNotClose`.
    do_not_close: bool,
    /// The registry entry's `source.local.path`, replaced by the module cargo built.
    module: PathBuf,
    /// `filter_config`'s StringValue.
    config_json: String,
}

fn translate(module: &Path, jwks_uri: &str) -> Translated {
    let proxy = manifest("envoy-proxy.yaml");
    let policy = manifest("envoy-extension-policy.yaml");
    assert_eq!(proxy["kind"], "EnvoyProxy");
    assert_eq!(policy["kind"], "EnvoyExtensionPolicy");
    let dms = policy["spec"]["dynamicModule"].as_array().unwrap();
    assert_eq!(dms.len(), 1, "the door has one dynamicModule entry");
    let dm = &dms[0];
    // The registry lookup: only modules the EnvoyProxy lists may be used.
    let entry = proxy["spec"]["dynamicModules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == dm["name"])
        .unwrap_or_else(|| panic!("{} is not in the EnvoyProxy registry", dm["name"]));
    assert_eq!(entry["source"]["type"], "Local");
    let door_path = entry["source"]["local"]["path"].as_str().unwrap();
    assert!(door_path.starts_with('/'), "{door_path}");
    assert!(
        door_path.ends_with("/libmesh_authz_envoy.so"),
        "{door_path}"
    );
    // Envoy Gateway defaults doNotClose and loadGlobally to false; the door sets doNotClose.
    let do_not_close = entry["doNotClose"].as_bool().unwrap_or(false);
    assert!(do_not_close, "the door must set doNotClose: true");
    assert!(!entry["loadGlobally"].as_bool().unwrap_or(false));
    assert_eq!(dm["terminalFilter"], Value::Null);

    // The inline config as shipped, except for ONE field: providers[0].jwks.uri, the shipped
    // https://auth.example.com/... address, is pointed at this test's JWKS server. The issuer,
    // audiences and every other key stay as the door ships them (tokens below are minted for that
    // issuer and audience).
    let mut config = dm["config"].clone();
    let uri = &mut config["providers"][0]["jwks"]["uri"];
    assert_eq!(
        uri.as_str(),
        Some("https://auth.example.com/.well-known/jwks.json"),
        "the door's JWKS source changed; update this test"
    );
    *uri = Value::String(jwks_uri.to_string());
    let config_json = go_json(&config);
    assert!(
        !config_json.contains(['<', '>', '&']),
        "Go would escape these: {config_json}"
    );

    let meta = &policy["metadata"];
    let ir_name = format!(
        "envoyextensionpolicy/{}/{}/dynamic-module/0",
        meta["namespace"].as_str().unwrap(),
        meta["name"].as_str().unwrap()
    );
    Translated {
        hcm_name: format!("envoy.filters.http.dynamic_modules/{ir_name}"),
        filter_name: dm["filterName"].as_str().unwrap().to_string(),
        do_not_close,
        module: module.to_path_buf(),
        config_json,
    }
}

struct EgPorts {
    admin: u16,
    https: u16,
    echo: u16,
}

/// The bootstrap: one HTTPS listener requiring client certificates, the HCM with the filter
/// disabled, the door's route (PathPrefix `/`, covered by the policy) enabling it, and one route
/// the policy does not cover (a route whose own route-level EnvoyExtensionPolicy replaced the
/// Gateway's, say: Envoy Gateway gives it no `typed_per_filter_config` entry for the filter).
/// The virtual host answers `envoy.test` (the test client's SNI and Host), standing in for
/// `httpbin.example.com`.
fn bootstrap(dir: &Path, ca: &Ca, t: &Translated, ports: &EgPorts) -> Value {
    let (cert, key) = ca.server();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    let file = |name: &str| json!({ "filename": dir.join(name) });
    let listener = "demo/eg-mesh-authz/https";
    let hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": format!("https-{}", ports.https),
        "common_http_protocol_options": { "headers_with_underscores_action": "REJECT_REQUEST" },
        "merge_slashes": true,
        "normalize_path": true,
        "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
        "server_header_transformation": "PASS_THROUGH",
        "use_remote_address": true,
        "http_filters": [
            {
                "name": t.hcm_name,
                "disabled": true,
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                    "dynamic_module_config": {
                        "do_not_close": t.do_not_close,
                        "module": { "local": { "filename": t.module } }
                    },
                    "filter_name": t.filter_name,
                    "filter_config": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": t.config_json
                    }
                }
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                    "suppress_envoy_headers": true
                }
            }
        ],
        "route_config": {
            "name": listener,
            "ignore_port_in_host_matching": true,
            "virtual_hosts": [{
                "name": format!("{listener}/httpbin_example_com"),
                "domains": [ENVOY_HOST],
                "routes": [
                    {
                        "name": "httproute/demo/uncovered/rule/0/match/0/httpbin_example_com",
                        "match": { "path_separated_prefix": "/uncovered" },
                        "route": { "cluster": "httproute/demo/httpbin-in-proxy/rule/0" }
                    },
                    {
                        "name": "httproute/demo/httpbin-in-proxy/rule/0/match/0/httpbin_example_com",
                        "match": { "prefix": "/" },
                        "route": { "cluster": "httproute/demo/httpbin-in-proxy/rule/0" },
                        "typed_per_filter_config": {
                            (t.hcm_name.clone()): {
                                "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                                "config": {}
                            }
                        }
                    }
                ]
            }]
        }
    });
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": ports.admin } } },
        "stats_flush_interval": "0.2s",
        "static_resources": {
            "listeners": [{
                "name": listener,
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": ports.https } },
                "per_connection_buffer_limit_bytes": 32768,
                "filter_chains": [{
                    "name": listener,
                    "filters": [{ "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm }],
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                            "common_tls_context": {
                                "alpn_protocols": ["h2", "http/1.1"],
                                "tls_certificates": [{
                                    "certificate_chain": file("server.pem"),
                                    "private_key": file("server.key")
                                }],
                                "validation_context": { "trusted_ca": file("ca.pem") }
                            },
                            "disable_stateful_session_resumption": true,
                            "disable_stateless_session_resumption": true,
                            "require_client_certificate": true
                        }
                    }
                }]
            }],
            "clusters": [{
                "name": "httproute/demo/httpbin-in-proxy/rule/0",
                "type": "STATIC",
                "connect_timeout": "2s",
                "load_assignment": {
                    "cluster_name": "httproute/demo/httpbin-in-proxy/rule/0",
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                        "socket_address": { "address": "127.0.0.1", "port_value": ports.echo }
                    } } }] }]
                }
            }]
        }
    })
}

/// A plain-HTTP server answering every request with `body` as JSON (the test JWKS).
fn serve_json(body: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = Arc::new(body);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let body = Arc::clone(&body);
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes());
            });
        }
    });
    port
}

/// Envoy on `file`, with no `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` and the working directory `dir`:
/// the module can only be found through `module.local.filename`.
fn envoy_command(dir: &Path, file: &Path) -> Command {
    let mut cmd = Command::new(envoy_bin());
    cmd.arg("-c")
        .arg(file)
        .arg("--disable-hot-restart")
        .env_remove("ENVOY_DYNAMIC_MODULES_SEARCH_PATH")
        .current_dir(dir);
    cmd
}

#[test]
fn the_envoy_gateway_translation_of_the_door_runs_in_envoy_1_40() {
    let dir = temp_dir("eg-door");
    let ca = Ca::new();
    // The door's provider has no `algorithms`: the default, RS256.
    let key = issuer::generate_key(Algorithm::RS256, 2048, "eg-k1").unwrap();
    let jwks_port = serve_json(jwks(&[&key]));
    let module = module_dir().join("libmesh_authz_envoy.so");
    assert!(module.is_absolute(), "{}", module.display());
    let t = translate(
        &module,
        &format!("http://127.0.0.1:{jwks_port}/.well-known/jwks.json"),
    );
    assert_eq!(
        t.hcm_name,
        "envoy.filters.http.dynamic_modules/envoyextensionpolicy/demo/mesh-authz/dynamic-module/0"
    );
    assert_eq!(t.filter_name, "mesh-authz");
    let ports = EgPorts {
        admin: free_port(),
        https: free_port(),
        echo: start_echo(),
    };
    let file = dir.join("envoy-gateway.json");
    let config = bootstrap(&dir, &ca, &t, &ports);
    std::fs::write(&file, serde_json::to_string_pretty(&config).unwrap()).unwrap();

    // `--mode validate` loads the module by its path and accepts the config.
    let out = envoy_command(&dir, &file)
        .args(["--mode", "validate"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("Deprecated field"), "{text}");

    // The real thing.
    let stderr = dir.join("envoy.stderr");
    let base_id =
        (std::process::id() % 100_000) * 100 + 50 + BASE_ID.fetch_add(1, Ordering::SeqCst);
    let child = envoy_command(&dir, &file)
        .args(["--concurrency", "1", "--log-level", "info"])
        .args(["--component-log-level", "dynamic_modules:debug"])
        .arg("--base-id")
        .arg(base_id.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("cannot start envoy");
    let mut envoy = Envoy { child, stderr };
    envoy.wait_ready(ports.admin);
    envoy.wait_log("mesh-authz: filter config loaded");

    let alice = Caller::new(&ca, &ca.client(SPIFFE_IN), ports.https);
    let foreign = Caller::new(&ca, &ca.client(SPIFFE_FOREIGN), ports.https);
    let mint = |sub: &str| {
        issuer::mint(
            &key.private_pem,
            &MintOptions {
                iss: "https://auth.example.com".into(),
                sub: sub.into(),
                aud: vec!["my-api".into()],
                ttl: Duration::from_secs(600),
                now: mesh_authz_core::clock::unix_now(),
                kid: Some(key.kid.clone()),
                scope: Some("read".into()),
                ..Default::default()
            },
        )
        .unwrap()
    };

    // Covered route, no token: the door's `api` rule answers 401 with the bare challenge.
    let r = alice.get("no-token", "/headers", None, &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE_MISSING));
    assert_eq!(r.body, r#"{"error":"unauthorized"}"#);
    // The door's anonymous rule on the same route.
    let r = alice.get("healthz", "/healthz", None, &[]);
    assert_eq!(r.status, 200, "{r:?}");

    // Covered route, valid token, client certificate in cluster.local: 200 once the keys are
    // fetched from the JWKS URI; the identity headers reach the upstream (a client's copies
    // replaced), the token does not.
    let token = mint("alice");
    let mut n = 0;
    let r = wait_for(15, "the JWKS to be fetched and the token accepted", || {
        n += 1;
        let r = alice.get(
            &format!("allow-{n}"),
            "/headers",
            Some(&token),
            &[
                ("x-auth-subject", "root"),
                ("x-auth-spiffe-id", "spiffe://x"),
            ],
        );
        assert!(matches!(r.status, 200 | 503), "{r:?}");
        (r.status == 200).then_some(r)
    });
    let up = r.upstream_headers();
    assert_eq!(one(&up, "x-auth-subject"), "alice");
    assert_eq!(one(&up, "x-auth-scope"), "read");
    assert_eq!(one(&up, "x-auth-spiffe-id"), SPIFFE_IN);
    assert!(!up.contains_key("authorization"), "token leaked: {up:#?}");

    // The same token from a certificate outside the trust domain: 403.
    let r = foreign.get("foreign", "/headers", Some(&token), &[]);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.body, r#"{"error":"forbidden"}"#);

    // A route the policy does not cover: the disabled filter never runs there, so no token is
    // needed and nothing is checked, set or removed (a garbage token and a client's identity
    // header pass through untouched).
    let r = alice.get(
        "uncovered",
        "/uncovered/x",
        Some("not.a.jwt"),
        &[("x-auth-subject", "root")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let up = r.upstream_headers();
    assert_eq!(one(&up, "authorization"), "Bearer not.a.jwt");
    assert_eq!(one(&up, "x-auth-subject"), "root");
    assert!(!up.contains_key("x-auth-spiffe-id"), "{up:#?}");

    assert!(envoy.child.try_wait().unwrap().is_none(), "envoy died");
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}

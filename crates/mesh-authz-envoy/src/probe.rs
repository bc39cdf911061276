//! The "probe" filter (`filter_name: probe`): a test instrument that exercises every binding of
//! [`crate::abi`] through [`crate::host`] so that `tests/envoy_module.rs` can observe each one
//! from outside a real Envoy. It makes no authorization decision and must not be deployed.
//!
//! `filter_config` must be a string starting with `probe:` (anything else is refused, which is
//! how the tests prove that a bad configuration stops Envoy). Per-route config
//! (`per_route_config_name: probe-route`) is `deny` or `tag:<text>`.
//!
//! On request headers it always: logs one info line; bumps a counter (plain and labelled), a
//! histogram and gauges; copies the connection attributes into `x-probe-*` request headers;
//! counts/joins `x-probe-dup`; removes `x-probe-remove`; sets `x-probe-added` and appends two
//! `x-probe-appended`; sets dynamic metadata `mesh_authz.probe: verdict` and filter state
//! `mesh_authz.probe.peer`. Then, driven by request headers:
//! * `x-probe-reply: <code>`: local reply with that status, body and details `probe_local_reply`;
//! * `x-probe-panic`: panics (the host layer must answer 503 and Envoy keep serving);
//! * `x-probe-defer: <ms>`: holds the request, a foreign thread commits the scheduler after
//!   `<ms>`, and `on_scheduled` adds `x-probe-resumed` and resumes it;
//! * `x-probe-late-commit: <ms>`: answers 202 at once and commits from a foreign thread after the
//!   stream is gone (must be a logged no-op).

use std::sync::Arc;
use std::time::Duration;

use crate::filter::{Filter, FilterConfig, HeadersStatus, RouteConfig};
use crate::host::{
    Attribute, ConfigContext, CounterId, GaugeId, HistogramId, LogLevel, RecordStats, Stream, log,
};

/// The `filter_name` that selects the probe.
pub(crate) const FILTER_NAME: &str = "probe";
/// The `per_route_config_name` of the probe's per-route config.
pub(crate) const ROUTE_CONFIG_NAME: &str = "probe-route";
/// The dynamic metadata namespace the probe writes.
const METADATA_NS: &str = "mesh_authz.probe";
/// The filter state key the probe writes.
const FILTER_STATE_KEY: &str = "mesh_authz.probe.peer";
/// The scheduler event that resumes a deferred request.
const EVENT_RESUME: u64 = 42;
/// The scheduler event committed after the stream is gone.
const EVENT_LATE: u64 = 43;

struct ProbeConfig {
    tag: String,
    requests: CounterId,
    decisions: CounterId,
    header_count: HistogramId,
    active: GaugeId,
    generation: GaugeId,
}

struct ProbeFactory(Arc<ProbeConfig>);

impl FilterConfig for ProbeFactory {
    fn new_filter(&self) -> Box<dyn Filter> {
        Box::new(ProbeFilter {
            config: Arc::clone(&self.0),
            counted_active: false,
        })
    }
}

/// Parses the probe's `filter_config` and defines its metrics.
pub(crate) fn new_config(
    config: &[u8],
    ctx: &mut ConfigContext<'_>,
) -> Result<Arc<dyn FilterConfig>, String> {
    let text = std::str::from_utf8(config).map_err(|_| "filter_config is not UTF-8".to_string())?;
    let Some(tag) = text.strip_prefix("probe:") else {
        return Err("probe filter_config must start with \"probe:\"".to_string());
    };
    let m = |e: crate::host::MetricsError| e.to_string();
    let config = ProbeConfig {
        tag: tag.to_string(),
        requests: ctx.define_counter("probe_requests", &[]).map_err(m)?,
        decisions: ctx
            .define_counter("probe_decisions", &["verdict"])
            .map_err(m)?,
        header_count: ctx.define_histogram("probe_header_count", &[]).map_err(m)?,
        active: ctx.define_gauge("probe_active", &[]).map_err(m)?,
        generation: ctx.define_gauge("probe_generation", &[]).map_err(m)?,
    };
    log(
        LogLevel::Info,
        &format!(
            "mesh-authz-envoy probe: config loaded (tag {:?})",
            config.tag
        ),
    );
    Ok(Arc::new(ProbeFactory(Arc::new(config))))
}

/// The probe's per-route behaviour.
#[derive(Debug, PartialEq, Eq)]
enum ProbeRoute {
    /// Answer 403 with details `probe_route_deny`.
    Deny,
    /// Tag the request with `x-probe-route`.
    Tag(String),
}

/// Parses the probe's per-route `filter_config`.
pub(crate) fn new_route_config(config: &[u8]) -> Result<RouteConfig, String> {
    let text =
        std::str::from_utf8(config).map_err(|_| "per-route config is not UTF-8".to_string())?;
    let route = if text == "deny" {
        ProbeRoute::Deny
    } else if let Some(tag) = text.strip_prefix("tag:") {
        ProbeRoute::Tag(tag.to_string())
    } else {
        return Err("probe per-route config must be \"deny\" or \"tag:<text>\"".to_string());
    };
    Ok(Arc::new(route))
}

struct ProbeFilter {
    config: Arc<ProbeConfig>,
    counted_active: bool,
}

fn text_or_dash(v: Option<Vec<u8>>) -> Vec<u8> {
    match v {
        Some(v) if !v.is_empty() => v,
        _ => b"-".to_vec(),
    }
}

fn num_or_dash(v: Option<u64>) -> Vec<u8> {
    v.map_or_else(|| b"-".to_vec(), |n| n.to_string().into_bytes())
}

fn parse_ms(v: &[u8]) -> u64 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
        .min(5_000)
}

impl ProbeFilter {
    fn metrics(&mut self, stream: &mut Stream<'_>) {
        let c = Arc::clone(&self.config);
        let header_count = stream.request_headers().len() as u64;
        let results = [
            stream.increment_counter(c.requests, &[], 1),
            stream.increment_counter(c.decisions, &["allow"], 1),
            stream.record_histogram(c.header_count, &[], header_count),
            stream.increment_gauge(c.active, &[], 1),
            stream.set_gauge(c.generation, &[], 7),
        ];
        self.counted_active = results[3].is_ok();
        for r in results {
            if let Err(e) = r {
                log(LogLevel::Error, &format!("mesh-authz-envoy probe: {e}"));
            }
        }
    }

    fn copy_attributes(stream: &mut Stream<'_>) {
        let strings = [
            (
                "x-probe-peer-uri",
                Attribute::ConnectionUriSanPeerCertificate,
            ),
            (
                "x-probe-peer-dns",
                Attribute::ConnectionDnsSanPeerCertificate,
            ),
            (
                "x-probe-peer-subject",
                Attribute::ConnectionSubjectPeerCertificate,
            ),
            (
                "x-probe-peer-sha256",
                Attribute::ConnectionSha256PeerCertificateDigest,
            ),
            ("x-probe-source-address", Attribute::SourceAddress),
            ("x-probe-destination-address", Attribute::DestinationAddress),
            ("x-probe-tls-version", Attribute::ConnectionTlsVersion),
            ("x-probe-sni", Attribute::ConnectionRequestedServerName),
            ("x-probe-request-id", Attribute::RequestId),
        ];
        for (header, attribute) in strings {
            let v = text_or_dash(stream.attribute_string(attribute));
            stream.set_request_header(header, &v);
        }
        let ints = [
            ("x-probe-source-port", Attribute::SourcePort),
            ("x-probe-destination-port", Attribute::DestinationPort),
            ("x-probe-connection-id", Attribute::ConnectionId),
        ];
        for (header, attribute) in ints {
            let v = num_or_dash(stream.attribute_int(attribute));
            stream.set_request_header(header, &v);
        }
        let mtls = match stream.attribute_bool(Attribute::ConnectionMtls) {
            Some(true) => "true",
            Some(false) => "false",
            None => "-",
        };
        stream.set_request_header("x-probe-mtls", mtls.as_bytes());
    }

    fn headers(stream: &mut Stream<'_>) {
        let (dup_count, dup_joined, len, entries_ok) = {
            let h = stream.request_headers();
            let all = h.get_all("x-probe-dup");
            let joined = all.join(&b"|"[..]);
            let entries = h.entries();
            let entries_ok = entries.len() == h.len()
                && entries
                    .iter()
                    .any(|(k, v)| *k == b":path" && Some(*v) == h.get(":path"));
            (h.count("x-probe-dup"), joined, h.len(), entries_ok)
        };
        stream.set_request_header("x-probe-dup-count", dup_count.to_string().as_bytes());
        stream.set_request_header("x-probe-dup-joined", &dup_joined);
        stream.set_request_header("x-probe-header-count", len.to_string().as_bytes());
        stream.set_request_header(
            "x-probe-entries-ok",
            if entries_ok { b"yes" } else { b"no" },
        );
        stream.remove_request_header("x-probe-remove");
        stream.set_request_header("x-probe-added", b"yes");
        stream.add_request_header("x-probe-appended", b"one");
        stream.add_request_header("x-probe-appended", b"two");
    }
}

impl Filter for ProbeFilter {
    fn on_request_headers(
        &mut self,
        stream: &mut Stream<'_>,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        let path = String::from_utf8_lossy(stream.request_headers().get(":path").unwrap_or(b"-"))
            .into_owned();
        log(
            LogLevel::Info,
            &format!(
                "mesh-authz-envoy probe: request seen (tag {:?}, path {path:?})",
                self.config.tag
            ),
        );
        self.metrics(stream);
        Self::copy_attributes(stream);
        Self::headers(stream);
        stream.set_request_header("x-probe-config-tag", self.config.tag.as_bytes());

        let mut verdict = "allow".to_string();
        match stream.route_config::<ProbeRoute>().as_deref() {
            Some(ProbeRoute::Deny) => {
                stream.set_dynamic_metadata(METADATA_NS, "verdict", "route-deny");
                stream.send_local_reply(403, &[], b"probe: denied by route\n", "probe_route_deny");
                return HeadersStatus::StopIteration;
            }
            Some(ProbeRoute::Tag(tag)) => {
                stream.set_request_header("x-probe-route", tag.as_bytes());
                verdict = format!("allow-{tag}");
            }
            None => {
                stream.set_request_header("x-probe-route", b"-");
            }
        }
        stream.set_dynamic_metadata(METADATA_NS, "verdict", &verdict);
        let peer =
            text_or_dash(stream.attribute_string(Attribute::ConnectionUriSanPeerCertificate));
        if !stream.set_filter_state(FILTER_STATE_KEY, &peer) {
            log(
                LogLevel::Warn,
                "mesh-authz-envoy probe: set_filter_state refused",
            );
        }

        let (reply, panic, defer, late) = {
            let h = stream.request_headers();
            (
                h.get("x-probe-reply").map(<[u8]>::to_vec),
                h.get("x-probe-panic").is_some(),
                h.get("x-probe-defer").map(parse_ms),
                h.get("x-probe-late-commit").map(parse_ms),
            )
        };
        if panic {
            #[allow(clippy::panic)] // the probe's whole point: prove the host layer's panic guard
            {
                panic!("probe: deliberate panic requested by x-probe-panic");
            }
        }
        if let Some(code) = reply {
            let code = std::str::from_utf8(&code)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .filter(|c| (200..600).contains(c))
                .unwrap_or(400);
            stream.send_local_reply(
                code,
                &[("x-probe-local", b"yes")],
                b"probe local reply\n",
                "probe_local_reply",
            );
            return HeadersStatus::StopIteration;
        }
        if let Some(ms) = defer {
            let Some(scheduler) = stream.scheduler() else {
                stream.send_local_reply(500, &[], b"probe: no scheduler\n", "probe_no_scheduler");
                return HeadersStatus::StopIteration;
            };
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(ms));
                if !scheduler.commit(EVENT_RESUME) {
                    log(
                        LogLevel::Warn,
                        "mesh-authz-envoy probe: resume commit found the stream gone",
                    );
                }
            });
            return HeadersStatus::StopAllIterationAndBuffer;
        }
        if let Some(ms) = late {
            let Some(scheduler) = stream.scheduler() else {
                stream.send_local_reply(500, &[], b"probe: no scheduler\n", "probe_no_scheduler");
                return HeadersStatus::StopIteration;
            };
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(ms));
                let delivered = scheduler.commit(EVENT_LATE);
                log(
                    LogLevel::Info,
                    &format!("mesh-authz-envoy probe: late commit delivered={delivered}"),
                );
            });
            stream.send_local_reply(
                202,
                &[],
                b"probe: answered before the commit\n",
                "probe_late_commit",
            );
            return HeadersStatus::StopIteration;
        }
        HeadersStatus::Continue
    }

    fn on_scheduled(&mut self, stream: &mut Stream<'_>, event_id: u64) {
        if event_id == EVENT_RESUME {
            stream.set_request_header("x-probe-resumed", event_id.to_string().as_bytes());
            stream.continue_decoding();
        } else {
            log(
                LogLevel::Warn,
                &format!("mesh-authz-envoy probe: unexpected scheduled event {event_id}"),
            );
        }
    }

    fn on_response_headers(
        &mut self,
        stream: &mut Stream<'_>,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        let status = stream
            .response_headers()
            .get(":status")
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| b"-".to_vec());
        stream.set_response_header("x-probe-response-status-seen", &status);
        let state = text_or_dash(stream.filter_state(FILTER_STATE_KEY));
        stream.set_response_header("x-probe-filter-state", &state);
        HeadersStatus::Continue
    }

    fn on_stream_complete(&mut self, stream: &mut Stream<'_>) {
        if self.counted_active {
            let active = self.config.active;
            if let Err(e) = stream.decrement_gauge(active, &[], 1) {
                log(LogLevel::Error, &format!("mesh-authz-envoy probe: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_config_parses_deny_and_tag_and_refuses_the_rest() {
        let deny = new_route_config(b"deny").map_err(|e| e.to_string());
        assert!(matches!(
            deny.as_ref().map(|r| r.downcast_ref::<ProbeRoute>()),
            Ok(Some(ProbeRoute::Deny))
        ));
        let tag = new_route_config(b"tag:beta").map_err(|e| e.to_string());
        assert!(matches!(
            tag.as_ref().map(|r| r.downcast_ref::<ProbeRoute>()),
            Ok(Some(ProbeRoute::Tag(t))) if t == "beta"
        ));
        assert!(new_route_config(b"nonsense").is_err());
        assert!(new_route_config(&[0xff]).is_err());
    }

    #[test]
    fn parse_ms_is_bounded() {
        assert_eq!(parse_ms(b"250"), 250);
        assert_eq!(parse_ms(b"x"), 0);
        assert_eq!(parse_ms(b"999999"), 5_000);
    }
}

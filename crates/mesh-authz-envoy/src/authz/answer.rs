//! A decision as Envoy's answer, the same one the ext_authz adapters give
//! ([`mesh_authz_core::check::answer`] says what it is):
//!
//! * allow: each header to set replaces every client copy (`set_request_header`), each header to
//!   remove (every injectable name without a value, and `authorization` unless the provider
//!   forwards the token) is stripped; the allow's facts go to dynamic metadata;
//! * deny: a local reply with the decision's status (401, 403, 503), `content-type`, the
//!   `www-authenticate` challenge when the decision has one, the generic JSON body, and
//!   `%RESPONSE_CODE_DETAILS%` = `mesh_authz_denied{<reason>}`; the reason and rule go to dynamic
//!   metadata first, so the access log sees them.
//!
//! Dynamic metadata goes under namespace `mesh_authz`. The 1.40 ABI sets string values only:
//! strings are set as they are, other values (claims, the dry-run object) as their JSON text.

use mesh_authz_core::check::answer::HeaderMutation;
use mesh_authz_core::decision::{Decision, METADATA_NAMESPACE};
use serde_json::{Map, Value};

use super::request::Carried;
use crate::host::Stream;

/// `%RESPONSE_CODE_DETAILS%` of a denial: `mesh_authz_denied{reason}`, reason being the
/// decision's fixed reason label (no spaces).
pub(crate) fn details(reason: &str) -> String {
    format!("mesh_authz_denied{{{reason}}}")
}

/// Applies `decision` to the stream. Returns `true` when the request may go on (an allow; the
/// caller continues it) and `false` when a local reply was sent. `carried`, when the answer comes
/// in the hook that read the request, says which written headers the request carries: one it does
/// not is added rather than replaced, and not removed at all (each an Envoy call saved).
pub(crate) fn apply(
    stream: &mut Stream<'_>,
    decision: &Decision,
    carried: Option<&Carried<'_>>,
) -> bool {
    let may_carry = |name: &str| carried.is_none_or(|c| c.may_carry(name));
    match decision {
        Decision::Allow(allow) => {
            for mutation in allow.header_mutations() {
                match mutation {
                    HeaderMutation::Set(name, value) if may_carry(name) => {
                        stream.set_request_header(name, value.as_bytes());
                    }
                    HeaderMutation::Set(name, value) => {
                        stream.add_request_header(name, value.as_bytes());
                    }
                    HeaderMutation::Remove(name) if may_carry(name) => {
                        stream.remove_request_header(name);
                    }
                    HeaderMutation::Remove(_) => {}
                }
            }
            set_metadata(stream, allow.metadata_facts());
            true
        }
        Decision::Deny(deny) => {
            set_metadata(stream, deny.metadata_facts());
            let headers: Vec<(&str, &[u8])> = deny
                .response_headers()
                .into_iter()
                .map(|(k, v)| (k, v.as_bytes()))
                .collect();
            stream.send_local_reply(
                u32::from(deny.status.code()),
                &headers,
                deny.status.body().as_bytes(),
                &details(deny.reason),
            );
            false
        }
    }
}

fn set_metadata(stream: &mut Stream<'_>, facts: Map<String, Value>) {
    for (key, value) in facts {
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        stream.set_dynamic_metadata(METADATA_NAMESPACE, &key, &text);
    }
}

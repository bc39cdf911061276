//! Transport adapters: Envoy ext_authz over gRPC, and the HTTP listener.

//! `x-forwarded-client-cert` parsing (Envoy's grammar).

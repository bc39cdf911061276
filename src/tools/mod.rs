//! Operator tooling: what the CLI offers besides serving (keys and tokens for tests and dev).

pub mod issuer;

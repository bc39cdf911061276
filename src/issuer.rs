//! Issuer tools for operators and tests: key generation (`keygen`) and token minting (`mint`).

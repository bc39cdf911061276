//! The peer certificate Envoy forwards (`include_peer_certificate`): URL-encoded PEM.

# syntax=docker/dockerfile:1
# mesh-authz container images. Two targets:
#   docker build -t ghcr.io/mesh-authz/mesh-authz:0.1.0 .
#       the ext_authz server: a static-ish Rust binary on distroless (glibc, CA certificates,
#       nonroot). The default target (the last stage); the Helm chart's default image is
#       ghcr.io/mesh-authz/mesh-authz:<appVersion>.
#   docker build --target envoy-with-mesh-authz -t ghcr.io/mesh-authz/envoy-with-mesh-authz:0.1.0 .
#       Envoy 1.40.0 with the in-proxy module (libmesh_authz_envoy.so, docs/in-proxy.md) at
#       /usr/local/lib/envoy/: the proxy image of gateways/envoy-gateway-in-proxy/.

ARG RUST_VERSION=1
FROM rust:${RUST_VERSION}-bookworm AS source
WORKDIR /src
# cmake, clang: aws-lc-rs (the one crypto provider) builds aws-lc from source.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang \
 && rm -rf /var/lib/apt/lists/*
COPY . .

# The ext_authz server.
FROM source AS builder
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin mesh-authz \
 && cp target/release/mesh-authz /mesh-authz

# The Envoy dynamic module (built for Envoy 1.40.0, dynamic-module ABI v0.2.0 only).
FROM source AS module-builder
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p mesh-authz-envoy \
 && cp target/release/libmesh_authz_envoy.so /libmesh_authz_envoy.so

# Envoy 1.40.0 (the release the module is built for; Ubuntu-based: glibc and libgcc_s, which the
# module needs) with the module. Envoy Gateway's EnvoyProxy names the absolute path
# (dynamicModules[].source.local.path); a bootstrap that names the module (envoy/dynamic-module.yaml:
# dynamic_module_config.name: mesh_authz_envoy) finds it through the search path.
FROM envoyproxy/envoy:v1.40.0 AS envoy-with-mesh-authz
COPY --from=module-builder --chown=0:0 --chmod=0755 /libmesh_authz_envoy.so /usr/local/lib/envoy/libmesh_authz_envoy.so
ENV ENVOY_DYNAMIC_MODULES_SEARCH_PATH=/usr/local/lib/envoy
# Envoy Gateway runs its proxies as 65532 (and sets its own command and arguments).
USER 65532:65532

# The ext_authz server image: the default target, so it stays the last stage.
# glibc + libgcc + CA certificates (for JWKS and discovery over HTTPS), no shell, user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /mesh-authz /mesh-authz
USER 65532:65532
EXPOSE 9001 9002
ENTRYPOINT ["/mesh-authz"]
CMD ["serve", "--config", "/etc/mesh-authz/config/config.yaml"]

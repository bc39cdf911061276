# syntax=docker/dockerfile:1
# mesh-authz container image: a static-ish Rust binary on distroless (glibc, CA certificates, nonroot).
#   docker build -t ghcr.io/mesh-authz/mesh-authz:0.1.0 .
# The Helm chart's default image is ghcr.io/mesh-authz/mesh-authz:<appVersion>.

ARG RUST_VERSION=1
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# cmake, clang: aws-lc-rs (the one crypto provider) builds aws-lc from source.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin mesh-authz \
 && cp target/release/mesh-authz /mesh-authz

# glibc + libgcc + CA certificates (for JWKS and discovery over HTTPS), no shell, user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /mesh-authz /mesh-authz
USER 65532:65532
EXPOSE 9001 9002
ENTRYPOINT ["/mesh-authz"]
CMD ["serve", "--config", "/etc/mesh-authz/config/config.yaml"]

# syntax=docker/dockerfile:1
#
# Stallwatch container images, one multi-stage Dockerfile with three targets:
#
#   docker build --target operator   -t REGISTRY/stallwatch/operator:0.1.0 .
#   docker build --target stallwatch -t REGISTRY/stallwatch/stallwatch:0.1.0 .
#   docker build --target stallwatch-debug -t REGISTRY/stallwatch/stallwatch:0.1.0-debug .
#
# "operator" runs transit-operator; "stallwatch" holds transit-broadcaster and transit-sidecar
# (and transit-operator, so one image has every binary): the operator runs
# `transit-broadcaster serve` and `transit-sidecar run` from it as the two containers of each
# TransitStream pod. Runtime images are distroless (glibc, CA certificates, no shell, no
# package manager) and run as the non-root user 65532. "stallwatch-debug" is the same
# binaries on debian-slim with gdb, only for TransitStreams with `dumps.processDump: Full` (the
# sidecar runs `gcore`, a gdb script); name it in the TransitStream's `spec.image`.
# charts/validate.py lints this file (there is no Docker engine in CI).

# The toolchain the workspace is developed and tested with (rust-version in Cargo.toml is the floor).
ARG RUST_VERSION=1.95
ARG DEBIAN_SUITE=bookworm

# ---- builder: the three release binaries --------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_SUITE} AS builder
WORKDIR /src
# The generated gRPC code is checked in, so the build needs no protoc.
COPY Cargo.toml Cargo.lock ./
COPY core ./core
COPY crds ./crds
COPY broadcaster ./broadcaster
COPY sidecar ./sidecar
COPY operator ./operator
COPY tests ./tests
# Some crates embed docs/ pages (include_str!) to keep documentation and code in step.
COPY docs ./docs
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      --bin transit-broadcaster --bin transit-operator \
 # The sidecar's footprint is mostly code pages: build it small (see sidecar/README.md).
 && cargo build --profile small --locked --bin transit-sidecar \
 && mkdir -p /out \
 && cp target/release/transit-broadcaster target/small/transit-sidecar \
       target/release/transit-operator /out/

# ---- operator ------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS operator
LABEL org.opencontainers.image.title="stallwatch-operator" \
      org.opencontainers.image.description="Reconciles TransitStreams and remediates stalled broadcasters" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/transit-operator /usr/local/bin/transit-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/transit-operator"]
CMD ["run"]

# ---- stallwatch: broadcaster + sidecar -----------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS stallwatch
LABEL org.opencontainers.image.title="stallwatch" \
      org.opencontainers.image.description="transit-broadcaster and transit-sidecar" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/transit-broadcaster /usr/local/bin/transit-broadcaster
COPY --from=builder /out/transit-sidecar /usr/local/bin/transit-sidecar
COPY --from=builder /out/transit-operator /usr/local/bin/transit-operator
USER 65532:65532
EXPOSE 50051 9090 8080 8081
ENTRYPOINT ["/usr/local/bin/transit-broadcaster"]
CMD ["serve"]

# ---- stallwatch-debug: stallwatch + gdb, for full process dumps (gcore) ---------------------
# Only for `dumps.processDump: Full`: gcore is a shell script around gdb, so this image has a
# shell and a package set; the default images have neither.
FROM debian:${DEBIAN_SUITE}-slim AS stallwatch-debug
# Versions come from the pinned Debian suite; pinning them too would refuse its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gdb ca-certificates \
 && rm -rf /var/lib/apt/lists/*
LABEL org.opencontainers.image.title="stallwatch-debug" \
      org.opencontainers.image.description="transit-broadcaster and transit-sidecar with gdb for full process dumps" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/transit-broadcaster /usr/local/bin/transit-broadcaster
COPY --from=builder /out/transit-sidecar /usr/local/bin/transit-sidecar
COPY --from=builder /out/transit-operator /usr/local/bin/transit-operator
USER 65532:65532
EXPOSE 50051 9090 8080 8081
ENTRYPOINT ["/usr/local/bin/transit-broadcaster"]
CMD ["serve"]

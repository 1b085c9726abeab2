# syntax=docker/dockerfile:1
# Container image of kafka-slo-exporter: a Rust build stage and a small Debian runtime stage
# holding only the binary, the default compliance policy and a non-root user.
#
#   docker build -t kafka-slo-exporter:0.1.0 --build-arg REVISION="$(git rev-parse --short HEAD)" .
#   docker run --rm -p 10077:10077 -v "$PWD/examples:/etc/kafka-slo-exporter:ro" kafka-slo-exporter:0.1.0
#
# See deploy/README.md. Base images are pinned by tag; pin them by digest for bit-for-bit
# rebuilds. Cargo.lock pins every crate (`--locked` fails instead of resolving anew).

ARG RUST_IMAGE=rust:1.95.0-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# What the bundled librdkafka build needs (the same list as scripts/setup.sh; libsasl2-dev for
# Kerberos).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev libcurl4-openssl-dev zlib1g-dev libsasl2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# The workspace's other member (the test harness) is only read, not built.
COPY tests/harness/Cargo.toml tests/harness/Cargo.toml
COPY tests/harness/src tests/harness/src
COPY policies policies
COPY src src
ARG REVISION=unknown
ENV KSE_GIT_REVISION=${REVISION}
# The caches keep crates and compiled dependencies between builds; the binary is copied out of
# the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin kafka-slo-exporter \
 && install -D -m 0755 target/release/kafka-slo-exporter /out/kafka-slo-exporter

FROM ${RUNTIME_IMAGE}
# libssl3, libcurl4 (OAUTHBEARER OIDC token requests), libsasl2-2 (Kerberos) and zlib1g are the
# binary's only shared libraries besides libc and libgcc (tests/deploy_docker.rs checks this
# against the built binary); ca-certificates for TLS to Kafka and the Schema Registry. Kerberos
# (SASL GSSAPI) also needs Cyrus SASL's GSSAPI plugin, which librdkafka loads at run time, and
# kinit, which it runs to get tickets from the keytab (docs/security.md).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcurl4 libssl3 zlib1g \
      libsasl2-2 libsasl2-modules-gssapi-mit krb5-user \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 kse \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kse
COPY --from=build /out/kafka-slo-exporter /usr/local/bin/kafka-slo-exporter
COPY policies/adr-0007.yml /etc/kafka-slo-exporter/policies/adr-0007.yml
USER 10001:10001
WORKDIR /etc/kafka-slo-exporter
EXPOSE 10077
# The binary asks its own /-/healthy: the image needs no HTTP client. It uses the default
# --web.listen-address; pass the same flag to the check when the port is changed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["/usr/local/bin/kafka-slo-exporter", "--healthcheck"]
ENTRYPOINT ["/usr/local/bin/kafka-slo-exporter"]
CMD ["--config.file=/etc/kafka-slo-exporter/kafka-slo-exporter.yml"]

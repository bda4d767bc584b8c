# syntax=docker/dockerfile:1
#
# One image with every artisync binary: publisher, traffic-manager,
# gateway-node and the artisync CLI. compose.yaml picks the binary with each
# service's `command`. No secret is baked in: configuration comes from the
# mounted config/*.toml and the environment (.env).
#
#   docker build -t artisync .

# ---- build -----------------------------------------------------------------
FROM rust:1-slim-bookworm AS builder
WORKDIR /src
# The whole workspace (.dockerignore keeps target/, .git and .env out).
COPY . .
# --locked: exactly the versions in Cargo.lock. The caches keep the
# registry and the build between image builds; the binaries are copied out
# of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p artisync-publisher -p artisync-traffic-manager \
        -p artisync-gateway -p artisync-cli --bins \
 && mkdir -p /out \
 && cp target/release/publisher target/release/traffic-manager \
       target/release/gateway-node target/release/artisync /out/

# ---- runtime ---------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: https endpoints and amqps/TLS URLs; curl: the compose
# healthchecks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
# An unprivileged user. The gateway's cache directory belongs to it, so a
# named volume mounted there (compose.yaml) starts out writable by it.
RUN groupadd --system --gid 10001 artisync \
 && useradd --system --uid 10001 --gid artisync --no-create-home \
        --home-dir /var/lib/artisync --shell /usr/sbin/nologin artisync \
 && mkdir -p /etc/artisync /var/lib/artisync/gateway \
 && chown -R artisync:artisync /var/lib/artisync
COPY --from=builder /out/ /usr/local/bin/
COPY config/ /usr/share/artisync/config/
USER artisync:artisync
WORKDIR /var/lib/artisync
ENV RUST_LOG=info
# publisher, traffic manager, gateway traffic, gateway admin.
EXPOSE 9400 9500 8280 9600
STOPSIGNAL SIGTERM
CMD ["artisync", "--help"]

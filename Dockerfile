# The switchyard gateway: built with the Rust toolchain, run on a slim Debian with CA
# certificates (upstream TLS) and curl (container health checks) added.
#
#   docker build -t switchyard:local .
#   docker run --rm -p 8080:8080 -p 127.0.0.1:9901:9901 switchyard:local
#   docker run --rm -v $PWD/my.toml:/etc/switchyard/switchyard.toml:ro -p 8080:8080 switchyard:local
#
# The default configuration is the embedded one listening on 0.0.0.0 (a container's
# loopback is unreachable from outside it); mount your own over it.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# cmake builds zlib-ng (pingora-core's compression).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin switchyard \
 && install -m 0755 target/release/switchyard /usr/local/bin/switchyard \
 && switchyard default-config | sed 's/"127\.0\.0\.1:/"0.0.0.0:/' > /switchyard.toml \
 && switchyard check --config /switchyard.toml

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 switchyard \
 && useradd --system --uid 10001 --gid switchyard --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin switchyard
COPY --from=build /usr/local/bin/switchyard /usr/local/bin/switchyard
COPY --from=build /switchyard.toml /etc/switchyard/switchyard.toml
# A fixed numeric user, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# 8080: the proxy (OpenAI and Anthropic APIs). 9901: health, /metrics and the admin API.
EXPOSE 8080 9901
# SIGTERM drains: in-flight requests get [server] shutdown_grace_secs to finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["switchyard"]
CMD ["--config", "/etc/switchyard/switchyard.toml"]

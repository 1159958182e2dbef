# Multi-stage build: a release binary on a small, non-root runtime image.
# Both base images are pinned to exact tags (Rust 1.95.0 on Debian 12; a dated
# Debian 12 slim snapshot): bump them deliberately, together with the README.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src

# 1. The dependencies alone, in a layer of their own that stays cached until
#    Cargo.toml or Cargo.lock change: the manifest with placeholder sources
#    (Cargo.toml declares a library, the binary and five benchmarks, so each
#    must exist) builds every dependency, then the placeholders go.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && for b in hot_path reload handler instructions churn; do echo 'fn main() {}' > "benches/$b.rs"; done \
 && cargo build --release --locked --bin rolegate \
 && rm -rf src benches

# 2. The real sources: only rolegate itself compiles. `touch`: COPY keeps the
#    files' own times, which may be older than the placeholder build's output,
#    and cargo would then take the placeholder binary as up to date.
COPY src ./src
COPY benches ./benches
# Embedded by `rolegate demo`.
COPY routes.toml ./
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin rolegate \
 && ./target/release/rolegate --version

FROM debian:bookworm-20260713-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home rolegate
COPY --from=build /src/target/release/rolegate /usr/local/bin/rolegate
# Mount the route table (and the key files it names) here, e.g. from a ConfigMap.
WORKDIR /etc/rolegate
ENV ROLEGATE_CONFIG=/etc/rolegate/routes.toml
USER 10001
# Gateway and admin ports: set `listen = "0.0.0.0:8080"` and `admin_listen = "0.0.0.0:9901"`
# in routes.toml, or `run --listen 0.0.0.0:8080` (the health check needs admin_listen).
EXPOSE 8080 9901
# `rolegate health` probes the admin /readyz (exit 0 on 200, else 1): the image has no curl.
# With admin_listen on another port, override it: `--health-cmd "rolegate health --url http://127.0.0.1:PORT/readyz"`.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/rolegate", "health", "--url", "http://127.0.0.1:9901/readyz"]
ENTRYPOINT ["/usr/local/bin/rolegate"]
CMD ["run"]

# Multi-stage build: a static-ish release binary on a small, non-root runtime image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY routes.toml ./
# Cargo.toml declares the benchmarks, so their sources must be present to build at all.
COPY benches ./benches
RUN cargo build --release --locked --bin rolegate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home rolegate
COPY --from=build /src/target/release/rolegate /usr/local/bin/rolegate
# Mount the route table (and the key files it names) here, e.g. from a ConfigMap.
WORKDIR /etc/rolegate
ENV ROLEGATE_CONFIG=/etc/rolegate/routes.toml
USER 10001
# Gateway and admin ports (set `listen = "0.0.0.0:8080"`, `admin_listen = "0.0.0.0:9901"` in routes.toml).
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/rolegate"]
CMD ["run"]

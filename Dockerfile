# syntax=docker/dockerfile:1
# The KAI-Fusion backend image: kai-api, kai-worker and kai-scheduler in one slim, non-root
# runtime image with no shell. The container's command chooses the process (docker-compose.yml
# and the Helm chart set it); `<binary> healthcheck` asks a running process whether it is ready.
#
#   docker build -t kai-fusion:local .

ARG RUST_VERSION=1.95

# cargo-chef splits the build so the dependency layer is rebuilt only when a manifest or the
# lock file changes, not on every source edit.
FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
      --package kai-api --package kai-worker --package kai-scheduler
COPY . .
RUN cargo build --release --locked --bins \
      --package kai-api --package kai-worker --package kai-scheduler \
 && install -d /out \
 && install -m 0755 target/release/kai-api target/release/kai-worker target/release/kai-scheduler /out/

# glibc, libgcc and CA certificates, nothing else: the binaries link only those (TLS is rustls).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kai-fusion" \
      org.opencontainers.image.description="KAI-Fusion workflow backend: kai-api, kai-worker, kai-scheduler" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/kai-fusion/kai-fusion-rs"
COPY --from=builder /out/ /usr/local/bin/
# The distroless "nonroot" user; the chart's securityContext runs as the same id.
USER 65532:65532
# Production refuses to start without real secrets; docker-compose.yml opts into development.
ENV KAI_ENV=production
# kai-api, kai-worker and kai-scheduler listen on these by default.
EXPOSE 8001 9101 9102
CMD ["/usr/local/bin/kai-api"]

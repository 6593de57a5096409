#!/usr/bin/env bash
# Runs every check and test against real PostgreSQL (pgvector), NATS JetStream and Redis,
# installing and starting them first when needed. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-services.sh

# Databases left behind by interrupted test runs.
psql -h 127.0.0.1 -U postgres -d postgres -tAc \
  "SELECT datname FROM pg_database WHERE datname LIKE 'kai\_test\_%'" 2>/dev/null |
  while read -r db; do
    [ -n "$db" ] && psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true
  done

# Streams left behind by interrupted test runs (each reserves JetStream memory).
cargo run --quiet --locked -p kai-common --features testing --example purge-test-streams

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# Licenses, bans and sources of every dependency (deny.toml). Advisories need the RustSec
# database from GitHub, which these machines cannot reach: run `cargo deny check advisories`
# where the network allows (docs/SECURITY.md).
cargo deny --version 2>/dev/null | grep -q '^cargo-deny 0.20.2$' ||
  cargo install --locked --quiet cargo-deny@0.20.2
cargo deny --locked check licenses bans sources

# The Dockerfile, compose file and Helm chart, offline (installs Helm and the validators first;
# the Rust tests below render the chart with the same Helm).
bash scripts/check-deploy.sh
cargo nextest run --workspace --locked --no-fail-fast

# The API against its own OpenAPI document (schemathesis, every operation, all checks, fixed
# seed, bounded); fails on any failure. Installs schemathesis into the tools directory first.
KAI_CONTRACT_MAX_TIME=600 bash scripts/api-contract.sh 5

# The fault-injection suite, short: a private cluster under load through a worker kill loop, NATS,
# PostgreSQL and Redis restarts and a scheduler leader kill; fails on any lost or duplicated run.
bash scripts/fault-suite.sh --short

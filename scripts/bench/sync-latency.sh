#!/usr/bin/env bash
# Synchronous webhook latency of one build, as docs/BENCHMARKS.md reports it: one API and one
# worker on a fresh database and a private NATS server; `kai-loadtest webhook --sync` open loop
# at RATE calls/s for 15 s, then closed loop from 16 connections for 10 s. Each load audits
# every accepted call (ran once, none missing).
#
#   scripts/bench/sync-latency.sh BIN_DIR TAG [LOADTEST] [RATE]   # e.g. target/release new
#
# LOADTEST is the kai-loadtest binary (default BIN_DIR/kai-loadtest), so an older build's API and
# worker are measured with the same tool. Reports go to /tmp/kai-bench/TAG-sync-*.json; one
# summary line per load is printed.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${1:?the directory of kai-api, kai-worker and kai-loadtest}
TAG=${2:?a name for this run}
LOADTEST=${3:-$BIN/kai-loadtest}
RATE=${4:-1000}
source scripts/bench/lib.sh
rm -f "$OUT/$TAG"-sync-*
bench_setup "sync_$TAG" 20900
export KAI_WORKER_ADDR=127.0.0.1:$((PORT + 1))
bench_private_nats
bench_start "$OUT/$TAG-sync-api.log" "$BIN/kai-api"
bench_wait_api
bench_start "$OUT/$TAG-sync-worker.log" "$BIN/kai-worker"
sleep 2

load() {  # NAME ARGS...
  local name=$1; shift
  "$LOADTEST" webhook --api "$API" --sync "$@" --audit-timeout 120s --quiet \
    --json "$OUT/$TAG-sync-$name.json" >"$OUT/$TAG-sync-$name.log" 2>&1 \
    || { echo "$TAG $name: the load test failed (see $OUT/$TAG-sync-$name.log)" >&2; exit 1; }
  python3 - "$OUT/$TAG-sync-$name.json" "$TAG" "$name" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
l, e, a = r["latency"], r["end_to_end"] or {}, r["audit"] or {}
print(f'{sys.argv[2]} {sys.argv[3]}: {r["accepted_per_s"]:.0f}/s answered; answer p50 {l["p50_ms"]:.1f} '
      f'p90 {l["p90_ms"]:.1f} p99 {l["p99_ms"]:.1f} p99.9 {l["p999_ms"]:.1f} ms; received->finished '
      f'p50 {e.get("p50_ms", 0):.1f} p99 {e.get("p99_ms", 0):.1f} ms; audit: {a.get("accepted", 0)} accepted, '
      f'{a.get("missing", "?")} missing, {a.get("duplicated", "?")} duplicated')
EOF
}
# A short warm-up (connections, caches, the worker's pool), not reported.
"$LOADTEST" webhook --api "$API" --sync --rate "$RATE" --duration 3s --quiet >/dev/null 2>&1 || true
load "rate$RATE" --rate "$RATE" --duration 15s
load c16 --connections 16 --duration 10s

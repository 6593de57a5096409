#!/usr/bin/env bash
# Ingest and drain of one build, as docs/BENCHMARKS.md reports them: the API alone takes 10 s
# of asynchronous 1 KiB webhooks from 64 connections (`kai-loadtest webhook`, accepted/s), then
# one worker (KAI_BENCH_WORKERS=2: two) drains the backlog (executions completed per second, from
# PostgreSQL), and the load test's audit checks every accepted call ran once.
#
#   scripts/bench/ingest-drain.sh BIN_DIR TAG [LOADTEST]   # e.g. target/release new
#
# LOADTEST is the kai-loadtest binary (default BIN_DIR/kai-loadtest), so an older build's API and
# worker are measured with the same tool.
#
# Each run uses a fresh database and a private NATS server (scripts/bench/lib.sh); results go to
# /tmp/kai-bench/TAG-*.json.
set -euo pipefail

BIN=${1:?the directory of kai-api, kai-worker and kai-loadtest}
TAG=${2:?a name for this run}
LOADTEST=${3:-$BIN/kai-loadtest}
source "$(dirname "$0")/lib.sh"
rm -f "$OUT/$TAG"-*  # a report left by an earlier run of the same tag would be read as this one's
bench_setup "bench_$TAG" 18300
bench_private_nats
DB=$BENCH_DB

bench_start "$OUT/$TAG-api.log" "$BIN/kai-api"
bench_wait_api

"$LOADTEST" webhook --api "$API" --connections 64 --duration 10s --payload-bytes 1024 \
  --audit-timeout 600s --quiet --json "$OUT/$TAG-ingest.json" >"$OUT/$TAG-loadtest.log" 2>&1 &
loadtest=$!
sleep 11

count() { psql -qAt -h 127.0.0.1 -U postgres -d "$DB" -c \
  "SELECT count(*) FROM workflow_executions WHERE status = 'completed'"; }
for w in $(seq 1 "${KAI_BENCH_WORKERS:-1}"); do
  KAI_WORKER_ADDR=127.0.0.1:$((PORT + w)) bench_start "$OUT/$TAG-worker$w.log" "$BIN/kai-worker"
done
started=$(date +%s.%N)
# The load test writes its report once its audit has seen every execution; the drain ends when
# the last execution was completed (the count's last change), not when the audit noticed.
accepted=0 previous=0 ended=$started
while :; do
  now=$(date +%s.%N)
  done_now=$(count)
  if [ "$done_now" -gt "$previous" ]; then previous=$done_now; ended=$now; fi
  if [ -s "$OUT/$TAG-ingest.json" ]; then
    accepted=$(python3 -c "import json; print(json.load(open('$OUT/$TAG-ingest.json'))['accepted'])")
    [ "$previous" -ge "$accepted" ] && break
  fi
  if ! kill -0 "$loadtest" 2>/dev/null && [ ! -s "$OUT/$TAG-ingest.json" ]; then
    echo "kai-loadtest failed; see $OUT/$TAG-loadtest.log"; exit 1
  fi
  sleep 0.2
done
wait "$loadtest" || true
python3 - "$OUT/$TAG-ingest.json" "$started" "$ended" "$accepted" "$TAG" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
started, ended, accepted, tag = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
audit = report.get("audit") or {}
print(f"{tag}: ingest {report['accepted_per_s']:.0f} accepted/s; drain {accepted / (ended - started):.0f} "
      f"executions/s ({accepted} in {ended - started:.1f} s); audit missing {audit.get('missing')}, "
      f"duplicated {audit.get('duplicated')}")
EOF

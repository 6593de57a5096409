#!/usr/bin/env bash
# CPU microseconds the API spends per accepted asynchronous 1 KiB webhook at a fixed rate
# (8,000/s for 10 s after a 3 s warm-up): steadier than the most it accepts a second, which
# swings with this machine's neighbours. Compares builds when alternated:
#
#   scripts/bench/api-cpu-per-request.sh BIN_DIR TAG [LOADTEST]
set -euo pipefail

BIN=${1:?the directory of kai-api}
TAG=${2:?a name for this run}
LOADTEST=${3:-$BIN/kai-loadtest}
OUT=/tmp/kai-bench
mkdir -p "$OUT"
suffix=$(date +%s%N | tail -c 7)
DB=kai_cpu_$suffix
PORT=$((19300 + RANDOM % 500))
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
export KAI_NATS_PREFIX=cpu$suffix
export KAI_API_ADDR=127.0.0.1:$PORT KAI_API_OPS_ADDR=off KAI_PUBLIC_URL=http://127.0.0.1:$PORT RUST_LOG=warn
API=http://127.0.0.1:$PORT

api=
cleanup() {
  [ -n "$api" ] && kill "$api" 2>/dev/null || true
  wait 2>/dev/null || true
  psql -qAt -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$BIN/kai-api" >"$OUT/$TAG-api.log" 2>&1 & api=$!
for _ in $(seq 1 100); do curl -fsS "$API/health" >/dev/null 2>&1 && break; sleep 0.2; done

ticks() { awk '{ print $14 + $15 }' "/proc/$api/stat"; }
load() {
  "$LOADTEST" webhook --api "$API" --rate 8000 --duration "$1" --payload-bytes 1024 \
    --audit-timeout 1s --quiet --json "$2" >/dev/null 2>&1 || true
}
load 3s "$OUT/$TAG-warm.json"
before=$(ticks)
load 10s "$OUT/$TAG-cpu.json"
after=$(ticks)
accepted=$(python3 -c "import json; print(json.load(open('$OUT/$TAG-cpu.json'))['accepted'])")
ticks_per_s=$(getconf CLK_TCK)
python3 -c "print('$TAG: %d accepted, API CPU %.1f us per request' % ($accepted, ($after - $before) * 1e6 / $ticks_per_s / $accepted))"

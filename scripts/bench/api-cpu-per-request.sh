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
source "$(dirname "$0")/lib.sh"
bench_setup "cpu_$TAG" 19300
# The jobs are never drained: a private server takes them away with it.
bench_private_nats
bench_start "$OUT/$TAG-api.log" "$BIN/kai-api"
api=$BENCH_PID
bench_wait_api

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

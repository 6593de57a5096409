#!/usr/bin/env bash
# The vector benchmark of docs/BENCHMARKS.md against one build: a `kai-api` on a fresh database,
# then `kai-loadtest vectors` with the remaining arguments; prints the CPU seconds the API and
# PostgreSQL spent.
#
#   scripts/bench/vectors.sh BIN_DIR TAG [kai-loadtest vectors options]
#   scripts/bench/vectors.sh target/release new --rows 100000 --searches 5000
#
# The report goes to /tmp/kai-bench/TAG-vectors.json.
set -euo pipefail

BIN=${1:?the directory of kai-api and kai-loadtest}
TAG=${2:?a name for this run}
shift 2
source "$(dirname "$0")/lib.sh"
rm -f "$OUT/$TAG"-*
bench_setup "bench_$TAG" 18300
DB=$BENCH_DB
bench_private_nats
bench_start "$OUT/$TAG-api.log" "$BIN/kai-api"
api=$BENCH_PID
bench_wait_api

# CPU seconds (user + system) of a process and its children so far.
cpu() { awk '{ print ($14 + $15 + $16 + $17) / 100 }' "/proc/$1/stat"; }
# PostgreSQL's: the postmaster with the backends that ended (waited for), plus those alive.
postgres_cpu() {
  local master total
  master=$(pgrep -o -x postgres)
  total=$(cpu "$master")
  for pid in $(pgrep -P "$master"); do
    total=$(awk -v t="$total" '{ print t + ($14 + $15) / 100 }' "/proc/$pid/stat" 2>/dev/null || echo "$total")
  done
  echo "$total"
}
api_before=$(cpu "$api") pg_before=$(postgres_cpu)
"$BIN/kai-loadtest" vectors --api "$API" --json "$OUT/$TAG-vectors.json" "$@"
echo "CPU seconds during the run: kai-api $(echo "$(cpu "$api") - $api_before" | bc)," \
  "PostgreSQL $(echo "$(postgres_cpu) - $pg_before" | bc)"

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
OUT=/tmp/kai-bench
mkdir -p "$OUT"
rm -f "$OUT/$TAG"-*
suffix=$(date +%s%N | tail -c 7)
DB=kai_bench_${TAG//[^a-z0-9]/_}_$suffix
PORT=$((18300 + RANDOM % 500))
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
export KAI_NATS_PREFIX=bench$suffix
export KAI_API_ADDR=127.0.0.1:$PORT KAI_API_OPS_ADDR=off KAI_PUBLIC_URL=http://127.0.0.1:$PORT RUST_LOG=warn
API=http://127.0.0.1:$PORT

api=
cleanup() {
  [ -n "$api" ] && kill "$api" 2>/dev/null || true
  wait 2>/dev/null || true
  psql -qAt -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$BIN/kai-api" >"$OUT/$TAG-api.log" 2>&1 & api=$!
for _ in $(seq 1 100); do curl -fsS "$API/health" >/dev/null 2>&1 && break; sleep 0.2; done

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

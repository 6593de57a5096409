# Setup shared by the benchmark scripts (sourced, after `set -euo pipefail`): a fresh database
# and NATS prefix per run, a private nats-server whose streams go with it (a run's leftovers
# never pile up on the machine's shared server), the processes under test, and a cleanup at
# exit that stops them all and drops the database.
#
#   bench_setup NAME PORT_BASE   # exports DATABASE_URL, KAI_NATS_PREFIX, the API's addresses;
#                                # sets API (its base URL), PORT, BENCH_DB and OUT
#   bench_private_nats           # one nats-server of the machine's binary; exports NATS_URL
#   bench_start LOG CMD...       # starts CMD, stopped at exit; its pid in BENCH_PID
#   bench_wait_api               # until the API answers /health

OUT=/tmp/kai-bench
mkdir -p "$OUT"
BENCH_PIDS=()       # the processes under test, stopped first
BENCH_NATS_PIDS=()  # private nats-servers, stopped after the processes using them
BENCH_NATS_DIR=""

bench_setup() {
  local suffix
  suffix=$(date +%s%N | tail -c 7)
  BENCH_DB=kai_${1//[^a-z0-9]/_}_$suffix
  PORT=$(($2 + RANDOM % 400))
  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$BENCH_DB
  export KAI_NATS_PREFIX=bench$suffix
  export KAI_API_ADDR=127.0.0.1:$PORT KAI_API_OPS_ADDR=off KAI_PUBLIC_URL=http://127.0.0.1:$PORT
  export RUST_LOG=warn
  API=http://127.0.0.1:$PORT
  trap bench_cleanup EXIT
}

bench_private_nats() {
  local port=$((28430 + RANDOM % 100))  # clear of the fault suite's ports
  BENCH_NATS_DIR=$(mktemp -d)
  nats-server -a 127.0.0.1 -p "$port" -js -sd "$BENCH_NATS_DIR/n1" >"$BENCH_NATS_DIR/n1.log" 2>&1 &
  BENCH_NATS_PIDS+=($!)
  export NATS_URL=nats://127.0.0.1:$port
  sleep 1
}

bench_start() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  BENCH_PID=$!
  BENCH_PIDS+=("$BENCH_PID")
}

bench_wait_api() {
  for _ in $(seq 1 150); do
    curl -fsS "$API/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "the API at $API did not start" >&2
  return 1
}

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait "${BENCH_PIDS[@]}" 2>/dev/null || true
  for pid in "${BENCH_NATS_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$BENCH_NATS_DIR" ]; then rm -rf "$BENCH_NATS_DIR"; fi
  psql -qAt -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1 || true
}

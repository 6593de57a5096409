#!/usr/bin/env bash
# What one execution costs each part of the cluster, for docs/SCALING.md: CPU-milliseconds in
# the API, the workers, NATS, PostgreSQL and Redis; bytes written (PostgreSQL's WAL, every
# PostgreSQL process's writes, the NATS servers', the disk's) and kept (the database's growth).
# One API and WORKERS workers on a fresh database; a webhook → end workflow fired open loop at
# RATE calls/s for 20 s (after a 5-s warm-up at the same rate); CPU and I/O are read from /proc
# before the measured load and again once every execution of it is recorded, then divided by
# the executions completed in between.
#
#   scripts/bench/capacity.sh BIN_DIR RATE WORKERS [async|sync]     # e.g. target/release 1000 1
#
# NATS: a private server of the machine's nats-server (one replica, file storage) by default;
# with KAI_CAPACITY_NATS=r3, a private 3-server cluster of the pinned recent nats-server
# (scripts/setup-services.sh installs it) with every stream replicated 3 times. Either is
# removed with its streams at the end.
# Prints one JSON line (also appended to /tmp/kai-bench/capacity.jsonl).
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${1:?the directory of kai-api, kai-worker and kai-loadtest}
RATE=${2:?calls per second}
WORKERS=${3:?how many workers}
MODE=${4:-async}
NATS_KIND=${KAI_CAPACITY_NATS:-r1}
DURATION=${KAI_CAPACITY_SECONDS:-20}
source scripts/bench/lib.sh
bench_setup "cap_${MODE}_${RATE}_${WORKERS}w_${NATS_KIND}" 20300
TAG=${BENCH_DB#kai_}
DB=$BENCH_DB
sql() { psql -qAt -h 127.0.0.1 -U postgres -d "${2:-$DB}" -c "$1"; }

declare -A ROLE   # pid → the part of the cluster it is counted as
if [ "$NATS_KIND" = r3 ]; then
  NATS_SERVER=${KAI_NATS_SERVER:-$HOME/.cache/kai-fusion/tools/nats/bin/nats-server}
  BENCH_NATS_DIR=$(mktemp -d)
  routes=nats://127.0.0.1:26621,nats://127.0.0.1:26622,nats://127.0.0.1:26623
  for n in 1 2 3; do
    "$NATS_SERVER" -a 127.0.0.1 -p $((26420 + n)) -js -sd "$BENCH_NATS_DIR/n$n" -n "n$n" --cluster_name kai-capacity \
      --cluster "nats://127.0.0.1:$((26620 + n))" --routes "$routes" --no_advertise >"$BENCH_NATS_DIR/n$n.log" 2>&1 &
    BENCH_NATS_PIDS+=($!); ROLE[$!]=nats
  done
  export NATS_URL=nats://127.0.0.1:26421,nats://127.0.0.1:26422,nats://127.0.0.1:26423
  export KAI_NATS_STREAM_REPLICAS=3
  sleep 3
else
  bench_private_nats
  ROLE[${BENCH_NATS_PIDS[0]}]=nats
fi
for pid in $(pgrep -x redis-server); do ROLE[$pid]=redis; done

bench_start "$OUT/$TAG-api.log" "$BIN/kai-api"; ROLE[$BENCH_PID]=api
bench_wait_api
for w in $(seq 1 "$WORKERS"); do
  KAI_WORKER_ADDR=127.0.0.1:$((PORT + w)) bench_start "$OUT/$TAG-worker$w.log" "$BIN/kai-worker"
  ROLE[$BENCH_PID]=worker
done

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
credentials='{"email":"capacity@kai.local","password":"capacity-password"}'
curl -fsS -o /dev/null -X POST "$API/api/v1/auth/signup" -H 'Content-Type: application/json' -d "$credentials"
token=$(curl -fsS -X POST "$API/api/v1/auth/login" -H 'Content-Type: application/json' -d "$credentials" \
  | json 'd["access_token"]')
workflow=$(curl -fsS -X POST "$API/api/v1/workflows" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d @<(python3 -c '
import json; w = json.load(open("examples/webhook-echo.json"))
# The rate limit is checked on every call (in Redis) but set far above any rate measured here.
w["flow_data"]["nodes"][0]["data"]["rate_limit_per_minute"] = 100_000_000
print(json.dumps(w))') | json 'd["id"]')
read -r url secret < <(curl -fsS "$API/api/v1/webhooks?workflow_id=$workflow" -H "Authorization: Bearer $token" \
  | json 'd[0]["webhook_url"] + " " + d[0]["security_token"]')

load() {  # SECONDS REPORT
  local sync=(); [ "$MODE" = sync ] && sync=(--sync)
  "$BIN/kai-loadtest" webhook --webhook-url "$url" --webhook-token "$secret" --api "$API" \
    --rate "$RATE" --duration "${1}s" "${sync[@]}" --quiet --json "$2" >"$2.log" 2>&1
}
accepted() { json 'd["accepted"]' <"$1"; }
completed() { sql "SELECT count(*) FROM workflow_executions WHERE status = 'completed'"; }
# Waits until `n` executions are completed; gives up after 300 s of no progress.
wait_completed() {
  local n=$1 last=-1 since=$SECONDS done_now
  while :; do
    done_now=$(completed)
    [ "$done_now" -ge "$n" ] && return 0
    [ "$done_now" != "$last" ] && last=$done_now since=$SECONDS
    [ $((SECONDS - since)) -gt 300 ] && { echo "stuck at $done_now of $n executions" >&2; exit 1; }
    sleep 0.25
  done
}

# Every counted process's CPU ticks and bytes written, as "pid role ticks bytes" lines, plus the
# machine's busy ticks and the disk's sectors and writes. PostgreSQL's processes are its
# server's children at the moment of reading; a process that exits in between is left out
# (the measured ones are long-lived: the pools' connections and PostgreSQL's own workers).
DISK=$(basename "$(df --output=source /var/lib/postgresql | tail -1)")
snapshot() {
  local pid
  for pid in $(pgrep -u postgres -x postgres); do ROLE[$pid]=postgres; done
  for pid in "${!ROLE[@]}"; do
    [ -r "/proc/$pid/stat" ] || continue
    printf '%s %s %s %s\n' "$pid" "${ROLE[$pid]}" \
      "$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)" \
      "$(awk '/^write_bytes/ { print $2 }' "/proc/$pid/io" 2>/dev/null || echo 0)"
  done
  awk '/^cpu / { print "machine machine", $2 + $3 + $4 + $7 + $8, 0 }' /proc/stat
  awk -v disk="$DISK" '$3 == disk { print "disk disk", $8, $10 * 512 }' /proc/diskstats
}

load 5 "$OUT/$TAG-warm.json"
warm=$(accepted "$OUT/$TAG-warm.json")
wait_completed "$warm"
stored_before=$(sql "SELECT pg_database_size(current_database())")
before=$(snapshot); wal_before=$(sql "SELECT pg_current_wal_lsn()"); started=$(date +%s.%N)
load "$DURATION" "$OUT/$TAG-load.json"
measured=$(accepted "$OUT/$TAG-load.json")
wait_completed $((warm + measured))
after=$(snapshot); ended=$(date +%s.%N)
wal=$(sql "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$wal_before')")
stored=$(($(sql "SELECT pg_database_size(current_database())") - stored_before))
executions=$(($(completed) - warm))
duplicates=$(sql "SELECT count(*) - count(DISTINCT id) FROM workflow_executions")
[ "$executions" -eq "$measured" ] || echo "warning: $measured accepted, $executions completed" >&2

python3 - "$OUT/$TAG-load.json" <<EOF | tee -a "$OUT/capacity.jsonl"
import json, collections
hz, n = $(getconf CLK_TCK), $executions
def read(text):
    return {line.split()[0]: line.split()[1:] for line in text.strip().splitlines()}
t0, t1 = read("""$before"""), read("""$after""")
ticks, written = collections.Counter(), collections.Counter()
for pid, (role, t, w) in t1.items():  # a process started meanwhile counts from nothing
    _, t_was, w_was = t0.get(pid, (role, 0, 0))
    ticks[role] += int(t) - int(t_was); written[role] += int(w) - int(w_was)
load = json.load(open("$OUT/$TAG-load.json"))
window = $ended - $started
cpu_ms = {r: round(ticks[r] * 1000 / hz / n, 3) for r in ticks if r not in ("machine", "disk")}
print(json.dumps({
    "mode": "$MODE", "nats": "$NATS_KIND", "workers": $WORKERS, "rate": $RATE,
    "accepted": $measured, "executions": n, "duplicates": $duplicates,
    "accepted_per_s": round(load["accepted_per_s"], 1),
    "latency_ms": {k: round(load["latency"][k + "_ms"], 2) for k in ("p50", "p90", "p99")},
    "window_s": round(window, 2),
    "cpu_ms_per_execution": cpu_ms,
    "machine_cpu_ms_per_execution": round(ticks["machine"] * 1000 / hz / n, 3),
    "machine_busy_cores": round(ticks["machine"] / hz / window, 2),
    "busy_cores": {r: round(ticks[r] / hz / window, 2) for r in ticks if r not in ("machine", "disk")},
    "bytes_per_execution": {
        "postgres_wal": round($wal / n),
        "postgres_stored": round($stored / n),
        "postgres_written": round(written["postgres"] / n),
        "nats_written": round(written["nats"] / n),
        "disk_device": round(written["disk"] / n),
    },
    "disk_writes_per_execution": round(ticks["disk"] / n, 3),
}))
EOF

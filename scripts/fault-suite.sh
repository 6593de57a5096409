#!/usr/bin/env bash
# Fault-injection suite: runs a private cluster (its own PostgreSQL, NATS and Redis on other
# ports, so the machine's services are never touched; kai-api, two kai-worker, two
# kai-scheduler), drives webhook load with kai-loadtest and injects one fault per scenario. After
# each, the load tool's audit says whether every accepted request ran exactly once; at the end a
# one-second timer (fire_all) must show no tick twice and none missing. Prints a table and exits
# 1 on any loss or duplicate. A last scenario sends bursts of large payloads to workers with a
# small byte bound, kills one, and checks every call by id and that no worker held more than its
# bound. Loopback only; bounded in time; cleans up after itself.
#
#   scripts/fault-suite.sh            # full: 40 s of load per scenario
#   scripts/fault-suite.sh --short    # 15 s per scenario (what CI runs)
#   KAI_PROFILE=release scripts/fault-suite.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=40
RATE=${KAI_FAULT_RATE:-200}
[ "${1:-}" = "--short" ] && DURATION=15
PROFILE=${KAI_PROFILE:-debug}
BIN=target/$PROFILE
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PG_PORT=15432 NATS_PORT=14222 REDIS_PORT=16379 API_PORT=18001
DIR=$(mktemp -d /tmp/kai-fault.XXXXXX)
chmod 755 "$DIR"
API=http://127.0.0.1:$API_PORT
log() { echo "[fault] $*" >&2; }

bash scripts/setup-services.sh >/dev/null # binaries (pgvector, nats-server, redis-server)
if [ "$PROFILE" = release ]; then cargo build --locked --release --bins -q; else cargo build --locked --bins -q; fi

declare -A PIDS
# Kills a process this script started and reaps it (no job-control noise).
stop_pid() { kill "${2:--9}" "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
cleanup() {
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_pg() {
  as_postgres "$PG_BIN/pg_ctl" -D "$DIR/pg" -o "-p $PG_PORT -k $DIR/pgrun -c listen_addresses=127.0.0.1" \
    -l "$DIR/pgrun/pg.log" -w start >/dev/null
}
start_nats() {
  nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$DIR/nats" >"$DIR/nats.log" 2>&1 &
  PIDS[nats]=$!
}
start_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    >"$DIR/redis.log" 2>&1 &
  PIDS[redis]=$!
}
wait_port() { for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; log "port $1 not listening"; exit 2; }

mkdir -p "$DIR/pg" "$DIR/pgrun" && chown postgres "$DIR/pg" "$DIR/pgrun" 2>/dev/null || true
as_postgres "$PG_BIN/initdb" -D "$DIR/pg" -A trust -U postgres >/dev/null
start_pg; start_nats; start_redis
wait_port "$PG_PORT"; wait_port "$NATS_PORT"; wait_port "$REDIS_PORT"

export DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/kai
export NATS_URL=nats://127.0.0.1:$NATS_PORT REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export KAI_NATS_PREFIX=fault RUST_LOG=warn KAI_JOB_ACK_WAIT_SECS=5
start_api() {
  KAI_API_ADDR=127.0.0.1:$API_PORT KAI_API_OPS_ADDR=127.0.0.1:$((API_PORT + 1)) KAI_PUBLIC_URL=$API "$BIN/kai-api" >>"$DIR/api.log" 2>&1 &
  PIDS[api]=$!
}
start_worker() { KAI_WORKER_ADDR=127.0.0.1:1910$1 "$BIN/kai-worker" >>"$DIR/worker$1.log" 2>&1 & PIDS[worker$1]=$!; }
start_scheduler() { KAI_SCHEDULER_ADDR=127.0.0.1:1920$1 "$BIN/kai-scheduler" >>"$DIR/scheduler$1.log" 2>&1 & PIDS[scheduler$1]=$!; }
start_api
for _ in $(seq 1 300); do curl -fsS "$API/health" >/dev/null 2>&1 && break; sleep 0.2; done
start_worker 1; start_worker 2; start_scheduler 1; start_scheduler 2

# A one-second timer across every scenario.
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
credentials='{"email":"faults@kai.local","password":"fault-suite-password"}'
curl -fsS -o /dev/null -X POST "$API/api/v1/auth/signup" -H 'Content-Type: application/json' -d "$credentials"
token=$(curl -fsS -X POST "$API/api/v1/auth/login" -H 'Content-Type: application/json' -d "$credentials" | json 'd["access_token"]')
timer=$(curl -fsS -X POST "$API/api/v1/workflows" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"name":"fault timer","nodes":[{"id":"t","type":"TimerStartNode","data":{"interval_seconds":1,"misfire_policy":"fire_all"}},{"id":"e","type":"EndNode"}],"edges":[{"source":"t","target":"e"}]}' \
  | json 'd["id"]')

healthy() {
  curl -fsS "$API/health/detailed" >/dev/null 2>&1 &&
    curl -fsS "http://127.0.0.1:19101/health/detailed" >/dev/null 2>&1 &&
    curl -fsS "http://127.0.0.1:19102/health" >/dev/null 2>&1 || curl -fsS "http://127.0.0.1:19202/health" >/dev/null 2>&1
}
# Seconds from the end of an injection until the API, a worker and a scheduler all report healthy.
recovery() {
  local from; from=$(date +%s.%N)
  for _ in $(seq 1 600); do healthy && break; sleep 0.1; done
  python3 -c "print(f'{$(date +%s.%N) - $from:.1f}')"
}

fault_worker_kill() {
  local until=$((SECONDS + DURATION / 2)) n=1
  while [ $SECONDS -lt $until ]; do
    stop_pid "${PIDS[worker$n]}"; sleep 0.5; start_worker "$n"
    n=$((3 - n)); sleep 3
  done
}
fault_nats_restart() { stop_pid "${PIDS[nats]}" -TERM; sleep 2; start_nats; wait_port "$NATS_PORT"; }
fault_postgres_restart() { as_postgres "$PG_BIN/pg_ctl" -D "$DIR/pg" -m fast -w stop >/dev/null; sleep 2; start_pg; }
fault_redis_stop() { stop_pid "${PIDS[redis]}" -TERM; sleep 5; start_redis; wait_port "$REDIS_PORT"; }
fault_scheduler_leader_kill() {
  for n in 1 2; do
    if curl -fsS "http://127.0.0.1:1920$n/health" 2>/dev/null | grep -q '"is_leader":true'; then
      stop_pid "${PIDS[scheduler$n]}"; sleep 1; start_scheduler "$n"; return
    fi
  done
}

rows=()
failed=0
for scenario in worker_kill nats_restart postgres_restart redis_stop scheduler_leader_kill; do
  log "scenario $scenario: ${RATE}/s for ${DURATION}s"
  "$BIN/kai-loadtest" webhook --api "$API" --rate "$RATE" --duration "${DURATION}s" --quiet \
    --audit-timeout 180s --json "$DIR/$scenario.json" >"$DIR/$scenario.out" 2>&1 &
  load=$!
  sleep $((DURATION / 3))
  "fault_$scenario"
  took=$(recovery)
  wait "$load" || true
  if [ ! -s "$DIR/$scenario.json" ]; then
    log "$scenario: the load tool failed:"; cat "$DIR/$scenario.out" >&2; failed=1; continue
  fi
  row=$(python3 - "$DIR/$scenario.json" "$scenario" "$took" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
a = r["audit"]
print(f'{sys.argv[2]}|{a["sent"]}|{a["accepted"]}|{a["missing"] + a["unfinished"]}|{a["duplicated"]}|{sys.argv[3]}')
EOF
)
  rows+=("$row")
  IFS='|' read -r _ _ _ lost dup _ <<<"$row"
  [ "$lost" = 0 ] && [ "$dup" = 0 ] || failed=1
done

# Large payloads under memory pressure: both workers restarted with a 4 MiB byte bound, rounds of
# concurrent 512 KiB webhooks (far more than the bound), a worker killed in the middle; every
# call audited by its execution id, and neither worker ever holding more than its bound.
BOUND=$((4 * 1024 * 1024))
log "scenario large_payloads: bursts of 512 KiB bodies, workers bound to $BOUND bytes"
for n in 1 2; do stop_pid "${PIDS[worker$n]}" -TERM; KAI_WORKER_MAX_INFLIGHT_BYTES=$BOUND start_worker "$n"; done
"$BIN/kai-loadtest" bursts --api "$API" --body-size 512KiB --requests 60 --connections 30 \
  --rounds $((DURATION / 5)) --settle 1s --audit-timeout 180s --json "$DIR/large_payloads.json" \
  >"$DIR/large_payloads.out" 2>&1 &
load=$!
sleep 2
stop_pid "${PIDS[worker1]}"; sleep 0.5; KAI_WORKER_MAX_INFLIGHT_BYTES=$BOUND start_worker 1
took=$(recovery)
wait "$load" || true
if [ -s "$DIR/large_payloads.json" ]; then
  held=0
  for n in 1 2; do
    peak=$(curl -fsS "http://127.0.0.1:1910$n/metrics" | awk '$1 == "kai_worker_inflight_bytes_max" {print int($2)}')
    [ "${peak:-0}" -gt "$held" ] && held=$peak
  done
  row=$(python3 - "$DIR/large_payloads.json" "$took" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
a = r["audit"]
sent = sum(round["accepted"] + sum(round["refused"].values()) for round in r["rounds"])
print(f'large_payloads|{sent}|{a["accepted"]}|{len(a["missing"]) + a["unfinished"]}|0|{sys.argv[2]}')
EOF
)
  rows+=("$row")
  IFS='|' read -r _ _ _ lost _ _ <<<"$row"
  [ "$lost" = 0 ] || failed=1
  if [ "$held" -gt "$BOUND" ]; then log "a worker held $held bytes, above its bound $BOUND"; failed=1; fi
  log "large_payloads: most job bytes a worker held at once: $held of $BOUND"
else
  log "large_payloads: the load tool failed:"; cat "$DIR/large_payloads.out" >&2; failed=1
fi

# The timer's ticks across all of it: none twice, none missing (fire_all).
ticks=$(psql "$DATABASE_URL" -tA -c "
  SELECT count(*) || '|' || count(DISTINCT scheduled_for) || '|' ||
         (extract(epoch FROM max(scheduled_for) - min(scheduled_for))::int + 1)
  FROM job_executions je JOIN scheduled_jobs j ON j.id = je.job_id
  WHERE j.workflow_id = '$timer' AND je.status = 'queued'")
runs=$(psql "$DATABASE_URL" -tA -c "
  SELECT count(*) - count(DISTINCT inputs->>'scheduled_for') FROM workflow_executions
  WHERE workflow_id = '$timer'")
IFS='|' read -r tick_count tick_distinct tick_span <<<"$ticks"

echo
printf '%-24s %9s %9s %6s %11s %13s\n' scenario sent accepted lost duplicated "recovered (s)"
for row in "${rows[@]}"; do
  IFS='|' read -r name sent accepted lost dup took <<<"$row"
  printf '%-24s %9s %9s %6s %11s %13s\n' "$name" "$sent" "$accepted" "$lost" "$dup" "$took"
done
echo
echo "timer (1 s, fire_all): $tick_count ticks over ${tick_span} s, $((tick_count - tick_distinct)) twice, $((tick_span - tick_distinct)) missing; $runs runs twice"
[ "$tick_count" = "$tick_distinct" ] && [ "$tick_span" = "$tick_distinct" ] && [ "$runs" = 0 ] || failed=1
exit $failed

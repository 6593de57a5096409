#!/usr/bin/env bash
# Fault-injection suite: runs a private cluster (its own PostgreSQL, Redis and a 3-server NATS
# JetStream cluster keeping 3 copies of each stream, on other ports, so the machine's services
# are never touched; two kai-api, three kai-worker, two kai-scheduler), drives webhook load
# through both APIs with kai-loadtest and injects one fault per scenario. After each, the load
# tool's audit says whether every accepted request ran exactly once, and which calls were refused,
# how (503 with Retry-After) and when; at the end a one-second timer (fire_all) must show no tick
# twice and none missing. Prints a table (Markdown) and exits 1 on any loss, duplicate or refusal
# a scenario does not allow. A last scenario sends bursts of large payloads to workers with a
# small byte bound, kills one, and checks every call by id and that no worker held more than its
# bound. Loopback only; bounded in time; cleans up after itself.
#
#   scripts/fault-suite.sh            # full: 40 s of load per scenario
#   scripts/fault-suite.sh --short    # 15 s per scenario (what CI runs)
#   KAI_PROFILE=release scripts/fault-suite.sh
#   KAI_FAULT_SCENARIOS="full_queue nats_leader_kill" scripts/fault-suite.sh --short   # some only
#   KAI_FAULT_KEEP=1 scripts/fault-suite.sh   # keep the logs and reports (the path is printed)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=40
RATE=${KAI_FAULT_RATE:-200}
[ "${1:-}" = "--short" ] && DURATION=15
PROFILE=${KAI_PROFILE:-debug}
BIN=target/$PROFILE
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PG_PORT=15432 REDIS_PORT=16379 API_PORT=18001 API2_PORT=18003
NATS_SERVERS=(1 2 3)
WORKERS=(1 2 3)
QUEUE_MAX=300 # jobs the queue holds in the full_queue scenario
DIR=$(mktemp -d /tmp/kai-fault.XXXXXX)
chmod 755 "$DIR"
API=http://127.0.0.1:$API_PORT API2=http://127.0.0.1:$API2_PORT
log() { echo "[fault] $*" >&2; }

bash scripts/setup-services.sh >/dev/null # binaries (pgvector, nats-server, redis-server)
# A recent NATS for the cluster (setup-services.sh installs it; see there why not Debian's).
NATS_SERVER=${KAI_NATS_SERVER:-${KAI_TOOLS_DIR:-$HOME/.cache/kai-fusion/tools}/nats/bin/nats-server}
if [ "$PROFILE" = release ]; then cargo build --locked --release --bins -q; else cargo build --locked --bins -q; fi

declare -A PIDS
# Kills a process this script started and reaps it (no job-control noise).
stop_pid() { kill "${2:--9}" "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
cleanup() {
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/pg" -m immediate stop >/dev/null 2>&1 || true
  if [ -n "${KAI_FAULT_KEEP:-}" ]; then log "logs and reports kept in $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_pg() {
  as_postgres "$PG_BIN/pg_ctl" -D "$DIR/pg" -o "-p $PG_PORT -k $DIR/pgrun -c listen_addresses=127.0.0.1 -c max_connections=300" \
    -l "$DIR/pgrun/pg.log" -w start >/dev/null
}
# NATS server n (1-3): client port 14221+n, monitoring 14821+n, routes 16221+n.
nats_port() { echo $((14221 + $1)); }
nats_monitor() { echo $((14821 + $1)); }
ROUTES=$(for n in "${NATS_SERVERS[@]}"; do printf 'nats://127.0.0.1:%s,' $((16221 + n)); done)
start_nats() {
  "$NATS_SERVER" -a 127.0.0.1 -p "$(nats_port "$1")" -m "$(nats_monitor "$1")" -js -sd "$DIR/nats$1" \
    -n "n$1" --cluster_name kai-fault --cluster "nats://127.0.0.1:$((16221 + $1))" \
    --routes "${ROUTES%,}" --no_advertise >>"$DIR/nats$1.log" 2>&1 &
  PIDS[nats$1]=$!
}
stop_nats() { stop_pid "${PIDS[nats$1]}" "${2:--9}"; unset "PIDS[nats$1]"; }
start_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    >"$DIR/redis.log" 2>&1 &
  PIDS[redis]=$!
}
wait_port() { for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; log "port $1 not listening"; exit 2; }

mkdir -p "$DIR/pg" "$DIR/pgrun" && chown postgres "$DIR/pg" "$DIR/pgrun" 2>/dev/null || true
as_postgres "$PG_BIN/initdb" -D "$DIR/pg" -A trust -U postgres >/dev/null
start_pg; start_redis
for n in "${NATS_SERVERS[@]}"; do start_nats "$n"; done
wait_port "$PG_PORT"; wait_port "$REDIS_PORT"
for n in "${NATS_SERVERS[@]}"; do wait_port "$(nats_port "$n")"; done
# Streams can be set up only once the servers have elected a JetStream meta leader: an API
# started before that fails its stream setup and exits (a busy machine may take seconds).
meta_leader() {
  curl -fsS "http://127.0.0.1:$(nats_monitor "$1")/jsz" 2>/dev/null | python3 -c \
    "import json,sys; print((json.load(sys.stdin).get('meta_cluster') or {}).get('leader') or '')" 2>/dev/null || true
}
for _ in $(seq 1 600); do [ -n "$(meta_leader "${NATS_SERVERS[0]}")" ] && break; sleep 0.1; done

# Partition proxies (kai-loadtest partition): worker 1 reaches NATS and PostgreSQL, API 2 NATS,
# and each scheduler PostgreSQL through one of its own, which a partition scenario cuts (SIGUSR1:
# it stops forwarding, nothing is closed) and heals (SIGUSR2). The NATS servers do not advertise
# each other to clients (--no_advertise), so a proxied process knows only its proxied seeds.
declare -A PROXY_ROUTES=(
  [worker_nats]="24222=14222 24223=14223 24224=14224" [worker_pg]="25432=$PG_PORT"
  [api_nats]="25222=14222 25223=14223 25224=14224"
  [scheduler1_pg]="26432=$PG_PORT" [scheduler2_pg]="27432=$PG_PORT"
)
start_proxy() {
  local routes=() route
  for route in ${PROXY_ROUTES[$1]}; do routes+=(--route "127.0.0.1:${route%=*}=127.0.0.1:${route#*=}"); done
  "$BIN/kai-loadtest" partition "${routes[@]}" >>"$DIR/proxy-$1.log" 2>&1 &
  PIDS[proxy_$1]=$!
  for route in ${PROXY_ROUTES[$1]}; do wait_port "${route%=*}"; done
}
for proxy in "${!PROXY_ROUTES[@]}"; do start_proxy "$proxy"; done
cut() { kill -USR1 "${PIDS[proxy_$1]}"; }
heal() { kill -USR2 "${PIDS[proxy_$1]}"; }
proxied_nats() { local u="" p; for p in "$@"; do u+="nats://127.0.0.1:$p,"; done; echo "${u%,}"; }
proxied_pg() { echo "postgres://postgres@127.0.0.1:$1/kai"; }

# The jobs stream's leader and followers, from the servers' monitoring ports (fault-nats.py).
MONITORS=$(for n in "${NATS_SERVERS[@]}"; do printf '%s,' "$(nats_monitor "$n")"; done)
stream_state() { python3 scripts/fault-nats.py "${MONITORS%,}" "$@"; }
jobs_leader() { stream_state leader; }
export DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/kai
NATS_URL=$(for n in "${NATS_SERVERS[@]}"; do printf 'nats://127.0.0.1:%s,' "$(nats_port "$n")"; done)
export NATS_URL=${NATS_URL%,} KAI_NATS_STREAM_REPLICAS=3 REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export KAI_NATS_PREFIX=fault RUST_LOG=warn,kai_scheduler::leader=info KAI_JOB_ACK_WAIT_SECS=5
# API 1 or 2; both give webhook URLs on the first (KAI_PUBLIC_URL), the load tool also sends
# calls through the second (--also-via).
start_api() {
  local port=$API_PORT; [ "$1" = 2 ] && port=$API2_PORT
  local nats=$NATS_URL; [ "$1" = 2 ] && nats=$(proxied_nats 25222 25223 25224)
  NATS_URL=$nats KAI_API_ADDR=127.0.0.1:$port KAI_API_OPS_ADDR=127.0.0.1:$((port + 1)) KAI_PUBLIC_URL=$API \
    "$BIN/kai-api" >>"$DIR/api$1.log" 2>&1 &
  PIDS[api$1]=$!
}
wait_for_api() { for _ in $(seq 1 300); do curl -fsS "$1/health" >/dev/null 2>&1 && return; sleep 0.2; done; }
start_worker() {
  local nats=$NATS_URL db=$DATABASE_URL
  [ "$1" = 1 ] && nats=$(proxied_nats 24222 24223 24224) db=$(proxied_pg 25432)
  NATS_URL=$nats DATABASE_URL=$db KAI_WORKER_ADDR=127.0.0.1:1910$1 "$BIN/kai-worker" >>"$DIR/worker$1.log" 2>&1 &
  PIDS[worker$1]=$!
}
start_scheduler() {
  DATABASE_URL=$(proxied_pg "2$((5 + $1))432") KAI_SCHEDULER_ADDR=127.0.0.1:1920$1 \
    "$BIN/kai-scheduler" >>"$DIR/scheduler$1.log" 2>&1 &
  PIDS[scheduler$1]=$!
}
# An API that never came up fails the suite here, with its log, not later at its first call.
started_or_fail() {
  curl -fsS "$1/health" >/dev/null 2>&1 && return
  log "$2 did not start; the end of its log:"; tail -n 20 "$DIR/$2.log" >&2; exit 2
}
start_api 1; wait_for_api "$API"; started_or_fail "$API" api1 # creates the database and streams alone
start_api 2; wait_for_api "$API2"; started_or_fail "$API2" api2
for n in "${WORKERS[@]}"; do start_worker "$n"; done
start_scheduler 1; start_scheduler 2
log "NATS cluster: jobs stream led by $(jobs_leader), followers current after $(stream_state wait-current 2) s"

# A one-second timer across every scenario.
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
credentials='{"email":"faults@kai.local","password":"fault-suite-password"}'
curl -fsS -o /dev/null -X POST "$API/api/v1/auth/signup" -H 'Content-Type: application/json' -d "$credentials"
token=$(curl -fsS -X POST "$API/api/v1/auth/login" -H 'Content-Type: application/json' -d "$credentials" | json 'd["access_token"]')
timer=$(curl -fsS -X POST "$API/api/v1/workflows" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"name":"fault timer","nodes":[{"id":"t","type":"TimerStartNode","data":{"interval_seconds":1,"misfire_policy":"fire_all"}},{"id":"e","type":"EndNode"}],"edges":[{"source":"t","target":"e"}]}' \
  | json 'd["id"]')

healthy() {
  curl -fsS "$API/health/detailed" >/dev/null 2>&1 && curl -fsS "$API2/health/detailed" >/dev/null 2>&1 &&
    curl -fsS "http://127.0.0.1:19101/health/detailed" >/dev/null 2>&1 &&
    { curl -fsS "http://127.0.0.1:19201/health" >/dev/null 2>&1 || curl -fsS "http://127.0.0.1:19202/health" >/dev/null 2>&1; }
}
# Seconds from the end of an injection until the APIs, a worker and a scheduler all report healthy.
recovery() {
  local from; from=$(date +%s.%N)
  for _ in $(seq 1 600); do healthy && break; sleep 0.1; done
  python3 -c "print(f'{$(date +%s.%N) - $from:.1f}')"
}

# Each fault_<scenario> injects its fault a third of the way into the load; setup_ and
# teardown_ (optional) run before and after the load. NOTE is what the fault saw (the table's
# notes), FAULT_AT when it struck (refusals are timed from it).
fault_worker_kill() {
  local until=$((SECONDS + DURATION / 2)) n=1
  while [ $SECONDS -lt $until ]; do
    stop_pid "${PIDS[worker$n]}"; sleep 0.5; start_worker "$n"
    n=$((n % ${#WORKERS[@]} + 1)); sleep 3
  done
}
# kill -9 of the server leading the jobs stream: the other two elect a leader; the killed one
# restarts 5 s later on its store and catches up.
fault_nats_leader_kill() {
  local leader; leader=$(jobs_leader)
  if [ -z "$leader" ]; then NOTE="no leader found"; return; fi
  FAULT_AT=$(date +%s.%N)
  stop_nats "${leader#n}"
  local took; took=$(stream_state wait-leader "$leader")
  NOTE="killed leader $leader: $(jobs_leader) leads after $took s"
  sleep 5; start_nats "${leader#n}"
  NOTE="$NOTE; $leader restarted, both followers current after $(stream_state wait-current 2) s"
}
# kill -9 of a server following on the jobs stream; restarted 5 s later.
fault_nats_follower_kill() {
  local leader n; leader=$(jobs_leader)
  for n in "${NATS_SERVERS[@]}"; do [ "n$n" != "$leader" ] && break; done
  FAULT_AT=$(date +%s.%N)
  stop_nats "$n"
  sleep 5; start_nats "$n"
  NOTE="killed follower n$n ($leader leads); restarted, both followers current after $(stream_state wait-current 2) s"
}
# Every NATS server stopped (SIGTERM), all started again 2 s later on their stores.
fault_nats_restart() {
  FAULT_AT=$(date +%s.%N)
  for n in "${NATS_SERVERS[@]}"; do stop_nats "$n" -TERM; done
  sleep 2
  for n in "${NATS_SERVERS[@]}"; do start_nats "$n"; done
  NOTE="a leader $(stream_state wait-leader) s after the restart"
}
fault_postgres_restart() { as_postgres "$PG_BIN/pg_ctl" -D "$DIR/pg" -m fast -w stop >/dev/null; sleep 2; start_pg; }
fault_redis_stop() { stop_pid "${PIDS[redis]}" -TERM; sleep 5; start_redis; wait_port "$REDIS_PORT"; }
fault_scheduler_leader_kill() {
  for n in 1 2; do
    if curl -fsS "http://127.0.0.1:1920$n/health" 2>/dev/null | grep -q '"is_leader":true'; then
      stop_pid "${PIDS[scheduler$n]}"; sleep 1; start_scheduler "$n"; return
    fi
  done
}
# Synchronous callers through both APIs while a worker is killed: each still gets its run's
# answer (a redelivered job answers the API its caller waits on).
fault_sync_across_apis() { stop_pid "${PIDS[worker2]}"; sleep 0.5; start_worker 2; }
# The queue bounded to $QUEUE_MAX jobs (both APIs restarted with it: each start applies its
# limits to the stream) and no worker: it fills and calls are refused; then three workers (with
# the same limit) start and drain it, and ingest resumes by itself.
setup_full_queue() {
  for n in "${WORKERS[@]}"; do stop_pid "${PIDS[worker$n]}" -TERM; done
  for n in 1 2; do stop_pid "${PIDS[api$n]}" -TERM; KAI_JOBS_MAX_MESSAGES=$QUEUE_MAX start_api "$n"; done
  wait_for_api "$API"; wait_for_api "$API2"
}
fault_full_queue() {
  FAULT_AT=$(date +%s.%N)
  for n in "${WORKERS[@]}"; do KAI_JOBS_MAX_MESSAGES=$QUEUE_MAX start_worker "$n"; done
}
teardown_full_queue() { # the default limit again (applied by the restarts)
  for n in 1 2; do stop_pid "${PIDS[api$n]}" -TERM; start_api "$n"; done
  wait_for_api "$API"; wait_for_api "$API2"
  for n in "${WORKERS[@]}"; do stop_pid "${PIDS[worker$n]}" -TERM; start_worker "$n"; done
}

# Partitions: a link cut for PARTITION seconds (longer than every detection bound), then healed.
PARTITION=20
# Seconds (from now) until log $1 gains a line matching $3 after its first $2 lines, at most $4 s.
seen_in_log() {
  local started; started=$(date +%s.%N)
  for _ in $(seq 1 $(($4 * 10))); do
    if tail -n +"$(($2 + 1))" "$DIR/$1.log" | grep -q "$3"; then
      python3 -c "print(f'{$(date +%s.%N) - $started:.1f} s')"; return
    fi
    sleep 0.1
  done
  echo "not within $4 s"
}
log_lines() { wc -l <"$DIR/$1.log"; }
# Seconds from $4 (epoch) to the first line matching $3 in log $1 after its first $2 lines.
logged_at() {
  tail -n +"$(($2 + 1))" "$DIR/$1.log" | grep "$3" | head -1 | python3 -c "
import datetime, json, sys
line = sys.stdin.readline()
if line:
    at = datetime.datetime.fromisoformat(json.loads(line)['timestamp'].replace('Z', '+00:00'))
    print(f'{at.timestamp() - $4:.1f}')"
}
# Cuts proxy $1, waits for log $2 to say $3 (the detection), heals after PARTITION s; sets NOTE.
partition() {
  local lines; lines=$(log_lines "$2")
  FAULT_AT=$(date +%s.%N); cut "$1"
  local seen; seen=$(seen_in_log "$2" "$lines" "$3" "$PARTITION")
  sleep "$(python3 -c "print(max(0, $PARTITION - ($(date +%s.%N) - $FAULT_AT)))")"
  heal "$1"
  NOTE="$4 cut for $PARTITION s: noticed after $seen"
  # Every cut must be noticed within its documented bound (all shorter than the cut).
  case $seen in not*) NOTE="$NOTE; FAILED: the cut went unnoticed" ;; esac
}
fault_partition_worker_nats() { partition worker_nats worker1 "lost the connection to NATS" "worker 1 from NATS"; }
fault_partition_worker_pg() { partition worker_pg worker1 "PostgreSQL is unreachable" "worker 1 from PostgreSQL"; }
fault_partition_api_nats() { partition api_nats api2 "lost the connection to NATS" "API 2 from NATS"; }
# The leading scheduler cut from PostgreSQL: it must step down, and the standby lead once
# PostgreSQL ended the silent session (freeing the lock), never both at once.
scheduler_leads() { curl -fsS "http://127.0.0.1:1920$1/health" 2>/dev/null | grep -q '"is_leader":true'; }
fault_partition_scheduler_pg() {
  local leader="" n
  for n in 1 2; do scheduler_leads "$n" && leader=$n; done
  if [ -z "$leader" ]; then NOTE="FAILED: no scheduler leads"; return; fi
  local standby=$((3 - leader)) started stepped_down="" took_over="" both=0 elapsed
  local old_lines new_lines; old_lines=$(log_lines "scheduler$leader") new_lines=$(log_lines "scheduler$standby")
  started=$(date +%s.%N); FAULT_AT=$started; cut "scheduler${leader}_pg"
  while :; do
    elapsed=$(python3 -c "print(f'{$(date +%s.%N) - $started:.1f}')")
    python3 -c "import sys; sys.exit(0 if $elapsed < $PARTITION else 1)" || break
    local old=0 new=0
    scheduler_leads "$leader" && old=1
    scheduler_leads "$standby" && new=1
    [ "$old$new" = 11 ] && both=1
    [ -z "$stepped_down" ] && [ "$old" = 0 ] && stepped_down=$elapsed
    [ -z "$took_over" ] && [ "$new" = 1 ] && took_over=$elapsed
    sleep 0.2
  done
  heal "scheduler${leader}_pg"
  # The moments themselves, from the schedulers' logs (the health polling above is coarser).
  stepped_down=$(logged_at "scheduler$leader" "$old_lines" "lost leadership" "$started" || true)
  took_over=$(logged_at "scheduler$standby" "$new_lines" "became the leader" "$started" || true)
  NOTE="leader $leader cut from PostgreSQL for $PARTITION s: stepped down after ${stepped_down:-never} s, scheduler $standby led after ${took_over:-never} s"
  [ -n "$took_over" ] || NOTE="$NOTE; FAILED: no standby took over"
  [ "$both" = 0 ] || NOTE="$NOTE; FAILED: both led at once"
}

# What each scenario may answer besides 2xx: `none`; `503` (503 with Retry-After only); `any`
# (some error the caller retries on). In every case the audit must be clean.
declare -A REFUSALS=(
  [worker_kill]=none [nats_leader_kill]=503 [nats_follower_kill]=503 [nats_restart]=503
  [postgres_restart]=any [redis_stop]=none [scheduler_leader_kill]=none
  [sync_across_apis]=none [full_queue]=503
  [partition_worker_nats]=none [partition_worker_pg]=none [partition_api_nats]=503
  [partition_scheduler_pg]=none
)
rows=()
failed=0
SCENARIOS=${KAI_FAULT_SCENARIOS:-worker_kill nats_leader_kill nats_follower_kill nats_restart \
postgres_restart redis_stop scheduler_leader_kill sync_across_apis full_queue \
partition_worker_nats partition_worker_pg partition_api_nats partition_scheduler_pg large_payloads}
for scenario in $SCENARIOS; do
  [ "$scenario" = large_payloads ] && continue # after the others, below
  log "scenario $scenario: ${RATE}/s for ${DURATION}s"
  NOTE="" FAULT_AT=""
  if declare -F "setup_$scenario" >/dev/null; then "setup_$scenario"; fi
  mode=(); [ "$scenario" = sync_across_apis ] && mode=(--sync)
  "$BIN/kai-loadtest" webhook --api "$API" --also-via "$API2" "${mode[@]}" --rate "$RATE" \
    --duration "${DURATION}s" --quiet --audit-timeout 180s --json "$DIR/$scenario.json" \
    >"$DIR/$scenario.out" 2>&1 &
  load=$!
  sleep $((DURATION / 3))
  "fault_$scenario"
  took=$(recovery)
  wait "$load" || true
  if declare -F "teardown_$scenario" >/dev/null; then "teardown_$scenario"; fi
  if [ ! -s "$DIR/$scenario.json" ]; then
    log "$scenario: the load tool failed:"; cat "$DIR/$scenario.out" >&2; failed=1; continue
  fi
  row=$(python3 - "$DIR/$scenario.json" "$scenario" "$took" "${REFUSALS[$scenario]}" "$FAULT_AT" "$NOTE" <<'EOF'
import json, sys
path, name, took, allowed, fault_at, note = sys.argv[1:]
r = json.load(open(path))
a, refused = r["audit"], r["refusals"]
statuses = ", ".join(f"{n} x {s if s != '0' else 'no answer'}" for s, n in sorted(a["rejected"].items())) or "0"
problems = []
when = "-"
if refused["count"]:
    when = f'{refused["last_at_unix_s"] - refused["first_at_unix_s"]:.1f} s'
    if fault_at:
        when += f', from +{refused["first_at_unix_s"] - float(fault_at):.1f} s'
    if allowed == "none":
        problems.append("FAILED: refused calls")
    if allowed == "503" and (set(a["rejected"]) != {"503"} or refused["without_retry_after"]):
        problems.append("FAILED: a refusal other than 503 with Retry-After")
if name == "full_queue":
    if not refused["count"]:
        problems.append("FAILED: the queue never filled")
    if any(w["requests"] == w["errors"] for w in r["windows"][-3:]):
        problems.append("FAILED: ingest did not resume")
lost, dup = a["missing"] + a["unfinished"], a["duplicated"]
if lost or dup:
    problems.append("FAILED: lost or duplicated")
ran = a.get("refused_but_ran", 0)
ran = f"{ran} refused calls ran once (stored, unconfirmed)" if ran else ""
notes = "; ".join(x for x in [note, ran] + problems if x)
failed = bool(problems) or "FAILED" in note
print(f'{name}|{a["sent"]}|{a["accepted"]}|{lost}|{dup}|{statuses}|{when}|{took}|{notes}|{1 if failed else 0}')
EOF
)
  rows+=("$row")
  [ "${row##*|}" = 0 ] || failed=1
done

# Large payloads under memory pressure: the workers restarted with a 4 MiB byte bound, rounds of
# concurrent 512 KiB webhooks (far more than the bound), a worker killed in the middle; every
# call audited by its execution id, and no worker ever holding more than its bound.
BOUND=$((4 * 1024 * 1024))
case " $SCENARIOS " in *" large_payloads "*) large_payloads=1 ;; *) large_payloads="" ;; esac
run_large_payloads() {
  log "scenario large_payloads: bursts of 512 KiB bodies, workers bound to $BOUND bytes"
  for n in "${WORKERS[@]}"; do stop_pid "${PIDS[worker$n]}" -TERM; KAI_WORKER_MAX_INFLIGHT_BYTES=$BOUND start_worker "$n"; done
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
    for n in "${WORKERS[@]}"; do
      peak=$(curl -fsS "http://127.0.0.1:1910$n/metrics" | awk '$1 == "kai_worker_inflight_bytes_max" {print int($2)}')
      [ "${peak:-0}" -gt "$held" ] && held=$peak
    done
    row=$(python3 - "$DIR/large_payloads.json" "$took" "$held" "$BOUND" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
a = r["audit"]
sent = sum(round["accepted"] + sum(round["refused"].values()) for round in r["rounds"])
lost = len(a["missing"]) + a["unfinished"]
held, bound = int(sys.argv[3]), int(sys.argv[4])
problems = ["FAILED: lost"] if lost else []
if held > bound:
    problems.append("FAILED: a worker held more than its bound")
notes = "; ".join([f"most job bytes a worker held: {held:,} of {bound:,}"] + problems)
print(f'large_payloads|{sent}|{a["accepted"]}|{lost}|0|-|-|{sys.argv[2]}|{notes}|{1 if problems else 0}')
EOF
  )
    rows+=("$row")
    [ "${row##*|}" = 0 ] || failed=1
  else
    log "large_payloads: the load tool failed:"; cat "$DIR/large_payloads.out" >&2; failed=1
  fi
}
[ -z "$large_payloads" ] || run_large_payloads

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
echo "| scenario | sent | accepted | lost | duplicated | refused | refusals span | recovered (s) | notes |"
echo "|---|---|---|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
  IFS='|' read -r name sent accepted lost dup refused span took notes _ <<<"$row"
  echo "| $name | $sent | $accepted | $lost | $dup | $refused | $span | $took | $notes |"
done
echo
echo "timer (1 s, fire_all): $tick_count ticks over ${tick_span} s, $((tick_count - tick_distinct)) twice, $((tick_span - tick_distinct)) missing; $runs runs twice"
[ "$tick_count" = "$tick_distinct" ] && [ "$tick_span" = "$tick_distinct" ] && [ "$runs" = 0 ] || failed=1
exit $failed

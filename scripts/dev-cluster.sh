#!/usr/bin/env bash
# Runs the whole cluster locally: services (PostgreSQL with pgvector, NATS JetStream, Redis),
# kai-api (which applies migrations), kai-worker and kai-scheduler; then creates a demo user,
# an example webhook workflow and a timer workflow, and prints how to use them. Ctrl-C stops
# the processes.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${KAI_PROFILE:-debug}
API_ADDR=${KAI_API_ADDR:-127.0.0.1:8001}
API=${KAI_PUBLIC_URL:-http://$API_ADDR}
# Their health and metrics addresses, as the binaries default them.
WORKER_ADDR=${KAI_WORKER_ADDR:-0.0.0.0:9101}
SCHEDULER_ADDR=${KAI_SCHEDULER_ADDR:-0.0.0.0:9102}
DEMO_EMAIL=${KAI_DEMO_EMAIL:-demo@kai.local}
DEMO_PASSWORD=${KAI_DEMO_PASSWORD:-demo-password}
LOGS=.dev/logs
mkdir -p "$LOGS"

bash scripts/setup-services.sh

echo "[dev] building ($PROFILE)..."
if [ "$PROFILE" = release ]; then cargo build --release --bins; else cargo build --bins; fi
BIN=target/$PROFILE

pids=()
stop() {
  echo "[dev] stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

export KAI_API_ADDR=$API_ADDR KAI_PUBLIC_URL=$API
# Local services (e.g. the model servers of docs, custom node endpoints) run on loopback, which
# the SSRF guard refuses unless allowed: the worker's nodes and the API's HTTP and credential
# tests may reach them here.
export KAI_HTTP_ALLOWED_HOSTS=${KAI_HTTP_ALLOWED_HOSTS:-127.0.0.1,localhost}
"$BIN/kai-api" >"$LOGS/api.log" 2>&1 & pids+=($!)
for _ in $(seq 1 300); do
  curl -fsS "$API/health" >/dev/null 2>&1 && break
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "[dev] kai-api exited; see $LOGS/api.log"; tail -n 20 "$LOGS/api.log"; exit 1
  fi
  sleep 0.2
done
"$BIN/kai-worker" >"$LOGS/worker.log" 2>&1 & pids+=($!)
"$BIN/kai-scheduler" >"$LOGS/scheduler.log" 2>&1 & pids+=($!)

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

credentials="{\"email\":\"$DEMO_EMAIL\",\"password\":\"$DEMO_PASSWORD\"}"
curl -sS -o /dev/null -X POST "$API/api/v1/auth/signup" -H 'Content-Type: application/json' -d "$credentials"
token=$(curl -fsS -X POST "$API/api/v1/auth/login" -H 'Content-Type: application/json' -d "$credentials" \
  | json 'd["access_token"]')
auth="Authorization: Bearer $token"

workflow=$(curl -fsS -X POST "$API/api/v1/workflows" -H "$auth" -H 'Content-Type: application/json' \
  -d @examples/webhook-echo.json | json 'd["id"]')
read -r url secret < <(curl -fsS "$API/api/v1/webhooks?workflow_id=$workflow" -H "$auth" \
  | json 'd[0]["webhook_url"] + " " + d[0]["security_token"]')
timed=$(curl -fsS -X POST "$API/api/v1/workflows" -H "$auth" -H 'Content-Type: application/json' \
  -d @examples/timer-heartbeat.json | json 'd["id"]')
job=$(curl -fsS "$API/api/v1/jobs/scheduled?workflow_id=$timed" -H "$auth" | json 'd[0]["id"]')

cat <<EOF

[dev] cluster is up: API $API (docs $API/docs), worker $WORKER_ADDR, scheduler $SCHEDULER_ADDR; logs in $LOGS/
[dev] demo user $DEMO_EMAIL / $DEMO_PASSWORD; example workflow $workflow

Fire its webhook (waits for the result):

  curl -sS -X POST '$url' -H 'Authorization: Bearer $secret' -H 'Content-Type: application/json' -d '{"hello":"world"}'

Or asynchronously (202 as soon as the job is stored):

  curl -sS -X POST '$url' -H 'Authorization: Bearer $secret' -H 'Content-Type: application/json' -H 'Prefer: respond-async' -d '{"hello":"world"}'

A timer workflow ($timed) runs every minute; its ticks and their runs:

  curl -sS '$API/api/v1/jobs/scheduled/$job/executions' -H '$auth'

Ctrl-C stops the cluster.
EOF
wait

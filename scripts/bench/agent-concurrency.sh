#!/usr/bin/env bash
# One worker holding many concurrent Agent runs that wait on a slow model server: fires
# RATE webhooks a second for DURATION at a webhook → Agent (OpenAIChat) → End workflow whose
# model answers after LATENCY seconds, samples the worker's resident memory meanwhile, and
# reports its peak, the most runs the model server held at once and the audit.
# Needs release binaries (cargo build --release --bins) and the local services.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${BIN:-target/release}
RATE=${RATE:-600}
DURATION=${DURATION:-6s}
LATENCY=${LATENCY:-2}
CONCURRENCY=${CONCURRENCY:-1400}
MODEL_PORT=${MODEL_PORT:-18311}
API_ADDR=127.0.0.1:18301
API=http://$API_ADDR
WORK=$(mktemp -d)
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/kai_bench_agent}
export KAI_NATS_PREFIX=${KAI_NATS_PREFIX:-benchagent$$}
export RUST_LOG=warn

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

python3 scripts/bench/fake-model.py "$MODEL_PORT" "$LATENCY" & pids+=($!)
KAI_API_ADDR=$API_ADDR KAI_API_OPS_ADDR=off KAI_PUBLIC_URL=$API "$BIN/kai-api" >"$WORK/api.log" 2>&1 & pids+=($!)
for _ in $(seq 1 150); do curl -fsS "$API/health" >/dev/null 2>&1 && break; sleep 0.2; done
KAI_WORKER_ADDR=127.0.0.1:18302 KAI_WORKER_CONCURRENCY=$CONCURRENCY \
  KAI_OPENAI_BASE_URL=http://127.0.0.1:$MODEL_PORT/v1 \
  "$BIN/kai-worker" >"$WORK/worker.log" 2>&1 & worker=$!; pids+=($worker)
for _ in $(seq 1 150); do curl -fsS http://127.0.0.1:18302/health >/dev/null 2>&1 && break; sleep 0.2; done

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
user="{\"email\":\"bench$$@example.com\",\"password\":\"bench-password\"}"
curl -fsS -o /dev/null -X POST "$API/api/v1/auth/signup" -H 'Content-Type: application/json' -d "$user"
token=$(curl -fsS -X POST "$API/api/v1/auth/login" -H 'Content-Type: application/json' -d "$user" | json 'd["access_token"]')
workflow=$(curl -fsS -X POST "$API/api/v1/workflows" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"name": "slow agent", "nodes": [
    {"id": "hook", "type": "WebhookTrigger", "data": {"rate_limit_per_minute": 10000000}},
    {"id": "agent", "type": "Agent", "data": {"system_prompt": "Be brief."}},
    {"id": "model", "type": "OpenAIChat", "data": {"model_name": "bench", "timeout": 60}},
    {"id": "end", "type": "EndNode"}],
  "edges": [{"source": "hook", "sourceHandle": "webhook_data", "target": "agent"},
    {"source": "model", "sourceHandle": "llm", "target": "agent", "targetHandle": "llm"},
    {"source": "agent", "target": "end"}]}' | json 'd["id"]')
read -r url secret < <(curl -fsS "$API/api/v1/webhooks?workflow_id=$workflow" -H "Authorization: Bearer $token" \
  | json 'd[0]["webhook_url"] + " " + d[0]["security_token"]')

rss() { awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$worker/status"; }
echo "[bench] worker idle: $(rss) MiB resident"
peak=0
( while kill -0 "$worker" 2>/dev/null; do rss; sleep 0.1; done ) >"$WORK/rss" &
sampler=$!
"$BIN/kai-loadtest" webhook --api "$API" --webhook-url "$url" --webhook-token "$secret" \
  --access-token "$token" --workflow-id "$workflow" --rate "$RATE" --duration "$DURATION" \
  --max-in-flight 4096 --quiet --audit-timeout 120s
kill "$sampler" 2>/dev/null || true
peak=$(sort -n "$WORK/rss" | tail -1)
echo "[bench] worker peak: $peak MiB resident; after: $(rss) MiB"
echo "[bench] model server: $(curl -fsS http://127.0.0.1:$MODEL_PORT/stats)"

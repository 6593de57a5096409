#!/usr/bin/env bash
# Checks the deployment files offline, failing on the first problem:
#   Dockerfile          hadolint
#   docker-compose.yml  the Compose specification's schema, yamllint
#   helm/kai-fusion     values.schema.json against its metaschema; for the default values and
#                       every helm/kai-fusion/ci/*-values.yaml: helm lint --strict; helm template
#                       for the oldest and a recent supported Kubernetes version, each output
#                       validated against that version's schemas (strict: unknown fields fail);
#                       KEDA and Prometheus Operator resources against their CRD schemas.
# Tools: scripts/setup-deploy-tools.sh (run first, idempotent). What the rendered output must
# contain (probes, security context, the KEDA trigger, the migration hook) is asserted by the
# Rust tests in each crate's tests/it/deployment.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-deploy-tools.sh
TOOLS=${KAI_TOOLS_DIR:-$HOME/.cache/kai-fusion/tools}
HELM=$TOOLS/helm/helm
BIN=$TOOLS/venv/bin
CHART=helm/kai-fusion
KUBERNETES_VERSIONS="1.25.0 1.34.0"
OUT=target/deploy-check
rm -rf "$OUT" && mkdir -p "$OUT"

log() { printf '[check-deploy] %s\n' "$*" >&2; }

log "Dockerfile"
"$BIN/hadolint" Dockerfile

log "docker-compose.yml"
"$BIN/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
"$BIN/yamllint" --strict -c .yamllint.yaml docker-compose.yml "$CHART/values.yaml" "$CHART"/ci/*.yaml "$CHART/Chart.yaml"

log "values.schema.json"
"$BIN/check-jsonschema" --check-metaschema "$CHART/values.schema.json"

for values in default "$CHART"/ci/*-values.yaml; do
  name=$(basename "$values" -values.yaml)
  args=()
  [ "$values" = default ] || args=(-f "$values")
  log "chart: $name"
  "$HELM" lint --strict "${args[@]}" "$CHART" >"$OUT/$name.lint" || { cat "$OUT/$name.lint"; exit 1; }
  for version in $KUBERNETES_VERSIONS; do
    rendered=$OUT/$name-$version.yaml
    "$HELM" template kai-fusion "$CHART" --namespace kai --kube-version "$version" "${args[@]}" >"$rendered"
    # Rendered output: duplicate keys (which YAML parsers silently resolve) and syntax only.
    "$BIN/yamllint" -d '{rules: {key-duplicates: enable}}' "$rendered"
    report=$("$BIN/kubernetes-validate" --strict --kubernetes-version "$version" --quiet "$rendered" 2>&1) ||
      { echo "$report"; exit 1; }
    # Only the custom resources validated below may lack a Kubernetes schema.
    unknown=$(printf '%s\n' "$report" | grep "Couldn't find schema" |
      grep -v -e "kind ScaledObject with api version keda.sh/v1alpha1" \
              -e "kind ServiceMonitor with api version monitoring.coreos.com/v1" || true)
    [ -z "$unknown" ] || { echo "$unknown"; exit 1; }
    "$BIN/python" -c 'import json, sys, yaml
json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], open(sys.argv[2], "w"))' \
      "$rendered" "${rendered%.yaml}.json"
    node scripts/validate-custom-resources.mjs "$TOOLS/node" "${rendered%.yaml}.json" >"${rendered%.yaml}.crds"
  done
done
log "all deployment checks passed ($(ls "$OUT"/*.yaml | wc -l) renders: configurations × Kubernetes versions)"

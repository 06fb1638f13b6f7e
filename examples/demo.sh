#!/usr/bin/env bash
# The demo: set up, compile the example tiny Llama for the CPU, generate text from the artifact.
#   bash examples/demo.sh
set -euo pipefail
RMBUILD_EXTRAS="${RMBUILD_EXTRAS:-onnx,serve}"
source "$(dirname "${BASH_SOURCE[0]}")/../.ci/venv.sh"

rmbuild compile examples/tiny-llama/model.yaml --target cpu --tag tiny-llama-cpu
rmbuild compile examples/tiny-llama/model.yaml --target cpu   # again: a cache hit
rmbuild ls
rmbuild run --artifact tiny-llama-cpu --prompt "The future of AI is" --max-tokens 32

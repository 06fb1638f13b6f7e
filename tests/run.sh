#!/usr/bin/env bash
# Set up and run the whole test suite:
#   bash tests/run.sh [pytest args]
set -euo pipefail
RMBUILD_EXTRAS="${RMBUILD_EXTRAS:-onnx,openvino,iree,ray,dev}"
source "$(dirname "${BASH_SOURCE[0]}")/../.ci/venv.sh"
exec python -m pytest -q "$@"

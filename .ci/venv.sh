# Sourced by examples/demo.sh and tests/run.sh: make (or reuse) the venv and install rmbuild
# with the extras given in $RMBUILD_EXTRAS. Re-installs only when pyproject.toml or the extras
# change, so the second run starts at once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RMBUILD_VENV:-$ROOT/.venv}"
EXTRAS="${RMBUILD_EXTRAS:-onnx}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "rmbuild: creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)-$EXTRAS"
stamp="$VENV/.rmbuild-installed"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "rmbuild: installing rmbuild[$EXTRAS] into $VENV (first run takes a minute)" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip \
    2> >(grep -v "^WARNING: Location" >&2)
  # torch is pinned to 2.13.0 in pyproject.toml: on these machines pip's find-links hold its CPU
  # wheel; elsewhere add PyTorch's CPU index (--extra-index-url .../whl/cpu) to avoid a CUDA build.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[$EXTRAS]" \
    2> >(grep -v "^WARNING: Location" >&2)
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"

# Sourced by examples/demo.sh and tests/run.sh: make (or reuse) the venv and install rmbuild
# with the extras given in $RMBUILD_EXTRAS. Re-installs only when pyproject.toml changes or an
# extra the venv lacks is asked for, so the second run starts at once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RMBUILD_VENV:-$ROOT/.venv}"
EXTRAS="${RMBUILD_EXTRAS:-onnx}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "rmbuild: creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
# The stamp holds the pyproject digest and the extras installed. A run that asks for extras the
# venv already has (the demo's `onnx` after the tests' full set) installs nothing.
digest="$(sha256sum < "$ROOT/pyproject.toml" | cut -c1-16)"
stamp="$VENV/.rmbuild-installed"
have="$(cat "$stamp" 2>/dev/null || true)"
need_install=0
if [ "${have%%-*}" != "$digest" ]; then
  need_install=1
else
  IFS=, read -ra _want <<<"$EXTRAS"
  for extra in "${_want[@]}"; do
    case ",${have#*-}," in *",$extra,"*) ;; *) need_install=1 ;; esac
  done
fi
want="$digest-$EXTRAS"
# Same pyproject: what was installed before is still there, so the stamp keeps the union.
[ "${have%%-*}" = "$digest" ] && want="$want,${have#*-}"
if [ "$need_install" = 1 ]; then
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

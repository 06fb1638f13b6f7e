#!/usr/bin/env bash
# GPU check: the first thing to run on a machine with an NVIDIA GPU. It prints the resource
# facts, builds and runs the example tiny Llama for the CPU (the reference), IREE CUDA, and
# TensorRT where its runtime (the tensorrt module, in rmbuild's own Python) and the matching
# toolchain's trtexec are installed, and compares each one's greedy text with the CPU's. A few
# minutes at most; never part of CI (it needs the GPU).
#
#   bash bench/gpu_check.sh            # the active environment's `rmbuild`
#   RMBUILD=/path/to/rmbuild KEEP=1 bash bench/gpu_check.sh
#
# TensorRT: the runtime's major picks the path. 10.x: profile tensorrt-fp16 (toolchain
# `tensorrt`) at fp32 and fp16; 11.x: profile tensorrt-strong (toolchain `tensorrt11`), fp32
# straight from the export and fp16 after modelopt-autocast. The fp32 plans are built with
# `tf32: false` (trtexec's --noTF32): TF32, trtexec's default, keeps about fp16's mantissa, so
# only a strict fp32 plan can be held to the CPU's exact text.
#
# It fails loudly: every build and every run must succeed (fp16 included); an fp32 target
# must give the CPU's text exactly (an fp16 one may differ: shown, not failed). One summary
# table at the end, a log per command.
#
# Exit 0: everything that ran passed, and at least one GPU path ran (skips are listed);
#      1: something failed (see the table and its log);
#     77: nothing was checked on a GPU: no NVIDIA GPU here, or neither IREE CUDA nor
#         TensorRT is installed (not a success: the check did not happen).
# Logs and the throwaway store are kept on failure, and always with KEEP=1; the last lines
# say where.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RMBUILD="${RMBUILD:-rmbuild}"
PROMPT="${PROMPT:-The future of AI is}"
TOKENS="${TOKENS:-16}"
LIMIT="${LIMIT:-900}"   # seconds per command: a cold TensorRT build of the tiny model is ~1 min
KEEP="${KEEP:-0}"

die() { echo "gpu_check: FAILED: $*" >&2; exit 1; }

if ! command -v "$RMBUILD" >/dev/null; then
  die "no \`$RMBUILD\` on PATH (activate rmbuild's environment, or set RMBUILD=/path/to/rmbuild)"
fi
# rmbuild's own interpreter: the one whose packages (tensorrt, iree.runtime) `run` will import.
# `python3` from PATH may be another environment entirely.
PY="${RMBUILD_PYTHON:-$(sed -n '1s/^#![[:space:]]*//p' "$(command -v "$RMBUILD")" | cut -d' ' -f1)}"
if [ -z "$PY" ] || ! "$PY" -c 'import rmbuild' 2>/dev/null; then
  die "cannot find the Python that runs \`$RMBUILD\` (got '${PY}'); set RMBUILD_PYTHON"
fi

if ! command -v nvidia-smi >/dev/null; then
  echo "gpu_check: NOT CHECKED: no nvidia-smi here, so no NVIDIA GPU to check (exit 77)" >&2
  exit 77
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rmbuild-gpu-check.XXXXXX")"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
export RMBUILD_STORE="$WORK/store"   # a store of its own: every build is cold
status=0
ROWS=()   # "check|result|detail|log"
row() { ROWS+=("$1|$2|${3//|//}|$4"); }  # a "|" in a detail would split its row
fail() {  # check detail log: a FAIL row, said at once with the log's last lines
  status=1
  row "$1" "FAIL" "$2" "$3"
  echo "   $1: FAILED: $2 (log: $3)" >&2
  if [ -s "$3" ]; then tail -n 5 "$3" | sed 's/^/   | /' >&2; fi
}

finish() {
  echo
  echo "== summary"
  printf '%-12s %-8s %-60s %s\n' CHECK RESULT DETAIL LOG
  local r check result detail log
  for r in "${ROWS[@]}"; do
    IFS='|' read -r check result detail log <<<"$r"
    printf '%-12s %-8s %-60s %s\n' "$check" "$result" "$detail" "$log"
  done
  local ran=0
  for r in "${ROWS[@]}"; do
    case "$r" in iree-cuda\|PASS*|iree-cuda\|FAIL*|trt-*\|PASS*|trt-*\|FAIL*) ran=1 ;; esac
  done
  if [ "$status" = 0 ] && [ "$ran" = 0 ]; then
    echo "gpu_check: NOT CHECKED: neither IREE CUDA nor TensorRT is installed for rmbuild's"
    echo "   Python ($PY): nothing ran on the GPU (exit 77)"
    status=77
  fi
  if [ "$status" = 0 ] && [ "$KEEP" != 1 ]; then
    rm -rf "$WORK"
    echo "gpu_check: PASSED (logs removed; KEEP=1 keeps them)"
  else
    echo "gpu_check: $([ "$status" = 0 ] && echo PASSED || echo "exit $status"); logs and store kept in $WORK"
  fi
  exit "$status"
}

echo "== resource facts (logs in $LOGS)"
if nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader \
     >"$LOGS/nvidia-smi.log" 2>&1; then
  cat "$LOGS/nvidia-smi.log"
  row "gpu" "PASS" "$(head -1 "$LOGS/nvidia-smi.log")" "$LOGS/nvidia-smi.log"
else
  fail "gpu" "nvidia-smi found no usable GPU (driver not loaded?)" "$LOGS/nvidia-smi.log"
  finish
fi
for what in info backends; do
  if ! timeout "$LIMIT" "$RMBUILD" "$what" >"$LOGS/$what.log" 2>&1; then
    fail "$what" "\`rmbuild $what\` failed" "$LOGS/$what.log"
  fi
  cat "$LOGS/$what.log"
done

# TensorRT's path, decided by the runtime the `run` step will import.
TRT="$("$PY" - <<'EOF' 2>&1
import sys
try:
    import tensorrt
except Exception as exc:  # absent, or a stub wheel whose libraries never arrived
    print(f"skip|the tensorrt module does not import in {sys.executable}: {exc}"[:300])
    sys.exit(0)
major = int(str(tensorrt.__version__).split(".")[0])
name = "tensorrt11" if major >= 11 else "tensorrt"
try:
    from rmbuild.toolrun.toolchains import find_toolchain

    trtexec = find_toolchain(name).which("trtexec")
except Exception as exc:  # noqa: BLE001 - said in the table
    msg = getattr(exc, "message", None) or exc
    print(f"skip|TensorRT {tensorrt.__version__} here, but toolchain {name!r} has no trtexec: {msg}")
    sys.exit(0)
print(f"ok|{major}|{tensorrt.__version__}|{trtexec}")
EOF
)"
TRT_MAJOR=""
case "$TRT" in
  ok\|*) IFS='|' read -r _ TRT_MAJOR TRT_VERSION TRTEXEC <<<"$TRT"
          echo "== tensorrt: runtime $TRT_VERSION, trtexec $TRTEXEC" ;;
  *) echo "== tensorrt: ${TRT#skip|}" ;;
esac

{
  echo "name: tiny-llama-gpu-check"
  echo "source: {path: $ROOT/examples/tiny-llama/model, format: hf}"
  echo "targets:"
  echo "  cpu: {profile: onnxruntime-cpu}"
  echo "  iree-cuda: {profile: iree-cuda}"
  if [ "$TRT_MAJOR" = 10 ]; then
    echo "  trt-fp32: {profile: tensorrt-fp16, flags: {precision: fp32, tf32: false, max_seq: 64}}"
    echo "  trt-fp16: {profile: tensorrt-fp16, flags: {precision: fp16, max_seq: 64}}"
  elif [ -n "$TRT_MAJOR" ]; then
    echo "  trt-fp32: {profile: tensorrt-strong, depends_on: onnx-export, flags: {tf32: false, max_seq: 64}}"
    echo "  trt-fp16: {profile: tensorrt-strong, flags: {max_seq: 64}}"
  fi
} >"$WORK/model.yaml"

TEXT=""
text_of() {  # target -> sets TEXT; 0 on success, else 1 with the failing step's log in LOG
  local target="$1" id
  LOG="$LOGS/$target.compile.log"
  if ! timeout "$LIMIT" "$RMBUILD" compile "$WORK/model.yaml" -t "$target" --json \
       >"$WORK/$target.compile.json" 2>"$LOG"; then
    STEP="build"; return 1
  fi
  if ! id="$("$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["artifact"])' \
            <"$WORK/$target.compile.json" 2>>"$LOG")"; then
    STEP="build (no artifact id in its output)"; return 1
  fi
  echo "   built $target: $id"
  LOG="$LOGS/$target.run.log"
  if ! timeout "$LIMIT" "$RMBUILD" run --artifact "$id" --prompt "$PROMPT" -n "$TOKENS" --json \
       >"$WORK/$target.run.json" 2>"$LOG"; then
    STEP="run"; return 1
  fi
  # (No backslash inside an f-string: Python before 3.12 refuses it.)
  if ! TEXT="$("$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d["text"]); print("   %s tok/s" % d["tokens_per_s"], file=sys.stderr)' \
               <"$WORK/$target.run.json" 2>>"$LOG")"; then
    STEP="run (no text in its output)"; return 1
  fi
  tail -1 "$LOG"
  return 0
}

echo "== cpu (reference)"
if ! text_of cpu; then
  fail "cpu" "the CPU reference failed to $STEP (is rmbuild[onnx] installed?)" "$LOG"
  finish
fi
REFERENCE="$TEXT"
row "cpu" "PASS" "reference: ${REFERENCE:0:50}" "$LOGS/cpu.run.log"
echo "   cpu: $REFERENCE"

compare() {  # target exact(1|0)
  local target="$1" exact="$2"
  echo "== $target"
  if ! text_of "$target"; then
    fail "$target" "failed to $STEP" "$LOG"
    return
  fi
  if [ "$TEXT" = "$REFERENCE" ]; then
    row "$target" "PASS" "same text as the CPU" "$LOG"
  elif [ "$exact" = 1 ]; then
    fail "$target" "DIFFERS from the CPU: ${TEXT:0:40}" "$LOG"
  else
    row "$target" "PASS" "fp16, differs (shown, not failed): ${TEXT:0:28}" "$LOG"
    echo "   $target: differs from the CPU (fp16): $TEXT"
  fi
}

if "$PY" -c 'import iree.runtime' 2>/dev/null; then
  compare iree-cuda 1
else
  row "iree-cuda" "SKIP" "iree.runtime does not import in rmbuild's Python" "-"
fi

if [ -n "$TRT_MAJOR" ]; then
  compare trt-fp32 1
  compare trt-fp16 0
else
  row "tensorrt" "SKIP" "$(echo "${TRT#skip|}" | cut -c1-60)" "-"
fi
finish

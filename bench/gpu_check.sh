#!/usr/bin/env bash
# GPU check (issue 8): on a machine with an NVIDIA GPU, print the resource facts, build and run
# the example tiny Llama for the CPU (the reference), IREE CUDA, and TensorRT where its
# toolchain (trtexec) and runtime (the tensorrt module) are installed, and compare each one's
# greedy tokens with the CPU's. A few minutes at most; never part of CI (it needs the GPU).
#
#   bash bench/gpu_check.sh            # uses the active environment's `rmbuild`
#
# Exit 0: every fp32 target gave the CPU's text (fp16 differences are reported, not failed);
# 1: an fp32 target differed or failed; 0 with "skipped" lines where a backend is absent.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RMBUILD="${RMBUILD:-rmbuild}"
PROMPT="${PROMPT:-The future of AI is}"
TOKENS="${TOKENS:-16}"
LIMIT="${LIMIT:-300}"   # seconds per command

if ! command -v nvidia-smi >/dev/null; then
  echo "gpu_check: no nvidia-smi here: no NVIDIA GPU to check (skipped)"
  exit 0
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rmbuild-gpu-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export RMBUILD_STORE="$WORK/store"   # a store of its own: cold builds, nothing left behind

echo "== resource facts"
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader
timeout "$LIMIT" "$RMBUILD" info || true
timeout "$LIMIT" "$RMBUILD" backends || true

cat >"$WORK/model.yaml" <<EOF
name: tiny-llama-gpu-check
source: {path: $ROOT/examples/tiny-llama/model, format: hf}
targets:
  cpu: {profile: onnxruntime-cpu}
  iree-cuda: {profile: iree-cuda}
  trt-fp32: {profile: tensorrt-fp16, flags: {precision: fp32, max_seq: 64}}
  trt-fp16: {profile: tensorrt-fp16, flags: {precision: fp16, max_seq: 64}}
EOF

text_of() {  # target -> the generated text (empty on failure); the log goes to stderr
  local target="$1" id
  id="$(timeout "$LIMIT" "$RMBUILD" compile "$WORK/model.yaml" -t "$target" --json \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["artifact"])')" || return 1
  echo "   built $target: $id" >&2
  timeout "$LIMIT" "$RMBUILD" run --artifact "$id" --prompt "$PROMPT" -n "$TOKENS" --json \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["text"]); print(f"   {d[\"tokens_per_s\"]} tok/s", file=sys.stderr)'
}

status=0
echo "== cpu (reference)"
if ! reference="$(text_of cpu)"; then
  echo "gpu_check: the CPU reference failed to build or run (is rmbuild[onnx] installed?)"
  exit 1
fi
echo "   cpu: $reference"

compare() {  # target exact(1|0)
  local target="$1" exact="$2" got
  echo "== $target"
  if ! got="$(text_of "$target")"; then
    echo "   $target: FAILED to build or run (see above)"
    [ "$exact" = 1 ] && status=1
    return
  fi
  if [ "$got" = "$reference" ]; then
    echo "   $target: same text as the CPU"
  elif [ "$exact" = 1 ]; then
    echo "   $target: DIFFERS from the CPU: $got"; status=1
  else
    echo "   $target: differs from the CPU (fp16, reported only): $got"
  fi
}

if python3 -c 'import iree.runtime' 2>/dev/null; then
  compare iree-cuda 1
else
  echo "== iree-cuda: skipped (rmbuild[iree] not installed)"
fi

if "$RMBUILD" backends --json | python3 -c \
   'import json,sys; r={b["name"]: b for b in json.load(sys.stdin)}; sys.exit(0 if r.get("tensorrt",{}).get("available") else 1)' \
   && python3 -c 'from rmbuild.toolchains import find_toolchain; find_toolchain("tensorrt").which("trtexec")' 2>/dev/null; then
  compare trt-fp32 1
  compare trt-fp16 0
else
  echo "== tensorrt: skipped (the tensorrt module, or trtexec in toolchain tensorrt, is missing:"
  echo "   see \`rmbuild backends\` and profiles/toolchains/tensorrt.yaml)"
fi
exit "$status"

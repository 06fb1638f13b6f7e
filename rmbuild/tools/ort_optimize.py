"""ONNX Runtime offline graph optimizer, as a command-line tool.

rmbuild runs this file as a black-box CLI inside the ONNX toolchain's interpreter (it imports
nothing from rmbuild, so the toolchain need not have rmbuild installed). ONNX Runtime's own way
to optimize offline is a session with ``optimized_model_filepath``; this wraps exactly that.
Its sha256 is part of the action key of the stages that run it.

    python ort_optimize.py --input model.onnx --output out/model.onnx --level extended
"""

from __future__ import annotations

import argparse
import sys
import time

LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    # ALL may bake CPU-specific layouts into the graph: not portable across machines.
    "all": "ORT_ENABLE_ALL",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="ONNX model to optimize")
    parser.add_argument("--output", required=True, help="where to write the optimized model")
    parser.add_argument("--level", choices=sorted(LEVELS), default="extended")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = ORT default)")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    print(
        f"onnxruntime {ort.__version__}: optimizing {args.input} at level {args.level}", flush=True
    )
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[args.level])
    options.optimized_model_filepath = args.output
    options.intra_op_num_threads = args.threads
    started = time.monotonic()
    session = ort.InferenceSession(args.input, options, providers=["CPUExecutionProvider"])
    print(f"inputs: {[i.name for i in session.get_inputs()]}", flush=True)
    print(f"wrote {args.output} in {time.monotonic() - started:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

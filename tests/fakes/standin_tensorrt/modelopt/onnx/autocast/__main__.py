"""STAND-IN for ``python -m modelopt.onnx.autocast`` (tests only).

Parses the documented command line (``--onnx_path`` required; ``--output_path``,
``--low_precision_type {fp16,bf16}``, ``--keep_io_types``, ``--data_max``, ``--init_max``,
``--op_types_to_exclude``/``--nodes_to_exclude`` lists, ``--log_level``) with argparse as the
real one does, so an unknown or misspelt flag fails the same way (exit 2), and writes the
input graph's bytes plus a marker of the precision it was asked for.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelopt.onnx.autocast")
    parser.add_argument("--onnx_path", required=True)
    parser.add_argument("--output_path")
    parser.add_argument("--low_precision_type", choices=["fp16", "bf16"], default="fp16")
    parser.add_argument("--calibration_data")
    parser.add_argument("--nodes_to_exclude", nargs="*")
    parser.add_argument("--op_types_to_exclude", nargs="*")
    parser.add_argument("--data_max", type=float)
    parser.add_argument("--init_max", type=float)
    parser.add_argument("--keep_io_types", action="store_true")
    parser.add_argument(
        "--log_level", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], default="INFO"
    )
    args = parser.parse_args(argv)
    with open(args.onnx_path, "rb") as f:
        data = f.read()
    output = args.output_path or args.onnx_path.replace(".onnx", f".{args.low_precision_type}.onnx")
    with open(output, "wb") as f:
        f.write(data + f"\n# standin autocast {args.low_precision_type}\n".encode())
    print(f"[I] AutoCast (stand-in): wrote {output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

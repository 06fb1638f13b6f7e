"""Compile an HF model for a Rebellions ATOM NPU with optimum-rbln, run by the ``rbln``
toolchain's Python. Compile only: no NPU is needed here.

It calls optimum-rbln's documented API (0.12 names, docs/toolchains.md)::

    RBLN<Arch>.from_pretrained(model, export=True, rbln_npu=SKU, rbln_create_runtimes=False,
                               rbln_num_devices=N, rbln_batch_size=B, rbln_max_seq_len=S)
    .save_pretrained(output)

and leaves what vllm-rbln and ``from_pretrained(output, export=False)`` load without compiling
again: ``prefill.rbln``, ``decoder_batch_<b>.rbln``, ``rbln_config.json``, the HF config and
tokenizer. An explicit SKU and ``rbln_create_runtimes=False`` are what let a host without an
NPU compile. Exit codes: 3 a setup the compile cannot start with (the SDK's
``rebel`` missing, no RBLN class for the architecture), 4 the compile failed (the SDK's own
message above it, verbatim). Standard library only at import: it runs in the vendor's env.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

EXIT_SETUP = 3
EXIT_COMPILE = 4


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rbln_compile")
    parser.add_argument("--model", required=True, help="HF model folder")
    parser.add_argument("--output", required=True)
    parser.add_argument("--npu", required=True, help="target SKU, e.g. RBLN-CA25")
    parser.add_argument("--num-devices", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument(
        "--max-seq-len", type=int, default=None, help="default: max_position_embeddings"
    )
    parser.add_argument("--class", dest="cls", default=None, help="optimum-rbln class name")
    return parser.parse_args(argv)


def rbln_class_name(config: dict) -> str:
    """``LlamaForCausalLM`` -> ``RBLNLlamaForCausalLM`` (optimum-rbln's naming)."""
    archs = config.get("architectures") or []
    if not archs:
        return "RBLNAutoModelForCausalLM"
    return "RBLN" + str(archs[0])


def main(argv: list[str]) -> int:
    args = _args(argv)
    config = json.loads((Path(args.model) / "config.json").read_text())
    name = args.cls or rbln_class_name(config)
    # Passed explicitly either way, so rbln_config.json and the log say what was compiled.
    max_seq_len = args.max_seq_len or config.get("max_position_embeddings")
    try:
        import rebel  # noqa: F401 - the compiler itself (rebel-compiler)
    except ImportError as exc:
        print(
            f"rmbuild: the Rebellions compiler is not importable in this environment ({exc}).\n"
            "rmbuild: rebel-compiler comes only from Rebellions' own package index: install it "
            "into the rbln toolchain, or point profiles/toolchains/rbln.yaml's `python:` at an "
            "environment that has it (the RBLN SDK's).",
            flush=True,
        )
        return EXIT_SETUP
    import optimum.rbln as orbln

    cls = getattr(orbln, name, None)
    if cls is None:
        known = sorted(n for n in dir(orbln) if n.startswith("RBLN") and n.endswith("ForCausalLM"))
        print(
            f"rmbuild: optimum-rbln {getattr(orbln, '__version__', '?')} has no class {name} "
            f"for this model's architecture {config.get('architectures')}.\n"
            f"rmbuild: causal-LM classes it has: {', '.join(known) or 'none'}",
            flush=True,
        )
        return EXIT_SETUP
    kwargs = {
        "export": True,
        "rbln_npu": args.npu,
        "rbln_create_runtimes": False,
        "rbln_num_devices": args.num_devices,
        "rbln_batch_size": args.batch_size,
        "rbln_max_seq_len": max_seq_len,
    }
    print(f"rmbuild: {name}.from_pretrained({args.model!r}, {kwargs})", flush=True)
    try:
        model = cls.from_pretrained(args.model, **kwargs)
        model.save_pretrained(args.output)
    except Exception:  # noqa: BLE001 - the SDK's message, verbatim, is what the user needs
        traceback.print_exc()
        sys.stderr.flush()
        return EXIT_COMPILE
    print(f"rmbuild: saved to {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

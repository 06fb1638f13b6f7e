"""Load a compiled RBLN artifact and generate, run by the ``rbln`` toolchain's Python.

``rbln_run.py devices`` prints one JSON line: ``rebel.__version__``, ``rebel.device_count()``
and ``rebel.get_npu_name(i)`` for each device (the facts rmbuild checks an artifact against
before loading it).

``rbln_run.py serve ARTIFACT --device 0 [--device 1 ...]`` loads the folder with
``from_pretrained(ARTIFACT, export=False, rbln_device=[...])`` (never a compile: the .rbln
files are used as they are), prints ``{"ready": ...}``, then answers one JSON request a line on
stdin, ``{"ids": [...], "max_new_tokens": n}``, with ``{"ids": [...]}`` (greedy
``generate``). Any failure prints ``{"error": ...}`` after the SDK's own message (on stderr,
verbatim) and exits 4.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

EXIT_FAILED = 4


def devices() -> dict:
    import rebel

    count = int(rebel.device_count())
    names = [rebel.get_npu_name(i) for i in range(count)]
    return {"rebel_version": getattr(rebel, "__version__", None), "count": count, "names": names}


def _class_for(artifact: Path):  # noqa: ANN202 - an optimum-rbln class
    import optimum.rbln as orbln

    rbln_config = json.loads((artifact / "rbln_config.json").read_text())
    # rbln_config.json names the config class (RBLNLlamaForCausalLMConfig): the model class
    # is that name less "Config".
    name = str(rbln_config.get("cls_name", "")).removesuffix("Config")
    cls = getattr(orbln, name, None)
    if cls is None:
        raise RuntimeError(f"optimum-rbln has no class {name!r} (from rbln_config.json)")
    return cls


def serve(artifact: Path, device_ids: list[int]) -> int:
    import torch

    cls = _class_for(artifact)
    model = cls.from_pretrained(str(artifact), export=False, rbln_device=device_ids)
    print(json.dumps({"ready": True, "class": cls.__name__}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        ids = torch.tensor([request["ids"]], dtype=torch.long)
        out = model.generate(ids, max_new_tokens=int(request["max_new_tokens"]), do_sample=False)
        print(json.dumps({"ids": out[0, ids.shape[1] :].tolist()}), flush=True)
    return 0


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["devices"]:
            print(json.dumps(devices()), flush=True)
            return 0
        if argv[:1] == ["serve"] and len(argv) >= 2:
            ids = [int(argv[i + 1]) for i, a in enumerate(argv) if a == "--device"]
            return serve(Path(argv[1]), ids or [0])
        print("usage: rbln_run.py devices | serve ARTIFACT --device N ...", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the SDK's message goes to rmbuild verbatim
        traceback.print_exc()
        sys.stderr.flush()
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``--to vllm-rbln``: the optimum-rbln compiled folder and the ``vllm serve`` flags vllm-rbln
agrees with.

vllm-rbln 0.12 (a vLLM platform plugin) takes a folder as compiled when ``rbln_config.json``
is in it (``vllm_rbln/utils/optimum/paths.py``, ``is_compiled_dir``), and then the compiled
model is the source of truth: ``vllm_rbln/utils/optimum/converter/from_optimum.py``,
``sync_from_optimum``, asserts that ``kvcache_num_blocks`` ("num_blocks"), ``batch_size``,
``max_seq_len`` and ``kvcache_block_size`` are there (read by
``converter/params.py``, ``RBLNParams._parse_decoder``; ``_resolve_kvcache_block_size`` takes
``kvcache_partition_len`` in place of the block size and requires the two equal where both are
given) and overwrites vLLM's ``max_num_seqs`` with ``batch_size``, ``max_model_len`` with
``max_seq_len``, ``block_size`` with ``kvcache_block_size`` (``converter/common.py``,
``update_block_size``; with prefix caching the block must be a multiple of the prefill chunk)
and the dtype with the compiled one. A command whose flags say otherwise is silently served
with other limits than it states, so the flags written here are exactly the compiled values,
and :func:`check` holds the written folder to those rules. ``RBLN_VISIBLE_DEVICES`` (read by
``vllm_rbln/platform``) names as many ATOM devices as the artifact was compiled for.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rmbuild.errors import IncompatibleArtifact, InternalError
from rmbuild.handoff.artifact import Artifact, engines_for, only_one, refuse, refuse_len
from rmbuild.handoff.bundle import Command, ExportOptions, Link, Plan, Rel

ENGINE = "vllm-rbln"
TITLE = "vllm-rbln (vLLM on Rebellions ATOM)"
MODEL_DIR = "model"
RBLN_CONFIG = "rbln_config.json"
SOURCE = "vllm-rbln 0.12.0: vllm_rbln/utils/optimum/converter/params.py, from_optimum.py"
# What each vllm-rbln release pins (its own package metadata): vllm-rbln X.Y takes
# optimum-rbln X.Y.* and rebel-compiler X.Y.*; 0.12.0 requires vllm==0.30.0+cpu.
VLLM_PIN = {"0.12": "0.30.0+cpu"}


def rbln_params(config: dict[str, Any]) -> dict[str, Any]:
    """The values vllm-rbln reads from a decoder model's ``rbln_config.json``, by its rules
    (see the module docstring); IncompatibleArtifact (exit 6) naming what is missing."""
    block = config.get("kvcache_block_size")
    partition = config.get("kvcache_partition_len")
    if block is not None and partition is not None and block != partition:
        raise IncompatibleArtifact(
            f"{RBLN_CONFIG}: kvcache_partition_len {partition} differs from kvcache_block_size "
            f"{block}; vllm-rbln requires them equal ({SOURCE})",
            hint="rebuild the artifact",
        )
    params = {
        "num_blocks": config.get("kvcache_num_blocks"),
        "batch_size": config.get("batch_size"),
        "max_seq_len": config.get("max_seq_len"),
        "kvcache_block_size": block if block is not None else partition,
        "prefill_chunk_size": config.get("prefill_chunk_size"),
        "dtype": config.get("dtype"),
        "num_devices": _num_devices(config),
    }
    names = {
        "num_blocks": "kvcache_num_blocks",
        "batch_size": "batch_size",
        "max_seq_len": "max_seq_len",
        "kvcache_block_size": "kvcache_block_size",
    }
    missing = [names[k] for k in names if not isinstance(params[k], int)]
    if missing:
        raise IncompatibleArtifact(
            f"{RBLN_CONFIG} lacks {', '.join(missing)}: vllm-rbln refuses a compiled folder "
            f"without them ({SOURCE}, sync_from_optimum)",
            hint="rebuild with the rbln-ca25 profile (optimum-rbln 0.12 writes them)",
        )
    return params


def _num_devices(config: dict[str, Any]) -> int:
    """``num_devices``, else the first compile config's (as ``_resolve_num_devices``)."""
    value = config.get("num_devices")
    if isinstance(value, int) and value > 0:
        return value
    for entry in config.get("_compile_cfgs") or []:
        if isinstance(entry, dict) and isinstance(entry.get("num_devices"), int):
            return int(entry["num_devices"])
    return 1


def full_blocks(params: dict[str, Any]) -> bool:
    """Whether the compiled KV blocks hold ``batch_size`` sequences of ``max_seq_len`` at
    once (vllm-rbln's ``is_full_block_available``)."""
    per_seq = math.ceil(params["max_seq_len"] / params["kvcache_block_size"])
    return params["num_blocks"] >= params["batch_size"] * per_seq


def flags_for(params: dict[str, Any]) -> list[str]:
    """The ``vllm serve`` flags that agree with the compiled values."""
    flags = [
        "--max-num-seqs",
        str(params["batch_size"]),
        "--max-model-len",
        str(params["max_seq_len"]),
        "--block-size",
        str(params["kvcache_block_size"]),
    ]
    if params.get("dtype"):
        flags += ["--dtype", str(params["dtype"])]
    return flags


def disagreements(params: dict[str, Any], flags: dict[str, str]) -> list[str]:
    """Where ``flags`` (``--flag: value``) say other than vllm-rbln will do with the compiled
    folder; empty when they agree."""
    wanted = {
        "--max-num-seqs": ("batch_size", params["batch_size"]),
        "--max-model-len": ("max_seq_len", params["max_seq_len"]),
        "--block-size": ("kvcache_block_size", params["kvcache_block_size"]),
    }
    if params.get("dtype"):
        wanted["--dtype"] = ("dtype", params["dtype"])
    found = []
    for flag, (key, value) in wanted.items():
        if flags.get(flag) != str(value):
            found.append(
                f"{flag} {flags.get(flag, '(absent)')}: vllm-rbln sets it to {key} = {value} "
                f"from {RBLN_CONFIG}"
            )
    batched = flags.get("--max-num-batched-tokens")
    chunk = params.get("prefill_chunk_size")
    if batched is not None and chunk is not None and batched != str(chunk):
        found.append(
            f"--max-num-batched-tokens {batched}: vllm-rbln refuses any other than the compiled "
            f"prefill_chunk_size {chunk}"
        )
    if "--enable-prefix-caching" in flags and chunk:
        if params["kvcache_block_size"] % int(chunk):
            found.append(
                f"--enable-prefix-caching: kvcache_block_size {params['kvcache_block_size']} "
                f"is not a multiple of prefill_chunk_size {chunk}"
            )
    return found


def plan(artifacts: list[Artifact], options: ExportOptions) -> Plan:
    """The compiled folder, hard-linked, with the agreeing ``vllm serve`` flags."""
    art = only_one(artifacts, ENGINE)
    config = art.read_json(RBLN_CONFIG)
    if art.backend != "rbln" or config is None:
        refuse(
            art,
            ENGINE,
            "vllm-rbln serves an optimum-rbln compiled folder (rbln_config.json beside the "
            ".rbln files); this artifact is not one",
            "use " + ", ".join(f"--to {e}" for e in engines_for(art.backend)),
        )
    params = rbln_params(config)
    refuse_len(art, options.max_model_len, "vllm-rbln")
    name = options.name or art.model
    argv: list[str | Rel] = [
        "vllm",
        "serve",
        Rel(MODEL_DIR),
        "--served-model-name",
        name,
        *flags_for(params),
        "--port",
        str(options.port),
    ]
    devices = ",".join(str(i) for i in range(params["num_devices"]))
    command = Command(argv, env={"RBLN_VISIBLE_DEVICES": devices})
    optimum = str(config.get("optimum_rbln_version") or art.packages.get("optimum-rbln") or "")
    series = ".".join(optimum.split(".")[:2]) if optimum else ""
    compiler = art.packages.get("rebel-compiler") or art.fingerprint.get("rebel_compiler")
    serving = {
        "vllm-rbln": f"{series}.*" if series else "the release matching optimum-rbln",
        "optimum-rbln": optimum or None,
        "rebel-compiler": compiler,
        "vllm": VLLM_PIN.get(series, "the release vllm-rbln pins"),
        "npu": sorted({c.get("npu") for c in config.get("_compile_cfgs") or [] if c.get("npu")}),
        "devices": params["num_devices"],
    }
    full = full_blocks(params)
    kv_note = (
        f"The compiled KV cache ({params['num_blocks']} blocks of "
        f"{params['kvcache_block_size']}) holds all {params['batch_size']} sequences at "
        f"{params['max_seq_len']} tokens at once."
        if full
        else f"The compiled KV cache ({params['num_blocks']} blocks of "
        f"{params['kvcache_block_size']}) holds fewer than {params['batch_size']} sequences "
        f"of {params['max_seq_len']} tokens at once: vLLM's scheduler waits for blocks "
        "before it admits more."
    )
    return Plan(
        engine=ENGINE,
        title=TITLE,
        name=name,
        artifacts=[art],
        files={f"{MODEL_DIR}/{rel}": Link(art.tree / rel) for rel in art.files},
        command=command,
        limits={
            "max_num_seqs": f"{params['batch_size']} (batch_size in {RBLN_CONFIG})",
            "max_model_len": f"{params['max_seq_len']} (max_seq_len in {RBLN_CONFIG})",
            "block_size": f"{params['kvcache_block_size']} (kvcache_block_size)",
            "num_blocks": f"{params['num_blocks']} (kvcache_num_blocks)",
            "devices": f"{params['num_devices']} ATOM device(s): RBLN_VISIBLE_DEVICES={devices}",
        },
        serving=serving,
        readme=[
            "## What is here",
            "",
            f"`{MODEL_DIR}/` is the optimum-rbln compiled folder (`*.rbln`, `{RBLN_CONFIG}`, "
            "the Hugging Face config and tokenizer): vllm-rbln recognises it by "
            f"`{RBLN_CONFIG}` and loads it without compiling.",
            "",
            "vllm-rbln overrides vLLM's `max_num_seqs`, `max_model_len` and `block_size` with "
            f"the compiled `batch_size`, `max_seq_len` and `kvcache_block_size` ({SOURCE}); "
            "the flags here are those values, so the command means what it says. "
            f"`--max-num-batched-tokens`, if you add it, must equal the compiled "
            f"`prefill_chunk_size` ({params.get('prefill_chunk_size') or 'the NPU default'}). "
            + kv_note,
        ],
        hardware=f"Serving needs {params['num_devices']} Rebellions ATOM device(s) "
        f"({', '.join(serving['npu']) or 'the compiled SKU'}) and the RBLN driver; here the "
        "folder and the flags are checked against vllm-rbln's rules only.",
        extra_versions={"rbln_params": params},
        warnings=[] if full else [kv_note],
    )


def check(root: Path) -> list[str]:
    """The written folder by vllm-rbln 0.12's rules: recognised as compiled, the required
    values present, and the command's flags agreeing with them."""
    import json
    import shlex

    config_path = root / MODEL_DIR / RBLN_CONFIG
    if not config_path.is_file():
        raise InternalError(f"bundle lacks {MODEL_DIR}/{RBLN_CONFIG}")
    params = rbln_params(json.loads(config_path.read_text(encoding="utf-8")))
    rbln_files = sorted(p.name for p in (root / MODEL_DIR).glob("*.rbln"))
    if not rbln_files:
        raise InternalError(f"bundle's {MODEL_DIR}/ holds no .rbln file")
    words = shlex.split((root / "serve.sh").read_text(encoding="utf-8").splitlines()[-1])
    flags = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}
    wrong = disagreements(params, flags)
    if wrong:
        raise InternalError("serve.sh disagrees with rbln_config.json: " + "; ".join(wrong))
    return [
        f"{MODEL_DIR}/ is a compiled folder by vllm-rbln's test ({RBLN_CONFIG} present; "
        f"{', '.join(rbln_files)})",
        f"{RBLN_CONFIG} has kvcache_num_blocks {params['num_blocks']}, batch_size "
        f"{params['batch_size']}, max_seq_len {params['max_seq_len']}, kvcache_block_size "
        f"{params['kvcache_block_size']} ({SOURCE})",
        "serve.sh's --max-num-seqs, --max-model-len and --block-size equal them, so vllm-rbln "
        "overrides nothing",
    ]

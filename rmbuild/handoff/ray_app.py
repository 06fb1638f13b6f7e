"""rmbuild's OpenAI-compatible server as a Ray Serve deployment.

``rmbuild export --to ray-serve`` copies this file as ``deployment.py`` next to
``bundle.json`` (what to serve and how: the artifact, the served name, replicas and each
replica's resources, the engine's queue sizes). ``serve run deployment:app`` (``serve.sh``)
deploys it: each replica builds the same FastAPI application ``rmbuild serve`` runs
(:func:`rmbuild.serve.server.build`, then :func:`rmbuild.serve.app.create_app`), so the
endpoints, streaming, limits and metrics are the same, and Ray Serve routes requests across
replicas on as many machines as the cluster has.

Each replica reads the store named by ``RMBUILD_STORE`` (else the one the bundle was exported
from); on a cluster of several machines set ``RMBUILD_REMOTE`` (or a configured remote) so a
replica whose node lacks the artifact pulls it, verified by digest. ``RMBUILD_API_KEY``
requires ``Authorization: Bearer KEY`` on every request, as ``rmbuild serve --api-key`` does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ray import serve

SETTINGS: dict[str, Any] = json.loads(
    Path(__file__).with_name("bundle.json").read_text(encoding="utf-8")
)
# The replica's served model, kept so the replica can stop its engine when Ray removes it.
_SERVED: dict[str, Any] = {}


def build_app() -> Any:
    """The FastAPI application of one replica (Ray Serve calls it on the replica)."""
    from rmbuild.serve.app import create_app
    from rmbuild.serve.server import build

    limit = SETTINGS.get("max_model_len")
    served = build(
        SETTINGS["artifact"],
        store_path=os.environ.get("RMBUILD_STORE") or SETTINGS.get("store") or None,
        served_name=SETTINGS["name"],
        options={"max_model_len": int(limit)} if limit else None,
        max_running=int(SETTINGS.get("max_running", 8)),
        max_queue=int(SETTINGS.get("max_queue", 64)),
        device=SETTINGS.get("device") or None,
    )
    _SERVED["served"] = served
    return create_app(served, api_key=os.environ.get("RMBUILD_API_KEY") or None)


@serve.deployment(
    name=SETTINGS["deployment"],
    num_replicas=int(SETTINGS["replicas"]),
    ray_actor_options=SETTINGS["ray_actor_options"],
)
@serve.ingress(build_app)
class RmbuildServer:
    """One replica: the application above; its engine stopped when Ray removes it."""

    def __del__(self) -> None:
        served = _SERVED.pop("served", None)
        if served is None:
            return
        served.engine.stop(timeout=float(SETTINGS.get("shutdown_timeout", 30)))
        served.session.close()
        store = getattr(served.engine, "store", None)
        if store is not None:
            store.close()


app = RmbuildServer.bind()

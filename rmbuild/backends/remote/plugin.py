"""The ``remote-openai`` backend: an OpenAI-compatible server as a device like any other.

A target with ``profile: remote-openai`` (flags ``url``, ``model``, ``api_key_env``) builds no
model: its artifact is a record of the endpoint (``remote.json``: the URL, the model the
upstream reported at build time and its context limit, the *name* of the variable holding the
key) plus the tokenizer files of the model's source. The build asks the upstream's
``/v1/models`` first (:meth:`RemoteOpenAIBackend.stage_flags`, in rmbuild's own process, so the
key never reaches the tool's environment or argv); loading asks it again: reachable and serving
the model -> available, otherwise BackendUnavailable and the serving policy moves on. The
resource class is ``remote``: ``run``, ``load``, ``serve`` and ``--target remote`` take it as
they take a CPU or an NPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.backends.base import Availability, BackendPlugin
from rmbuild.backends.remote import client
from rmbuild.errors import IncompatibleArtifact, SpecError

if TYPE_CHECKING:
    from rmbuild.declare.spec import BuildProfile
    from rmbuild.runtime.session import BackendSession
    from rmbuild.toolrun.toolchains import Toolchain

RECORD = "remote.json"


def _flag_error(exc: SpecError, profile: BuildProfile) -> SpecError:
    exc.context = [*exc.context, f"profile {profile.name}: set it in the target's flags"]
    return exc


class RemoteOpenAIBackend(BackendPlugin):
    name = "remote-openai"
    extra = "remote-openai"
    description = "an OpenAI-compatible server (vLLM, TGI, llama.cpp, NIM...) as a device"

    def availability(self) -> Availability:
        try:
            import httpx
        except ImportError:
            return Availability(
                ok=False,
                reason="httpx is not installed",
                install=f"pip install 'rmbuild[{self.extra}]'",
            )
        return Availability(ok=True, versions={"httpx": httpx.__version__})

    def required_build_profiles(self) -> list[str]:
        return ["remote-openai"]

    def get_capability(self) -> dict[str, Any]:
        return {"devices": ["remote"], "streaming": True, "kv_cache": "upstream"}

    def check_stage(
        self, profile: BuildProfile, flags: dict[str, Any], toolchain: Toolchain
    ) -> None:
        # Before anything runs (hits too): a target without a URL, or with the key itself
        # where the variable's name belongs, is a model.yaml mistake (exit 3).
        try:
            client.check_url(flags.get("url"), field="flags.url")
            client.check_key_env(flags.get("api_key_env"), field="flags.api_key_env")
        except SpecError as exc:
            raise _flag_error(exc, profile) from None
        model = flags.get("model")
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise SpecError(
                "flags.model: the upstream's model id (a string), or null for the only one "
                "it serves",
                field="flags.model",
            )

    def stage_flags(
        self, profile: BuildProfile, flags: dict[str, Any], input_dir: Path
    ) -> dict[str, Any]:
        """Ask the upstream's /v1/models what it serves (the key read from the environment
        here, in rmbuild's process): the model's id and its context limit fill the flags
        ``reported_model`` and ``max_model_len``, which the tool writes into the record. An
        upstream that is not reachable fails the build (BackendUnavailable, exit 7)."""
        upstream = client.Upstream(str(flags["url"]), flags.get("api_key_env"))
        entry = upstream.find_model(flags.get("model"))
        limit = entry.get("max_model_len")
        return {
            "reported_model": entry["id"],
            "max_model_len": limit if isinstance(limit, int) and limit > 0 else None,
        }

    def check_compatible(self, metadata: dict[str, Any]) -> None:
        if not self.availability().ok:
            raise IncompatibleArtifact(
                "httpx is not installed on this machine: the remote upstream cannot be reached",
                hint=f"pip install 'rmbuild[{self.extra}]'",
            )

    def create_session(
        self, artifact_dir: Path, metadata: dict[str, Any], options: dict[str, Any]
    ) -> BackendSession:
        from rmbuild.backends.remote.session import RemoteSession, RemoteStep
        from rmbuild.runtime.session import eos_ids
        from rmbuild.runtime.tokenizer import Tokenizer

        record = json.loads((artifact_dir / RECORD).read_text())
        flags = {**(metadata.get("runtime_flags") or {}), **options}
        timeout = float(flags.get("timeout") or 600)
        upstream = client.Upstream(record["url"], record.get("api_key_env"), timeout)
        # The probe: reachable and serving the model, or this candidate is not available.
        entry = upstream.find_model(record.get("model") or record.get("reported_model"))
        limit = entry.get("max_model_len") or record.get("max_model_len")
        if not (artifact_dir / "tokenizer.json").is_file():
            raise IncompatibleArtifact(
                f"the remote artifact has no tokenizer.json (its model's source had none): "
                f"{artifact_dir}",
                hint="give the model's source its tokenizer files and build the target again",
            )
        return RemoteSession(
            step_fn=RemoteStep(limit if isinstance(limit, int) else None, upstream.display),
            tokenizer=Tokenizer(artifact_dir),
            eos_token_ids=eos_ids(artifact_dir),
            info={
                "backend": self.name,
                "device": upstream.display,
                "upstream_model": entry["id"],
            },
            upstream=upstream,
            model=entry["id"],
        )

"""Running a compiled RBLN artifact: optimum-rbln in the ``rbln`` toolchain, as a worker process.

The SDK cannot be imported into rmbuild's environment (optimum-rbln 0.12 pins torch 2.13.0+cpu
and transformers 5.15.1), so ``rmbuild/tools/rbln_run.py serve`` runs in the toolchain and
loads the folder with ``from_pretrained(folder, export=False, rbln_device=[...])``: the .rbln
files as they are, never a compile on load (the seed's predecessor recompiled on every
start). Generation is optimum-rbln's own greedy ``generate`` (its runtimes hold the KV cache on
the device); this side tokenizes, streams and stops at EOS like every other session.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.backends.rbln import probe
from rmbuild.errors import ArtifactUnloadable, IncompatibleArtifact, ToolError
from rmbuild.runtime.limits import Bound

if TYPE_CHECKING:
    from rmbuild.runtime.sampling import SamplingParams
    from rmbuild.toolrun.toolchains import Toolchain


class RBLNWorker:
    """The worker process holding the loaded model; ``generate`` sends it one request."""

    def __init__(self, tc: Toolchain, artifact_dir: Path, device_ids: list[int]) -> None:
        fd, name = tempfile.mkstemp(prefix="rmbuild-rbln-", suffix=".log")
        self.log = Path(name)
        argv = [str(tc.python_path), str(probe.RUN_SCRIPT), "serve", str(artifact_dir)]
        for dev in device_ids:
            argv += ["--device", str(dev)]
        self._stderr = os.fdopen(fd, "w")  # lives as long as the worker
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=probe.tool_env(tc),
            text=True,
        )
        self.device_ids = device_ids
        self.artifact_dir = artifact_dir
        self._closed = False
        first = self._read()
        if not first.get("ready"):
            self.close(keep_log=True)
            tail = self.log.read_text(errors="replace").strip().splitlines()[-20:]
            # The SDK refused to load the artifact on this host: exit 6 like every other
            # backend's load refusal (ArtifactUnloadable), with the SDK's words and its log.
            raise ArtifactUnloadable(
                f"optimum-rbln could not load the artifact on RBLN device(s) {device_ids}: "
                f"{first.get('error', 'the worker exited')}",
                context=[
                    "last lines of the log of optimum-rbln:",
                    *(f"  {line}" for line in tail),
                    f"full log: {self.log}",
                ],
                hint="the SDK's message is above, verbatim; `rbln-smi` shows the devices and "
                "the driver",
            )

    def compiled_limit(self) -> Bound | None:
        """The compiled ``max_seq_len`` of ``rbln_config.json``: the graphs take no longer."""
        try:
            config = json.loads((self.artifact_dir / "rbln_config.json").read_text())
            longest = int(config["max_seq_len"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return Bound(
            longest,
            "max_seq_len in rbln_config.json",
            "rebuild with a larger max_seq_len flag",
        )

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            return {"error": f"the worker exited with {self.proc.returncode}"}
        try:
            return json.loads(line)
        except ValueError:
            return {"error": line.strip()}

    def generate(self, ids: list[int], max_new_tokens: int) -> list[int]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"ids": ids, "max_new_tokens": max_new_tokens}) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if "ids" not in answer:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-20:]
            self.close(keep_log=True)
            raise ToolError(
                f"optimum-rbln generate failed: {answer.get('error')}",
                tool="optimum-rbln",
                log_path=self.log,
                tail=tail,
            )
        return [int(i) for i in answer["ids"]]

    # The DecoderStep protocol: generation happens whole in the worker (see the session).
    def reset(self) -> None:
        pass

    def step(self, token_ids: Any) -> Any:
        raise NotImplementedError("RBLN sessions generate in optimum-rbln, not step by step")

    def close(self, keep_log: bool = False) -> None:
        """Stop the worker; its log is kept only where an error names it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        if not keep_log:
            self.log.unlink(missing_ok=True)


def make_session(
    tc: Toolchain, artifact_dir: Path, device_ids: list[int], info: dict[str, Any]
) -> Any:
    """Start the worker (the device call), then wrap it in a BackendSession."""
    worker = RBLNWorker(tc, artifact_dir, device_ids)
    # Only now: the session module needs numpy, an extra.
    from rmbuild.runtime.session import BackendSession, GenerationStats, eos_ids
    from rmbuild.runtime.tokenizer import Tokenizer

    class RBLNSession(BackendSession):
        """Greedy generation by optimum-rbln on the NPU; sampling is not offered."""

        def admit(
            self, prompt_ids: Sequence[int], max_tokens: int, params: SamplingParams
        ) -> list[int]:
            ids = super().admit(prompt_ids, max_tokens, params)
            if params.temperature > 0:
                # What this artifact cannot do here, like any load refusal: exit 6.
                raise IncompatibleArtifact(
                    "the rbln backend generates greedily (optimum-rbln's generate): "
                    f"temperature {params.temperature:g} cannot be honoured",
                    hint="run with --temperature 0, or serve the folder with vllm-rbln",
                )
            return ids

        def _decode(
            self, prompt_ids: list[int], max_tokens: int, params: SamplingParams
        ) -> Iterator[int]:
            import time

            stats = self.last_stats = GenerationStats(prompt_tokens=len(prompt_ids))
            t0 = time.perf_counter()
            new = worker.generate(prompt_ids, max_tokens) if max_tokens > 0 else []
            stats.decode_s = time.perf_counter() - t0
            stats.stopped = "max_tokens"
            for token in new:
                if token in self.eos_token_ids:
                    stats.stopped = "eos"
                    break
                stats.new_tokens += 1
                yield token

    return RBLNSession(
        step_fn=worker,
        tokenizer=Tokenizer(artifact_dir),
        eos_token_ids=eos_ids(artifact_dir),
        info=info,
    )

"""Shared fixtures: an isolated store and config dir, a throwaway project, the CLI in-process.

The project fixture builds a self-contained folder (model, model.yaml, ``profiles/``,
``profiles/toolchains/``, ``templates/``) whose one profile runs ``tests/fakes/fake_compiler.py``
instead of a real vendor compiler, so the error paths run on any machine in milliseconds.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

FAKES = Path(__file__).resolve().parent / "fakes"

# Run the CLI in a child process exactly as the `rmbuild` script does (there is no __main__).
CLI_CODE = "import sys; from rmbuild.cli import main; sys.exit(main(sys.argv[1:]))"

FAKE_PROFILE = """\
name: fake-compile
description: the stand-in compiler of the tests
backend: onnxruntime
stage: compile
input_format: hf
output_format: fake-bin
toolchain: fake
tool:
  name: {tool}
template: fake.argv.j2
flags:
  mode: ok
  lines: 0
  sleep: 0
  level: 1
  threads: 0
  counter: ""
  marker: ""
  name: ""
runtime_flags: [threads]
outputs:
  - model.bin
timeout: {timeout}
"""

FAKE_TOOLCHAIN = """\
name: fake
description: the test suite's own interpreter
python: null
packages: []
# The stand-in's behaviour knobs reach it without entering the key (any other
# caller variable is withheld from a tool).
runtime_env: [FAKE_COMPILER_HANG, FAKE_COMPILER_MARKER, FAKE_COMPILER_COUNTER]
"""

FAKE_TEMPLATE = """\
{# the stand-in compiler; one argument per line, never through a shell #}
{{ tool }}
--out
{{ output }}
--input
{{ inputs.model }}
--mode
{{ flags.mode }}
--lines
{{ flags.lines }}
--sleep
{{ flags.sleep }}
--level
{{ flags.level }}
--threads
{{ flags.threads }}
{% if flags.counter %}
--counter
{{ flags.counter }}
{% endif %}
{% if flags.marker %}
--marker
{{ flags.marker }}
{% endif %}
{% if flags.name %}
--name
{{ flags.name }}
{% endif %}
"""


def spec_text(
    flags: dict[str, object] | None = None,
    *,
    source: str = "model",
    name: str = "tiny",
    profile: str = "fake-compile",
) -> str:
    """A model.yaml with one target ``fake``; flag values are written as JSON (valid YAML)."""
    lines = [
        f"name: {name}",
        "source:",
        f"  path: {json.dumps(source)}",
        "  format: hf",
        "targets:",
        "  fake:",
        f"    profile: {profile}",
    ]
    if flags:
        lines.append("    flags:")
        lines += [f"      {k}: {json.dumps(v)}" for k, v in flags.items()]
    return "\n".join(lines) + "\n"


@dataclass
class Project:
    """A throwaway rmbuild project in a temp dir."""

    root: Path
    spec: Path
    model: Path
    fake: Path
    store: Path

    def write_spec(self, text: str) -> Path:
        self.spec.write_text(text, encoding="utf-8")
        return self.spec

    def set_flags(self, **flags: object) -> Path:
        return self.write_spec(spec_text(flags))

    spec_text = staticmethod(spec_text)

    def assert_empty(self, cli_run) -> None:  # noqa: ANN001
        """No artifact row, and nothing left half-built where `ls`/`run` could see it."""
        listing = cli_run("ls", "--json")
        assert listing.code == 0, listing.err
        assert listing.json() == []
        for sub in ("tmp", "trees"):
            folder = self.store / sub
            leftovers = sorted(folder.iterdir()) if folder.is_dir() else []
            assert leftovers == [], leftovers

    def write_profile(self, name: str, text: str) -> Path:
        path = self.root / "profiles" / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    def write_template(self, name: str, text: str) -> Path:
        path = self.root / "templates" / name
        path.write_text(text, encoding="utf-8")
        return path

    def fake_profile(self, *, tool: str | None = None, timeout: float = 30) -> str:
        return FAKE_PROFILE.format(tool=json.dumps(tool or str(self.fake)), timeout=timeout)


@pytest.fixture(autouse=True)
def _no_user_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The developer's own profiles/templates (user config dir, env paths) never leak in."""
    monkeypatch.setenv("RMBUILD_CONFIG_DIR", str(tmp_path_factory.mktemp("user-config")))
    for name in ("RMBUILD_PROFILES_PATH", "RMBUILD_TEMPLATES_PATH", "RMBUILD_DEBUG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty store of this test's own (``$RMBUILD_STORE``), SQLite index inside it."""
    root = tmp_path / "store"
    monkeypatch.setenv("RMBUILD_STORE", str(root))
    monkeypatch.delenv("RMBUILD_INDEX_URL", raising=False)
    return root


def make_fake_tool(folder: Path, name: str = "fake-compiler") -> Path:
    """Copy the stand-in compiler as an executable whose shebang is this interpreter."""
    folder.mkdir(parents=True, exist_ok=True)
    body = (FAKES / "fake_compiler.py").read_text(encoding="utf-8").split("\n", 1)[1]
    path = folder / name
    path.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def project(tmp_path: Path, store_dir: Path) -> Project:
    """model/, model.yaml, profiles/fake-compile.yaml, profiles/toolchains/fake.yaml, templates/."""
    root = tmp_path / "proj"
    # A .git marker stops the upward profile search here, so the repo's profiles/ stay out
    # (the built-ins are still searched last, as for any user).
    (root / ".git").mkdir(parents=True)
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}\n', encoding="utf-8")
    (model / "weights.bin").write_bytes(b"\x00\x01" * 64)
    (root / "profiles" / "toolchains").mkdir(parents=True)
    (root / "templates").mkdir()
    fake = make_fake_tool(tmp_path / "bin")
    proj = Project(root=root, spec=root / "model.yaml", model=model, fake=fake, store=store_dir)
    proj.write_profile("fake-compile", proj.fake_profile())
    (root / "profiles" / "toolchains" / "fake.yaml").write_text(FAKE_TOOLCHAIN, encoding="utf-8")
    proj.write_template("fake.argv.j2", FAKE_TEMPLATE)
    proj.write_spec(spec_text())
    return proj


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)

    def assert_failure(self, code: int) -> None:
        """A user-facing failure: this exit code, an error message, no traceback."""
        assert self.code == code, (self.code, self.out, self.err)
        assert "Traceback" not in self.err and "Traceback" not in self.out
        assert "internal error" not in self.err
        assert "error" in self.err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):  # noqa: ANN201 - Callable[..., CliResult]
    """Run ``rmbuild ARGS`` in-process through ``rmbuild.cli.main``; returns code/out/err."""
    from rmbuild.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def _as_in_a_terminal() -> None:
    # A suite started in the background of a non-interactive shell (`cmd &`) inherits SIGINT
    # ignored, and so would every CLI it starts: Ctrl-C would not reach it, as it should not
    # reach a background job. The CLI under test runs as a user's foreground command does.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def cli_process():  # noqa: ANN201 - Callable[..., subprocess.Popen]
    """Start ``rmbuild ARGS`` as its own process (for kill and concurrency tests)."""

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [sys.executable, "-c", CLI_CODE, *args],
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_as_in_a_terminal,
        )

    return start


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data dir of this test's own (``$RMBUILD_DATA_DIR``): no toolchain installed."""
    root = tmp_path / "data"
    monkeypatch.setenv("RMBUILD_DATA_DIR", str(root))
    return root


# ---- a real S3 protocol on loopback ---------------------------------------------------

S3_SECRET = "rmbuild-test-secret-Zq8xP"  # asserted absent from every message


@pytest.fixture(scope="session")
def s3_server():  # noqa: ANN201 - str
    """moto's S3 server on 127.0.0.1 (a random port) for the whole session; its endpoint URL.

    A real HTTP S3 protocol (signatures, multipart, ranges) that s3fs and boto3 talk to as to
    AWS; not a mock of fsspec. Skips where the `remote`/`dev` extras are missing.
    """
    pytest.importorskip("fsspec", reason="fsspec not installed (extra: remote)")
    pytest.importorskip("s3fs", reason="s3fs not installed (extra: remote)")
    server_mod = pytest.importorskip("moto.server", reason="moto[server] not installed (dev)")
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_remote(s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fresh bucket on the loopback S3 server; returns ``s3://<bucket>/cache``.

    Credentials and the endpoint come from the environment, as a user's would (the SDK's usual
    places); the user's own AWS config files are kept out.
    """
    import uuid

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rmbuildtestkey")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("RMBUILD_REMOTE", raising=False)
    bucket = f"rmb-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/cache"


def s3_client():  # noqa: ANN201 - a boto3 S3 client on the environment's endpoint
    boto3 = pytest.importorskip("boto3", reason="boto3 not installed (dev)")
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])

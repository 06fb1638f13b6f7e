"""rmbuild/credentials.py: a flag value that looks like a credential gets a warning (not a
refusal) naming the flag and where it was set."""

from __future__ import annotations

import pytest

from rmbuild import credentials
from rmbuild.config import builtin_dir
from rmbuild.credentials import looks_like_credential
from rmbuild.declare.spec import load_profile

HF = "hf_" + "Zq8wXv3LmN7pRt2Ks9Yb4Jd6Fh1Gc5Aa"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("model_id", HF),
        ("extra", f"--token={HF}"),
        ("repo", "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"),
        ("repo", "github_pat_" + "11ABCDEFG0" * 5),
        ("bucket", "AKIA" + "IOSFODNN7EXAMPLE"),
        ("endpoint", "sk-" + "proj-4f9Kq2Lm8Xz1Rt6Yw3Vb7Nc5"),
        ("hook", "xoxb-" + "123456789012-abcdefghij"),
        ("remote", "glpat-" + "xY9zA8bC7dE6fG5hI4jK"),
        ("api_key", "q8W2e9R4t7Y1u5I3o6P0a2S8d4F7g1H9"),
        ("auth_secret", "Zk3P9xQ2mV8nL5bR7tY1wC4"),
    ],
)
def test_credentials_are_recognised(name: str, value: str) -> None:
    assert looks_like_credential(name, value) is not None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("cache_dir", "/models/hf_cache"),
        ("model_id", "meta-llama/Llama-3.2-1B-Instruct"),
        ("token_limit", "4096"),
        ("key_dtype", "float16"),
        ("api_key", "short"),
        ("secret_path", "/etc/rmbuild/secret-file-on-disk.txt"),
        ("password_hint", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),  # long, not random
        ("opt_level", "extended"),
        ("token", 12345678901234567890),
    ],
)
def test_ordinary_values_are_not(name: str, value: object) -> None:
    assert looks_like_credential(name, value) is None


def test_no_builtin_profile_default_warns() -> None:
    for path in sorted(builtin_dir("profiles").glob("*.yaml")):
        flags = load_profile(path).profile.flags
        for name, value in flags.items():
            items = value if isinstance(value, list) else [value]
            assert all(looks_like_credential(name, item) is None for item in items), (path, name)


def test_compile_warns_naming_the_flag_and_line_and_still_builds(
    project,  # noqa: ANN001
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(credentials, "_warned", set())
    project.set_flags(name=HF)
    result = cli("compile", str(project.spec), "--target", "fake")
    assert result.code == 0, result.err
    line = next(i for i, text in enumerate(project.spec.read_text().splitlines(), 1) if HF in text)
    assert f"warning: {project.spec}:{line}: flag 'name' looks like a credential" in result.err
    assert "a Hugging Face token" in result.err and "runtime_env" in result.err
    assert HF not in result.err  # the warning itself does not repeat the value


def test_a_profile_default_is_reported_at_the_profile(project, cli, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(credentials, "_warned", set())
    path = project.root / "profiles" / "fake-compile.yaml"
    path.write_text(path.read_text().replace('  name: ""', f'  name: "{HF}"'))
    result = cli("compile", str(project.spec), "--target", "fake")
    assert result.code == 0, result.err
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if HF in text)
    assert f"warning: {path}:{line}: flag 'name'" in result.err

"""The remote-openai backend without a server: its registration and profile, the URL and key
checks every build passes before anything runs, and an upstream that does not answer. The
real-peer tests (rmbuild serve and vLLM as upstreams) are tests/serve/test_remote.py and
test_vllm.py."""

from __future__ import annotations

import pytest

from rmbuild.backends.remote import client
from rmbuild.errors import BackendUnavailable, IncompatibleArtifact, SpecError

pytest.importorskip("httpx")


def test_registered_with_its_profile_of_class_remote() -> None:
    from rmbuild.declare.profiles import find_profile
    from rmbuild.plugins import get_backend

    plugin = get_backend("remote-openai")
    assert plugin.availability().ok
    profile = find_profile("remote-openai").profile
    assert (profile.resource, profile.backend, profile.stage) == (
        "remote",
        "remote-openai",
        "compile",
    )
    assert profile.runtime_flags == ["timeout"]
    # The key's variable is a flag; the key itself never is.
    assert "api_key_env" in profile.flags and not any("key" == f for f in profile.flags)


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("http://gpu-box:8000/v1", "http://gpu-box:8000"),
        ("http://gpu-box:8000/v1/", "http://gpu-box:8000"),
        ("https://h/openai/v1", "https://h/openai"),
        ("http://h:1", "http://h:1"),
    ],
)
def test_base_url_drops_v1(url: str, root: str) -> None:
    assert client.base_url(url) == root


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (None, "required"),
        ("", "required"),
        ("gpu-box:8000", "not an http(s) URL"),
        ("ftp://h/v1", "not an http(s) URL"),
        ("http://user:secret@h/v1", "user, password"),
        ("http://h/v1?api_key=x", "user, password, query"),
    ],
)
def test_check_url_refuses(url: object, words: str) -> None:
    with pytest.raises(SpecError, match=words.replace("(", r"\(").replace(")", r"\)")):
        client.check_url(url)


@pytest.mark.parametrize("value", ["sk-abcdefghijklmnopqrstuvwxyz123456", "my key", "1ABC", 5])
def test_api_key_env_takes_a_variable_name_only(value: object) -> None:
    with pytest.raises(SpecError, match="never the key itself"):
        client.check_key_env(value)
    assert client.check_key_env("VLLM_API_KEY") == "VLLM_API_KEY"
    assert client.check_key_env(None) is None


def test_check_stage_names_the_flag() -> None:
    from rmbuild.declare.profiles import find_profile
    from rmbuild.plugins import get_backend

    plugin = get_backend("remote-openai")
    profile = find_profile("remote-openai").profile
    with pytest.raises(SpecError) as err:
        plugin.check_stage(profile, {**profile.flags}, None)  # type: ignore[arg-type]
    assert err.value.field == "flags.url"
    with pytest.raises(SpecError, match="flags.model"):
        plugin.check_stage(profile, {**profile.flags, "url": "http://h/v1", "model": ""}, None)  # type: ignore[arg-type]
    plugin.check_stage(profile, {**profile.flags, "url": "http://h/v1"}, None)  # type: ignore[arg-type]


def test_a_key_variable_that_is_not_set_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_UPSTREAM_KEY", raising=False)
    upstream = client.Upstream("http://127.0.0.1:9/v1", "NO_SUCH_UPSTREAM_KEY")
    with pytest.raises(BackendUnavailable, match=r"\$NO_SUCH_UPSTREAM_KEY"):
        upstream.models()


def test_an_upstream_that_does_not_answer_is_unavailable() -> None:
    # Port 9 (discard) on loopback: nothing listens there.
    upstream = client.Upstream("http://127.0.0.1:9/v1")
    with pytest.raises(BackendUnavailable, match="not reachable") as err:
        upstream.find_model(None)
    assert "http://127.0.0.1:9" in str(err.value)


def test_the_remote_step_runs_nothing_here_and_carries_the_limit() -> None:
    from rmbuild.backends.remote.session import RemoteStep

    step = RemoteStep(256, "http://h:1")
    bound = step.compiled_limit()
    assert bound is not None and bound.value == 256 and "/v1/models" in bound.source
    assert RemoteStep(None, "http://h:1").compiled_limit() is None
    with pytest.raises(IncompatibleArtifact, match="does not run forward steps"):
        step.step([1])


def test_the_backend_contract_parts_that_need_no_server() -> None:
    from rmbuild.testing import (
        BackendContract,
        check_availability,
        check_interface,
        check_templates,
    )

    contract = BackendContract(backend="remote-openai")
    check_interface(contract)
    assert check_availability(contract).ok
    check_templates(contract)

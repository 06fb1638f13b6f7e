"""rmbuild.config: the config files and their precedence.

flag > environment > project rmbuild.toml (nearest above the start folder, up to the repo's
root) > user config.toml ($RMBUILD_CONFIG_DIR).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rmbuild import config
from rmbuild.errors import SpecError


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repo with a project file at its root and a model folder two levels down."""
    user = Path(config.user_config_dir())
    user.mkdir(parents=True, exist_ok=True)
    (user / "config.toml").write_text(
        'remote = "s3://user-bucket/c"\nindex_url = "sqlite:////user.db"\n'
        '[remote_options]\nendpoint_url = "http://user"\nregion = "eu"\n'
    )
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "models" / "chat").mkdir(parents=True)
    (repo / "rmbuild.toml").write_text(
        'remote = "s3://team-bucket/c"\n[remote_options]\nendpoint_url = "http://team"\n'
    )
    for name in ("RMBUILD_REMOTE", "RMBUILD_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    return repo / "models" / "chat"


def test_precedence_flag_env_project_user(layout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.remote_url(None, layout) == "s3://team-bucket/c"  # project beats user
    assert config.index_url(None, layout) == "sqlite:////user.db"  # only the user file has it
    monkeypatch.setenv("RMBUILD_REMOTE", "s3://env-bucket/c")
    assert config.remote_url(None, layout) == "s3://env-bucket/c"  # env beats files
    assert config.remote_url("file:///flag", layout) == "file:///flag"  # flag beats all
    assert config.remote_options(layout) == {"endpoint_url": "http://team", "region": "eu"}


def test_the_project_search_stops_at_the_repo_root(layout: Path, tmp_path: Path) -> None:
    (tmp_path / "rmbuild.toml").write_text('remote = "s3://outside/c"\n')
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".git").mkdir(parents=True)
    assert config.remote_url(None, elsewhere) == "s3://user-bucket/c"  # not ../rmbuild.toml
    assert config.config_files(layout)[-1] == layout.parents[1] / "rmbuild.toml"


def test_no_files_no_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RMBUILD_REMOTE", raising=False)
    (tmp_path / ".git").mkdir()
    assert config.remote_url(None, tmp_path) is None and config.remote_options(tmp_path) == {}


def test_a_broken_config_file_names_itself(layout: Path) -> None:
    bad = layout.parents[1] / "rmbuild.toml"
    bad.write_text("remote = [unclosed\n")
    with pytest.raises(SpecError) as info:
        config.remote_url(None, layout)
    assert "not valid TOML" in info.value.message
    assert str(bad) in str(info.value.file)

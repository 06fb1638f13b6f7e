"""``compile --cache-policy readonly`` writes nothing into the index: a hit records no use and
no last-use time, on the plan cache's fast path and on the full path alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from artifact_store import Store

if TYPE_CHECKING:
    from conftest import Project


def test_a_readonly_hit_records_no_use_and_no_last_use(
    cli, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    from rmbuild.planning import plancache

    built = cli("compile", str(project.spec), "--json")
    assert built.code == 0, built.err
    key = built.json()[0]["artifact"]
    # Every hit refreshes the last use (normally at most hourly), so a write would show.
    monkeypatch.setattr(plancache, "TOUCH_EVERY_S", -1)
    with Store(project.store) as store:
        before = store.get(key)
    # The fast path (this spec's plan is cached) ...
    fast = cli("compile", str(project.spec), "--cache-policy", "readonly")
    assert fast.code == 0 and "cached, no tool ran" in fast.out, fast.err
    with Store(project.store) as store:
        assert store.get(key).last_used_at == before.last_used_at, fast.err
    # ... and the full path: another model name over the same artifact, a use never recorded.
    other = project.root / "other.yaml"
    other.write_text(project.spec_text(name="other"), encoding="utf-8")
    full = cli("compile", str(other), "--cache-policy", "readonly", "--json")
    assert full.code == 0, full.err
    assert full.json()[0]["artifact"] == key and full.json()[0]["hit"]
    with Store(project.store) as store:
        after = store.get(key)
    assert after.uses == before.uses == (("tiny", "fake"),)
    assert after.last_used_at == before.last_used_at
    # readwrite writes both: the assertions above could fail.
    assert cli("compile", str(other)).code == 0
    with Store(project.store) as store:
        written = store.get(key)
    assert ("other", "fake") in written.uses and written.last_used_at > before.last_used_at

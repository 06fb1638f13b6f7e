"""8 concurrent builders of one key with a PostgreSQL index: one compiler run.

Separate `rmbuild compile` processes, each with its own store handle, meeting at the key's
lock and the shared index; the fake compiler counts its runs (``--counter``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Project

N = 8


def test_eight_builders_of_one_key_run_the_compiler_once_on_postgres(
    project: Project,
    cli_process,  # noqa: ANN001
    pg,  # noqa: ANN001
) -> None:
    url = pg.fresh_schema()
    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter), sleep=1.5)
    env = {"RMBUILD_INDEX_URL": url}
    procs = [cli_process("compile", str(project.spec), "--json", env=env) for _ in range(N)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        assert "Traceback" not in err and "internal error" not in err
        (result,) = json.loads(out)
        results.append(result)
    assert len(counter.read_text().splitlines()) == 1  # one compiler run, counted
    assert len({r["artifact"] for r in results}) == 1
    assert sorted(r["hit"] for r in results) == [False] + [True] * (N - 1)
    listing = cli_process("ls", "--json", env=env)
    out, err = listing.communicate(timeout=60)
    assert listing.returncode == 0, err
    (artifact,) = json.loads(out)
    assert artifact["id"] == results[0]["artifact"]
    assert artifact["uses"] == [{"model": "tiny", "target": "fake"}]

"""Errors are data: they render, serialize, and survive a trip through a worker process."""

from __future__ import annotations

import pickle
from pathlib import Path

from rmbuild.errors import EXIT_SPEC, EXIT_TOOL, SpecError, ToolTimeout


def test_spec_error_names_file_line_and_field() -> None:
    err = SpecError("unknown field", file=Path("m.yaml"), line=3, field="targets.x")
    assert err.message == "m.yaml:3: field 'targets.x': unknown field"
    assert err.exit_code == EXIT_SPEC
    assert err.to_dict()["error"] == "spec-error"


def test_errors_pickle_with_their_keyword_fields() -> None:
    # `compile -j` builds in worker processes; their errors must come back whole.
    err = ToolTimeout(
        "took too long",
        tool="ovc",
        log_path=Path("/tmp/x.log"),
        tail=["a", "b"],
        hint="raise the timeout",
    )
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ToolTimeout
    assert (back.message, back.tool, back.tail, back.hint) == (
        err.message,
        "ovc",
        ["a", "b"],
        "raise the timeout",
    )
    assert back.log_path == Path("/tmp/x.log") and back.exit_code == EXIT_TOOL
    assert "full log: /tmp/x.log" in back.context

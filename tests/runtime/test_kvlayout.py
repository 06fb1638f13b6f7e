"""The KV layout reader: graph over config, every name of a port, one error for non-LMs.

Stdlib only, like the module: these run with the core extras alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmbuild.errors import EXIT_INCOMPATIBLE, IncompatibleArtifact
from rmbuild.runtime import kvlayout

FALCON_MQ = {"num_attention_heads": 4, "hidden_size": 64, "multi_query": True, "num_kv_heads": 4}


def _ports(heads: int | None, head_dim: int | None = 16, mask_names=("attention_mask",)):  # noqa: ANN001, ANN202
    past = [None, heads, None, head_dim]
    return [
        (("input_ids",), [None, None], "int64"),
        (mask_names, [None, None], "int64"),
        (("past_key_values.0.key",), past, "float32"),
        (("past_key_values.0.value",), past, "float32"),
    ]


OUTPUTS = [("logits",), ("present.0.key",), ("present.0.value",)]


def test_falcon_multi_query_config_has_one_kv_head() -> None:
    # Falcon spells it num_kv_heads, and multi_query means one KV head.
    assert kvlayout.config_kv_heads(FALCON_MQ) == 1
    assert kvlayout.config_kv_heads({"num_kv_heads": 2, "num_attention_heads": 8}) == 2
    assert kvlayout.config_kv_heads({"num_key_value_heads": 3, "num_attention_heads": 6}) == 3
    assert kvlayout.config_kv_heads({"n_head": 5}) == 5
    assert kvlayout.config_head_dim(FALCON_MQ) == 16


def test_graph_dims_beat_the_config() -> None:
    # The graph says 1 KV head; a config that claims 4 must not matter.
    config = {"num_key_value_heads": 4, "num_attention_heads": 4, "hidden_size": 64}
    layout = kvlayout.from_ports(_ports(1), OUTPUTS, config=config)
    assert [s.shape for s in layout.past] == [(None, 1, None, 16)] * 2
    # A dynamic head dim is the only thing taken from the config.
    layout = kvlayout.from_ports(_ports(None, None), OUTPUTS, config=FALCON_MQ)
    assert layout.past[0].shape == (None, 1, None, 16)


def test_a_port_with_two_names_is_found_by_either() -> None:
    # Ovc gives bloom's mask an internal name too; "any name" picked that one.
    names = ("/transformer/Cast_2_output_0", "attention_mask")
    layout = kvlayout.from_ports(_ports(2, mask_names=names), OUTPUTS)
    assert layout.input_names == [
        "input_ids",
        "attention_mask",
        "past_key_values.0.key",
        "past_key_values.0.value",
    ]
    assert layout.spec("attention_mask").names == names
    assert layout.present_names == ["present.0.key", "present.0.value"]


def test_not_a_kv_cache_lm_is_incompatible_naming_the_inputs() -> None:
    ports = [(("input_ids",), [None, None], "int64"), (("/x/Cast_output_0",), [None], "int64")]
    with pytest.raises(IncompatibleArtifact, match=r"inputs lack \['attention_mask'\]") as err:
        kvlayout.from_ports(ports, OUTPUTS)
    assert err.value.exit_code == EXIT_INCOMPATIBLE
    assert "/x/Cast_output_0" in "\n".join(err.value.context)


def test_unknown_head_count_is_refused() -> None:
    with pytest.raises(IncompatibleArtifact, match="cannot tell the KV cache layout"):
        kvlayout.from_ports(_ports(None), OUTPUTS, config={})


def test_an_input_rmbuild_cannot_feed_is_refused_by_name() -> None:
    ports = [*_ports(2), (("token_type_ids",), [None, None], "int64")]
    with pytest.raises(
        IncompatibleArtifact, match=r"inputs rmbuild cannot feed: \['token_type_ids'\] \(graph\)"
    ) as err:
        kvlayout.from_ports(ports, OUTPUTS)
    assert err.value.exit_code == EXIT_INCOMPATIBLE


def test_sidecar_round_trip(tmp_path: Path) -> None:
    layout = kvlayout.from_ports(_ports(2), OUTPUTS)
    path = kvlayout.write_sidecar(tmp_path, layout)
    assert json.loads(path.read_text())["format"] == kvlayout.FORMAT
    again = kvlayout.read_sidecar(tmp_path)
    assert again is not None and again.inputs == layout.inputs
    assert again.source == kvlayout.SIDECAR
    assert kvlayout.read_sidecar(tmp_path / "nowhere") is None


def test_runtime_does_not_import_backends() -> None:
    # The runtime defines the loop; backends plug into it, never the reverse.
    root = Path(kvlayout.__file__).parent
    for path in root.glob("*.py"):
        if path.name == "loader.py":
            continue  # the loader resolves plugins by design (owned elsewhere)
        assert "rmbuild.backends" not in path.read_text(), path

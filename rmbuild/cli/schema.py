"""``rmbuild schema``: JSON Schema for editors (model.yaml completion and validation)."""

from __future__ import annotations

import click

from rmbuild.cli._output import emit_json


@click.command("schema")
@click.argument("kind", type=click.Choice(["model", "profile"]), default="model")
def command(kind: str) -> None:
    """Print the JSON Schema of model.yaml (default) or of a build profile."""
    from rmbuild.declare.spec import BuildProfile, ModelSpec

    model = ModelSpec if kind == "model" else BuildProfile
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    emit_json(schema)

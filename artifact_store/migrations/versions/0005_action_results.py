"""Action results: each key's output manifest digest, kept apart from the artifact row.

A downstream stage's key is computed from its upstream's manifest digest, not from its files,
so a store that holds the final artifact needs only this row of every upstream stage to find
it (a pull brings the chain's rows; an evicted upstream keeps its row). Existing artifacts get
their row from the artifact's own (``parents`` from its metadata).

Revision ID: 0005_action_results
Revises: 0004_failures_refs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_action_results"
down_revision = "0004_failures_refs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    results = op.create_table(
        "action_results",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("manifest_digest", sa.String(64), nullable=False),
        sa.Column("parents", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    artifacts = sa.table(
        "artifacts",
        sa.column("key", sa.String),
        sa.column("manifest_digest", sa.String),
        sa.column("metadata", sa.JSON),
        sa.column("created_at", sa.DateTime),
    )
    conn = op.get_bind()
    rows = []
    for key, digest, metadata, created_at in conn.execute(
        sa.select(
            artifacts.c.key,
            artifacts.c.manifest_digest,
            artifacts.c.metadata,
            artifacts.c.created_at,
        )
    ):
        parents = (metadata or {}).get("parents") if isinstance(metadata, dict) else None
        parents = [p for p in parents if isinstance(p, str)] if isinstance(parents, list) else []
        rows.append(
            {"key": key, "manifest_digest": digest, "parents": parents, "created_at": created_at}
        )
    for i in range(0, len(rows), 500):
        op.bulk_insert(results, rows[i : i + 500])


def downgrade() -> None:
    op.drop_table("action_results")

"""Initial schema: artifacts, aliases, file_hashes.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("manifest_digest", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("backend", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
    )
    for col in ("manifest_digest", "model", "target", "backend", "created_at", "last_used_at"):
        op.create_index(f"ix_artifacts_{col}", "artifacts", [col])
    op.create_table(
        "aliases",
        sa.Column("alias", sa.String(255), primary_key=True),
        sa.Column(
            "key",
            sa.String(255),
            sa.ForeignKey("artifacts.key", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_aliases_key", "aliases", ["key"])
    op.create_table(
        "file_hashes",
        sa.Column("path", sa.Text(), primary_key=True),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("hash_version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("file_hashes")
    op.drop_index("ix_aliases_key", "aliases")
    op.drop_table("aliases")
    for col in ("manifest_digest", "model", "target", "backend", "created_at", "last_used_at"):
        op.drop_index(f"ix_artifacts_{col}", "artifacts")
    op.drop_table("artifacts")

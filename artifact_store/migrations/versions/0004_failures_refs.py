"""Failures as data and artifact blob references.

``build_failures`` holds the last failed build of each key (log, exit code, toolchain
identity); ``artifact_blobs`` lists the blobs each artifact keeps alive, so gc need not re-read
every manifest. Existing artifacts get no ``artifact_blobs`` rows: gc reads their manifests as
before. An index on ``artifacts.state`` is not needed; ``ls`` pages by ``created_at``.

Revision ID: 0004_failures_refs
Revises: 0003_integrity
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_failures_refs"
down_revision = "0003_integrity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "build_failures",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("backend", sa.String(255), nullable=False),
        sa.Column("profile", sa.String(255), nullable=False),
        sa.Column("toolchain", sa.String(64), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.Column("log_digest", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failed_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_build_failures_failed_at", "build_failures", ["failed_at"])
    op.create_table(
        "artifact_blobs",
        sa.Column(
            "key",
            sa.String(255),
            sa.ForeignKey("artifacts.key", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", "digest"),
    )


def downgrade() -> None:
    op.drop_table("artifact_blobs")
    op.drop_index("ix_build_failures_failed_at", "build_failures")
    op.drop_table("build_failures")

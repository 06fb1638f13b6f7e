"""Integrity: blob stat records for the cheap check, artifact state.

``blob_stats`` holds each blob's (inode, mtime_ns, size) as recorded when it became part of an
artifact; ``artifacts.state`` is "ok" or "corrupt" (with ``problem`` saying why). Existing
artifacts start "ok"; their blobs get stat records on first check (trusted on first use, as
they were before; ``rmbuild verify`` re-hashes).

Revision ID: 0003_integrity
Revises: 0002_artifact_uses
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_integrity"
down_revision = "0002_artifact_uses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_stats",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
    )
    # Plain ADD COLUMN (not batch mode): on SQLite a batch would recreate the table, and with
    # foreign keys on, dropping the old one would cascade to aliases and uses.
    op.add_column(
        "artifacts", sa.Column("state", sa.String(16), nullable=False, server_default="ok")
    )
    op.add_column("artifacts", sa.Column("problem", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("problem")
        batch.drop_column("state")
    op.drop_table("blob_stats")

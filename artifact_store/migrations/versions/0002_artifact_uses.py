"""artifact_uses: every (model, target) an artifact serves, not only its first builder's.

One artifact (a shared export stage, say) is found as a cache hit by builds for other
targets; its row's model/target columns name only the build that made it. Existing artifacts
get one use each, from those columns, dated at their creation.

Revision ID: 0002_artifact_uses
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_artifact_uses"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_uses",
        sa.Column(
            "key",
            sa.String(255),
            sa.ForeignKey("artifacts.key", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("first_used_at", sa.DateTime(), nullable=False),
        # The key leads the primary key, so its index also serves lookups (and cascades) by key.
        sa.PrimaryKeyConstraint("key", "model", "target"),
    )
    op.create_index("ix_artifact_uses_model_target", "artifact_uses", ["model", "target"])
    op.execute(
        "INSERT INTO artifact_uses (key, model, target, first_used_at)"
        " SELECT key, model, target, created_at FROM artifacts"
    )


def downgrade() -> None:
    op.drop_index("ix_artifact_uses_model_target", "artifact_uses")
    op.drop_table("artifact_uses")

"""alerts in: the firing alerts Prometheus Alertmanager sent, kept across a restart

Alertmanager sends a firing alert again only every repeat_interval (4h by
default): the alerts that were firing when beamwatch stopped must still be
known when it starts.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 06:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("starts_at", sa.Float(), nullable=False),
        sa.Column("received", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint"),
    )


def downgrade() -> None:
    op.drop_table("alerts")

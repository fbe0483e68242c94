"""facility: whose store this is, and who is on call now

`store_meta` holds one row per key; `beamline` is written the first time a
config opens the store and checked at every later open, so a config can never
write into another beamline's log (docs/decisions/0012). `oncall_now` is the
running engine's snapshot of who is on call for each team, for readers that do
not have the beamline's config (`beamwatch facility`). Both additive: an
older engine still running beside it ignores them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 06:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_meta",
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "oncall_now",
        sa.Column("team", sa.String(length=100), nullable=False),
        sa.Column("person", sa.String(length=100), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("since", sa.Float(), nullable=True),
        sa.Column("until", sa.Float(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("team"),
    )


def downgrade() -> None:
    op.drop_table("oncall_now")
    op.drop_table("store_meta")

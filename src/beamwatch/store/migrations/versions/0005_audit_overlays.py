"""front ends: the audit log of changes people asked for, runtime overlays

Every change asked for from a front end (Slack, the CLI, the web) is kept in
`audit`: who, when, from where, what, and whether it was done or refused.
Changes to people's subscriptions, quiet hours and on-call takeovers made at
run time are kept in `overlays`, applied over the YAML file's values.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 04:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_time", "audit", ["time"])
    op.create_table(
        "overlays",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("ended_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_overlays_active", "overlays", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_overlays_active", table_name="overlays")
    op.drop_table("overlays")
    op.drop_index("ix_audit_time", table_name="audit")
    op.drop_table("audit")

"""store hardening: wider notification destinations, the quarantine of refused rows

A destination is "person:NAME/KIND" with ids of up to 100 characters, which
did not fit VARCHAR(40). Rows the database refuses for good (a value no
column can take) are kept, as text, in `quarantine` instead of blocking every
later write.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 23:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.alter_column("destination", existing_type=sa.String(length=40),
                           type_=sa.String(length=200), existing_nullable=False)
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("check_id", sa.String(length=200), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quarantine_time", "quarantine", ["time"])


def downgrade() -> None:
    op.drop_index("ix_quarantine_time", table_name="quarantine")
    op.drop_table("quarantine")
    with op.batch_alter_table("notifications") as batch:
        batch.alter_column("destination", existing_type=sa.String(length=200),
                           type_=sa.String(length=40), existing_nullable=False)

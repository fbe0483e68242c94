"""an HA pair: the leader's lease, and one heartbeat row per instance with its role

Two `beamwatch run` on one PostgreSQL database: the one holding the "engine"
lease decides and sends; its fencing token is checked in the same transaction
as every decision stored and every notification claimed (docs/decisions/0006).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 07:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("host", sa.String(length=200), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("token", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("renewals", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("acquired", sa.Float(), nullable=True),
        sa.Column("expires", sa.Float(), nullable=False, server_default="0"),
        sa.Column("url", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("engine_heartbeat") as batch:
        batch.add_column(sa.Column("role", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("url", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("engine_heartbeat") as batch:
        batch.drop_column("url")
        batch.drop_column("role")
    op.drop_table("leases")

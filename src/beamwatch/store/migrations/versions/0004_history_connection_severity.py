"""value history: the connection and the record's EPICS severity per minute, as data

Replay used to recover disconnections and the record's own severity by reading
the messages of logged transitions; rewording a message broke it silently.
Each minute row now says whether the PV was connected at the end of the
minute, when it was first lost and last back in it, and the worst record
severity in it (with when) and the last. Rows written before this revision
have NULL there: not recorded, which replay reports rather than guesses.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = [
    ("connected", sa.Boolean()),
    ("lost_at", sa.Float()),
    ("back_at", sa.Float()),
    ("record_severity", sa.Integer()),
    ("record_severity_at", sa.Float()),
    ("record_severity_last", sa.Integer()),
]


def upgrade() -> None:
    with op.batch_alter_table("value_history") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("value_history") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)

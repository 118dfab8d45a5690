"""Dashboard sessions ended by signing out: the session's nonce until the cookie would have
expired anyway. Sessions are signed cookies (no session table); without this, a copy of the
cookie kept working after its browser signed out.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_signouts",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.Float(precision=53), nullable=False),
    )
    op.create_index("ix_dashboard_signouts_expires", "dashboard_signouts", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_dashboard_signouts_expires", "dashboard_signouts")
    op.drop_table("dashboard_signouts")

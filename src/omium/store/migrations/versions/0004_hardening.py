"""Hardening: poison executions (a count of worker-lost reclaims per execution) and credit
holds (a call's estimate reserved from the balance before it is sent, settled after).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.Float(precision=53)


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        # Reclaims after a worker was lost; past max_recoveries the execution is dead-lettered.
        batch.add_column(sa.Column("recoveries", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("tenants") as batch:
        # How far below zero a limited tenant may go (0: never).
        batch.add_column(sa.Column("overdraft_nano", sa.BigInteger, nullable=False,
                                   server_default="0"))
    op.create_table(
        "credit_holds",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(255), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("amount_nano", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        # A hold whose process died is released once it expires.
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index("ix_credit_holds_expires", "credit_holds", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_credit_holds_expires", "credit_holds")
    op.drop_table("credit_holds")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("overdraft_nano")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("recoveries")

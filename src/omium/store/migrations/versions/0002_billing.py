"""Billing: tenants with exact balances, one usage record per LLM call, backend failures.

Revision ID: 0002
Revises: 0001
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.Float(precision=53)


def upgrade() -> None:
    # Money is integer nano-dollars (1e-9 $): exact on both backends (SQLite has no decimal
    # type), and any price with <= 6 decimals per 1K tokens costs whole nano-dollars.
    tenants = op.create_table(
        "tenants",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("balance_nano", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("limited", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", TS, nullable=False),
    )
    # CLI runs bill the tenant "local", which has no budget limit unless one is set.
    op.bulk_insert(tenants, [{"id": "local", "name": "local", "balance_nano": 0,
                              "limited": 0, "created_at": time.time()}])
    op.create_table(
        "usage_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        sa.Column("charge_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(255), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("execution_id", sa.String(255)),
        sa.Column("agent_id", sa.String(128)),
        sa.Column("backend", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("model_type", sa.String(16), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("estimated", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost_nano", sa.BigInteger, nullable=False),
        sa.Column("used_fallback", sa.Integer, nullable=False, server_default="0"),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
    )
    # The seed's index: token_usage(tenant_id, date).
    op.create_index("idx_usage_tenant_day", "usage_records", ["tenant_id", "day"])
    op.create_index("ix_usage_execution", "usage_records", ["execution_id"])
    op.create_table(
        "llm_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("backend", sa.String(64), nullable=False),  # "*": every backend failed
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("tenant_id", sa.String(255)),
    )
    op.create_index("ix_llm_failures_ts", "llm_failures", ["ts"])


def downgrade() -> None:
    for table in ("llm_failures", "usage_records", "tenants"):
        op.drop_table(table)

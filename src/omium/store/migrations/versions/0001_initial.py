"""Initial schema: workflows, executions, checkpoints, handoffs, consensus results, events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# JSON is kept as text: the engine writes and reads whole documents, and text round-trips
# faster than JSONB through both drivers. Times are epoch seconds (double precision).
TS = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_workflows_name", "workflows", ["name"])
    op.create_table(
        "executions",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("workflow_id", sa.String(255), sa.ForeignKey("workflows.id"), nullable=True),
        sa.Column("workflow_name", sa.String(200), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("inputs", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(255), nullable=False, server_default="local"),
        sa.Column("decision", sa.Text),
        sa.Column("result", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("failed_agent", sa.String(128)),
        sa.Column("failure_type", sa.String(32)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS),
    )
    # The seed's index: unfinished executions by tenant and status (workers, dashboards).
    op.create_index("idx_executions_tenant_status", "executions", ["tenant_id", "status"],
                    sqlite_where=sa.text("status != 'completed'"),
                    postgresql_where=sa.text("status != 'completed'"))
    op.create_index("ix_executions_created", "executions", ["created_at"])
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("execution_id", sa.String(255),
                  sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("agent_index", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("served_by", sa.String(128)),
        sa.Column("superseded", sa.Integer, nullable=False, server_default="0"),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    # The seed's index, and one live checkpoint per agent: a finished agent is final.
    op.create_index("idx_checkpoints_execution", "checkpoints",
                    ["execution_id", sa.text("created_at DESC")])
    op.create_index("uq_checkpoints_live", "checkpoints", ["execution_id", "agent_id"],
                    unique=True, sqlite_where=sa.text("superseded = 0"),
                    postgresql_where=sa.text("superseded = 0"))
    op.create_table(
        "handoffs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("execution_id", sa.String(255), nullable=False, index=True),
        sa.Column("from_agent", sa.String(128), nullable=False),
        sa.Column("to_agents", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("acks", sa.Text, nullable=False),
        sa.Column("reason", sa.String(32)),
        sa.Column("error", sa.Text),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "consensus_results",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("execution_id", sa.String(255),
                  sa.ForeignKey("executions.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("decision", sa.Text),
        sa.Column("agreement_level", sa.Float, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("reviewed_decision", sa.String(32)),
        sa.Column("reviewed_at", TS),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("execution_id", sa.String(255), nullable=False, index=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("agent_id", sa.String(128)),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_events_type", "events", ["type"])


def downgrade() -> None:
    for table in ("events", "consensus_results", "handoffs", "checkpoints", "executions",
                  "workflows"):
        op.drop_table(table)

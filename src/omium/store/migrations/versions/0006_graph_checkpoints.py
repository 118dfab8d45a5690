"""LangGraph checkpoints and pending writes (the saver of ``omium.contrib.langgraph``).

A graph's thread keeps one row per super-step checkpoint (its channel values inside the
serialised checkpoint, as langgraph-checkpoint-sqlite stores them) and one row per pending
write. Keys are compared as bytes on both backends (``COLLATE "C"`` on PostgreSQL, SQLite's
default): LangGraph's checkpoint ids are time-ordered strings, and "newest" and ``before``
must mean the same thing everywhere.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.Float(precision=53)


def _key() -> sa.types.TypeEngine:
    # Text: a thread id holds an execution id and an agent id, longer than any one column.
    return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "graph_checkpoints",
        sa.Column("thread_id", _key(), primary_key=True),
        sa.Column("checkpoint_ns", _key(), primary_key=True, server_default=""),
        sa.Column("checkpoint_id", _key(), primary_key=True),
        sa.Column("parent_checkpoint_id", _key()),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("checkpoint", sa.LargeBinary, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        # The Omium execution whose agent ran the graph (None for other callers).
        sa.Column("execution_id", sa.String(255)),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_graph_checkpoints_execution", "graph_checkpoints", ["execution_id"])
    op.create_table(
        "graph_writes",
        sa.Column("thread_id", _key(), primary_key=True),
        sa.Column("checkpoint_ns", _key(), primary_key=True, server_default=""),
        sa.Column("checkpoint_id", _key(), primary_key=True),
        sa.Column("task_id", _key(), primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("task_path", _key(), nullable=False, server_default=""),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("graph_writes")
    op.drop_index("ix_graph_checkpoints_execution", "graph_checkpoints")
    op.drop_table("graph_checkpoints")

"""Claims that do not slow down as history grows: one partial index per claimable kind.

The old claim (queued OR expired-running, oldest first) could use no index with its OR and
walked ``ix_executions_created`` through every finished row (238 ms a claim at 300,000
executions). Each branch now probes its own partial index, bounded by the queue and the
running set, never by the history.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _partial(name: str, table: str, columns: list[str], where: str) -> None:
    op.create_index(name, table, columns, sqlite_where=sa.text(where),
                    postgresql_where=sa.text(where))


def upgrade() -> None:
    # The queue, oldest first: claims, queue depth. (status leads so that a query's
    # ``status = 'queued'`` is a search of this index, not a scan.)
    _partial("idx_executions_queued", "executions", ["status", "created_at"],
             "status = 'queued'")
    # Leases by expiry: reclaims (an expired lease) and the "suspect waits" probe.
    _partial("idx_executions_leases", "executions", ["lease_expires_at"], "status = 'running'")
    # Queued again after a reclaim: suspects that run alone (few; usually none).
    _partial("idx_executions_requeued", "executions", ["status", "recoveries"],
             "status = 'queued' AND recoveries > 0")
    # Live workers by heartbeat (the table keeps every worker process ever started).
    _partial("idx_workers_live", "workers", ["heartbeat_at"], "stopped_at IS NULL")
    # Replaced by the indexes above (its IN () predicate kept SQLite off it).
    op.drop_index("idx_executions_claim", "executions")
    # (tenant_id, status) of every unfinished or failed execution: a prefix of
    # idx_executions_tenant_status_created, and a trap for the hot paths (PostgreSQL would
    # read it whole for "status = 'queued'", failed history and all).
    op.drop_index("idx_executions_tenant_status", "executions")


def downgrade() -> None:
    _partial("idx_executions_tenant_status", "executions", ["tenant_id", "status"],
             "status != 'completed'")
    _partial("idx_executions_claim", "executions", ["status", "created_at"],
             "status IN ('queued', 'running')")
    op.drop_index("idx_workers_live", "workers")
    op.drop_index("idx_executions_requeued", "executions")
    op.drop_index("idx_executions_leases", "executions")
    op.drop_index("idx_executions_queued", "executions")

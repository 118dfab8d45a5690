"""The service: API keys, per-tenant workflows, idempotent submissions, leases with fencing
epochs, cancellation requests, and worker heartbeats.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),  # sha256 hex: keys never stored
        sa.Column("prefix", sa.String(16), nullable=False),  # to recognise a key in listings
        sa.Column("tenant_id", sa.String(255), sa.ForeignKey("tenants.id"), nullable=True),
        sa.Column("admin", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant_id"])
    with op.batch_alter_table("workflows") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(255), nullable=False,
                                   server_default="local"))
    op.create_index("ix_workflows_tenant_created", "workflows", ["tenant_id", "created_at"])
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(255)))
        batch.add_column(sa.Column("lease_owner", sa.String(255)))
        batch.add_column(sa.Column("lease_expires_at", TS))
        # Fencing: every claim increments the epoch; writes carrying an older one are refused.
        batch.add_column(sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("cancel_requested", sa.Integer, nullable=False,
                                   server_default="0"))
    with op.batch_alter_table("checkpoints") as batch:
        # The lease epoch the checkpoint was written under (0: no lease, e.g. the CLI).
        batch.add_column(sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"))
    op.create_index("uq_executions_idempotency", "executions", ["tenant_id", "idempotency_key"],
                    unique=True, sqlite_where=sa.text("idempotency_key IS NOT NULL"),
                    postgresql_where=sa.text("idempotency_key IS NOT NULL"))
    # What workers claim: queued work, and running work whose lease ran out.
    op.create_index("idx_executions_claim", "executions", ["status", "created_at"],
                    sqlite_where=sa.text("status IN ('queued', 'running')"),
                    postgresql_where=sa.text("status IN ('queued', 'running')"))
    op.create_index("idx_executions_tenant_created", "executions",
                    ["tenant_id", "created_at", "id"])
    # Listing one status of a tenant, newest first (keyset): without it, a filter on a rare
    # status walks the tenant's whole history (measured: p99 48 -> 113 ms from 1k to 100k).
    op.create_index("idx_executions_tenant_status_created", "executions",
                    ["tenant_id", "status", "created_at", "id"])
    op.create_table(
        "workers",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("running", sa.Integer, nullable=False, server_default="0"),
        sa.Column("stopped_at", TS),
    )


def downgrade() -> None:
    op.drop_table("workers")
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("lease_epoch")
    op.drop_index("idx_executions_tenant_status_created", "executions")
    op.drop_index("idx_executions_tenant_created", "executions")
    op.drop_index("idx_executions_claim", "executions")
    op.drop_index("uq_executions_idempotency", "executions")
    with op.batch_alter_table("executions") as batch:
        for col in ("cancel_requested", "lease_epoch", "lease_expires_at", "lease_owner",
                    "idempotency_key"):
            batch.drop_column(col)
    op.drop_index("ix_workflows_tenant_created", "workflows")
    with op.batch_alter_table("workflows") as batch:
        batch.drop_column("tenant_id")
    op.drop_table("api_keys")

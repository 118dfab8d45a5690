"""Storage conformance: every method of every protocol of ``omium.store.base``, tested on
SQLite and PostgreSQL alike (the ``store`` fixture), one file per protocol:
tests/test_store_executions.py, _billing.py, _tenants.py, _leases.py, _graph.py; the
connection here.

``CONFORMANCE`` names the test that covers each method; a method added to a protocol without
one fails ``test_every_store_method_has_a_conformance_test``.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Protocol

import pytest

from omium.store import base, open_store
from omium.store.base import Store
from omium.store.migrate import MIGRATIONS_DIR
from omium.store.migrations import HEAD
from omium.store.records import SchemaRevision

_EXEC = "test_store_executions"
_BILL = "test_store_billing"
_KEYS = "test_store_tenants"
_LEASE = "test_store_leases"
_GRAPH = "test_store_graph"
_CONNECT = "test_store::test_connect_migrates_once_and_reports_the_revision"
CONFORMANCE = {
    # Store: the connection
    "connect": _CONNECT,
    "close": _CONNECT,
    "schema_revision": _CONNECT,
    # ExecutionStore
    "put_workflow": f"{_EXEC}::test_workflows_are_stored_once_by_content",
    "get_workflow": f"{_EXEC}::test_workflows_are_stored_once_by_content",
    "get_workflow_record": f"{_EXEC}::test_workflow_records_are_the_tenants_own_newest_first",
    "list_workflows": f"{_EXEC}::test_workflow_records_are_the_tenants_own_newest_first",
    "create_execution": f"{_EXEC}::test_create_execution_is_idempotent_by_id",
    "get_execution": f"{_EXEC}::test_create_execution_is_idempotent_by_id",
    "list_executions": f"{_EXEC}::test_list_executions_filters_and_orders_newest_first",
    "count_executions": f"{_EXEC}::test_list_executions_filters_and_orders_newest_first",
    "find_by_idempotency_key": f"{_EXEC}::test_an_idempotency_key_names_one_request",
    "update_execution": f"{_EXEC}::test_update_execution_with_expected_status_is_conditional",
    "apply_review": f"{_EXEC}::test_a_review_applies_once_and_all_at_once",
    "request_cancel": f"{_EXEC}::test_a_cancel_records_its_event_and_an_ended_execution_refuses",
    "save_checkpoint": f"{_EXEC}::test_the_last_checkpoint_finishes_the_execution_in_its_"
                       "transaction",
    "get_checkpoints": f"{_EXEC}::test_one_live_checkpoint_per_agent_and_rollback_supersedes",
    "supersede_checkpoints":
        f"{_EXEC}::test_one_live_checkpoint_per_agent_and_rollback_supersedes",
    "add_handoffs": f"{_EXEC}::test_handoffs_and_events_round_trip_behind_the_fence",
    "get_handoffs": f"{_EXEC}::test_handoffs_and_events_round_trip_behind_the_fence",
    "add_events": f"{_EXEC}::test_handoffs_and_events_round_trip_behind_the_fence",
    "get_events": f"{_EXEC}::test_handoffs_and_events_round_trip_behind_the_fence",
    "save_consensus": f"{_EXEC}::test_consensus_review_happens_once",
    "get_consensus": f"{_EXEC}::test_consensus_review_happens_once",
    "review_consensus": f"{_EXEC}::test_consensus_review_happens_once",
    "usage_records": f"{_BILL}::test_a_key_is_charged_once_and_records_filter",
    "execution_detail": f"{_EXEC}::test_the_detail_is_typed_records_and_totals_in_ints",
    "execution_rows": f"{_EXEC}::test_each_list_of_the_detail_pages_by_id",
    # BillingStore
    "get_tenant": f"{_BILL}::test_credits_create_a_limited_tenant_and_overdrafts_apply",
    "add_credits": f"{_BILL}::test_credits_create_a_limited_tenant_and_overdrafts_apply",
    "set_overdraft": f"{_BILL}::test_credits_create_a_limited_tenant_and_overdrafts_apply",
    "charge_usage": f"{_BILL}::test_a_key_is_charged_once_and_records_filter",
    "reserve_credit": f"{_BILL}::test_holds_reserve_settle_release_and_expire",
    "settle_usage": f"{_BILL}::test_holds_reserve_settle_release_and_expire",
    "release_hold": f"{_BILL}::test_holds_reserve_settle_release_and_expire",
    "release_expired_holds": f"{_BILL}::test_holds_reserve_settle_release_and_expire",
    "credit_holds": f"{_BILL}::test_holds_reserve_settle_release_and_expire",
    "usage_summary": f"{_BILL}::test_usage_is_summed_by_day_and_model_in_ints",
    "add_llm_failure": f"{_BILL}::test_llm_failures_are_counted_by_backend_and_kind",
    "llm_failures": f"{_BILL}::test_llm_failures_are_counted_by_backend_and_kind",
    # TenantStore
    "create_tenant": f"{_KEYS}::test_tenants_are_created_once_and_listed_by_id",
    "list_tenants": f"{_KEYS}::test_tenants_are_created_once_and_listed_by_id",
    "create_api_key": f"{_KEYS}::test_api_keys_are_found_by_hash_and_revoked_once",
    "find_api_key": f"{_KEYS}::test_api_keys_are_found_by_hash_and_revoked_once",
    "revoke_api_key": f"{_KEYS}::test_api_keys_are_found_by_hash_and_revoked_once",
    "end_session": f"{_KEYS}::test_a_signed_out_session_stays_ended_until_its_expiry",
    "session_ended": f"{_KEYS}::test_a_signed_out_session_stays_ended_until_its_expiry",
    # LeaseStore
    "claim_execution": f"{_LEASE}::test_claims_take_the_oldest_queued_execution_once",
    "claim_executions": "test_claim_plans::test_batch_claims_take_the_oldest_once_each",
    "renew_lease": f"{_LEASE}::test_renew_release_and_cancel",
    "renew_leases": "test_claim_plans::test_one_renewal_for_all_leases_refuses_moved_epochs",
    "release_lease": f"{_LEASE}::test_renew_release_and_cancel",
    "queue_depth": f"{_LEASE}::test_queue_depth_counts_what_waits_for_a_worker",
    "queue_signal": f"{_LEASE}::test_the_queue_signal_fires_for_whatever_queues_an_execution",
    "worker_heartbeat": f"{_LEASE}::test_workers_heartbeat",
    "worker_stopped": f"{_LEASE}::test_workers_heartbeat",
    "live_workers": f"{_LEASE}::test_workers_heartbeat",
    # GraphCheckpointStore
    "put_graph_checkpoint": f"{_GRAPH}::test_graph_checkpoints_are_found_by_thread_namespace_"
                            "and_id_newest_first",
    "get_graph_checkpoint": f"{_GRAPH}::test_graph_checkpoints_are_found_by_thread_namespace_"
                            "and_id_newest_first",
    "list_graph_checkpoints": f"{_GRAPH}::test_graph_checkpoints_are_found_by_thread_"
                              "namespace_and_id_newest_first",
    "put_graph_writes": f"{_GRAPH}::test_graph_writes_keep_the_first_regular_write_and_"
                        "replace_special_ones",
    "delete_graph_thread": f"{_GRAPH}::test_deleting_a_graph_thread_removes_every_namespace_"
                           "and_write",
}


def _protocol_methods() -> dict[str, set[str]]:
    """Each protocol of omium.store.base -> its abstract methods."""
    return {name: set(cls.__abstractmethods__) for name, cls in vars(base).items()
            if isinstance(cls, type) and cls.__module__ == base.__name__
            and issubclass(cls, Protocol)}  # type: ignore[arg-type]


def test_every_store_method_has_a_conformance_test() -> None:
    protocols = _protocol_methods()
    every = set().union(*protocols.values())
    assert every == Store.__abstractmethods__, "Store must be the union of the protocols"
    missing = sorted(every - set(CONFORMANCE))
    assert not missing, f"store methods without a conformance test in CONFORMANCE: {missing}"
    assert not set(CONFORMANCE) - every, "CONFORMANCE names methods no protocol has"
    for method, where in CONFORMANCE.items():
        module, name = where.split("::")
        test = getattr(importlib.import_module(f"tests.{module}"), name)
        # The ``store`` fixture runs it on SQLite and on PostgreSQL.
        assert "store" in inspect.signature(test).parameters, where
        assert re.search(rf"\.{method}\(", inspect.getsource(test)), (
            f"{where} does not call {method}")


def test_head_constant_matches_alembic_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD


async def test_connect_migrates_once_and_reports_the_revision(store: Store) -> None:
    assert await store.schema_revision() == SchemaRevision(HEAD, HEAD)
    again = open_store(store.url)
    await again.connect()  # already at head: no migration, no error
    await again.connect()  # connected already: nothing to do
    assert (await again.schema_revision()).up_to_date
    await again.close()


def test_unsupported_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        open_store("mysql://x")
    with pytest.raises(ValueError, match="in-memory"):
        open_store("sqlite:///:memory:")


def test_a_fresh_sqlite_store_s_commits_are_seen_by_other_processes(tmp_path) -> None:
    """Migrating a new database must not cost the store its SQLite locks (closing any
    descriptor of the file drops them): another process closing its connection would then
    delete the WAL under the store, and its later commits would reach no one."""
    import asyncio
    import subprocess
    import sys

    from omium import open_store
    from tests._store_util import execution

    path = tmp_path / "fresh.db"
    peek = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "print(c.execute('SELECT COUNT(*) FROM executions').fetchone()[0]); c.close()")

    def others_see() -> int:
        return int(subprocess.run([sys.executable, "-c", peek, str(path)], check=True,
                                  capture_output=True, text=True).stdout)

    async def go() -> list[int]:
        async with open_store(f"sqlite:///{path}") as store:
            seen = []
            for i in range(3):
                await store.create_execution(execution(f"e{i}"))
                seen.append(await asyncio.to_thread(others_see))
            return seen

    assert asyncio.run(go()) == [1, 2, 3]

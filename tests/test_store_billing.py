"""``BillingStore`` conformance: balances, holds, usage and reports, alike on both backends
(nano amounts and counts ``int`` on each)."""

from __future__ import annotations

import time
from dataclasses import replace

from omium.store.base import Store
from omium.store.records import CreditHold, LLMFailureCount, UsageSummary
from tests._store_util import usage


def _hold(hold_id: str, nano: int, expires_at: float | None = None) -> CreditHold:
    now = time.time()
    return CreditHold(hold_id, "t", nano, now, expires_at or now + 60)


async def test_credits_create_a_limited_tenant_and_overdrafts_apply(store: Store) -> None:
    assert await store.get_tenant("t") is None
    assert await store.add_credits("t", 500) == 500
    assert await store.add_credits("t", -200) == 300
    assert await store.set_overdraft("t", 1_000)
    assert not await store.set_overdraft("nobody", 1_000)
    tenant = await store.get_tenant("t")
    assert tenant is not None
    assert (tenant.balance_nano, tenant.limited, tenant.overdraft_nano) == (300, True, 1_000)


async def test_a_key_is_charged_once_and_records_filter(store: Store) -> None:
    await store.add_credits("t", 10_000)
    assert await store.charge_usage(usage("k1", "t", 700, execution_id="e1", agent_id="a",
                                          used_fallback=True))
    assert not await store.charge_usage(usage("k1", "t", 700, execution_id="e1"))
    assert await store.charge_usage(usage("k2", "t", 300, execution_id="e2"))
    tenant = await store.get_tenant("t")
    assert tenant is not None and tenant.balance_nano == 9_000
    [rec] = await store.usage_records(execution_id="e1")
    assert (rec.cost_nano, rec.agent_id, rec.used_fallback, rec.estimated) == (700, "a", True,
                                                                                False)
    assert [r.idempotency_key for r in await store.usage_records(tenant_id="t")] == ["k1", "k2"]
    assert await store.usage_records(tenant_id="other") == []


async def test_holds_reserve_settle_release_and_expire(store: Store) -> None:
    await store.add_credits("t", 1_000)
    assert await store.reserve_credit(_hold("h1", 600))
    assert not await store.reserve_credit(_hold("h2", 600))  # 400 left: refused, not held
    assert [h.id for h in await store.credit_holds("t")] == ["h1"]
    assert await store.settle_usage(usage("k1", "t", 250), _hold("h1", 600))
    assert await store.credit_holds("t") == []
    assert await store.reserve_credit(_hold("h3", 100))
    assert await store.release_hold(_hold("h3", 100))
    assert not await store.release_hold(_hold("h3", 100))  # given back once
    expired = _hold("h4", 100, expires_at=time.time() - 1)
    assert await store.reserve_credit(expired)
    assert await store.release_expired_holds(time.time(), "t") == 1
    assert await store.release_expired_holds(time.time()) == 0
    tenant = await store.get_tenant("t")
    assert tenant is not None and tenant.balance_nano == 750  # only the settled cost is gone
    await store.create_tenant("free", limited=False)
    assert not await store.reserve_credit(replace(_hold("h5", 1), tenant_id="free"))


async def test_usage_is_summed_by_day_and_model_in_ints(store: Store) -> None:
    day = 86400.0 * 365  # 1971-01-01
    for i, (model, kind, cost) in enumerate([("smollm2", "local", 3_000_000_000),
                                             ("smollm2", "local", 3_000_000_000),
                                             ("gpt-3.5-turbo", "hosted", 35_000)]):
        await store.charge_usage(replace(usage(f"k{i}", "local", cost, created_at=day,
                                               estimated=i == 0),
                                         model=model, model_type=kind))
    rows = await store.usage_summary(tenant_id="local")
    # Over 2**32 nano-dollars: PostgreSQL's SUM over a BIGINT is a Decimal; the store's an int.
    assert rows == [
        UsageSummary("local", "1971-01-01", "gpt-3.5-turbo", "hosted", 1, 10, 20, 35_000, 0, 0),
        UsageSummary("local", "1971-01-01", "smollm2", "local", 2, 20, 40, 6_000_000_000, 0, 1)]
    assert all(type(v) is int for r in rows for v in vars(r).values() if not isinstance(v, str))
    assert await store.usage_summary(since_day="1971-01-02") == []
    assert len(await store.usage_summary(since_day="1971-01-01")) == 2


async def test_llm_failures_are_counted_by_backend_and_kind(store: Store) -> None:
    before = time.time() - 1
    for backend, kind in [("local", "timeout"), ("local", "timeout"), ("*", "all_failed")]:
        await store.add_llm_failure(backend, kind, "x" * 5000, None)  # long errors: cut
    found = await store.llm_failures(since=before)
    assert [(f.backend, f.kind, f.n) for f in found] == [("*", "all_failed", 1),
                                                         ("local", "timeout", 2)]
    assert all(isinstance(f, LLMFailureCount) and type(f.n) is int for f in found)
    assert await store.llm_failures(since=time.time() + 60) == []

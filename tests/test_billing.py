"""Exact token billing: every successful call billed once, failed calls never, to the unit."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import pytest

from omium.billing import Ledger, credits_to_nano, dollars_to_nano, nano_to_credits
from omium.errors import AllBackendsFailedError, InsufficientCreditsError, UnknownTenantError
from omium.llm import LLMRouter, parse_config
from omium.store.base import Store
from omium.store.records import UsageRecord
from omium.testing.fake_server import FakeOpenAIServer

LOCAL_NANO = 1_000_000  # $0.001 per local inference
TENANTS = [f"tenant-{i}" for i in range(5)]


def hosted_nano(p: int, c: int) -> int:  # gpt-3.5-turbo: $0.0005 / 1K in, $0.0015 / 1K out
    return p * 500 + c * 1500


def router_for(store: Store, local: FakeOpenAIServer, hosted: FakeOpenAIServer) -> LLMRouter:
    cfg = parse_config({"backends": [
        {"name": "local", "base_url": local.base_url, "model": "smollm2"},
        {"name": "openai", "base_url": hosted.base_url, "model": "gpt-3.5-turbo",
         "kind": "hosted"}],
        # The breaker is tested elsewhere; here every call must reach the servers.
        "circuit": {"failure_threshold": 100000}})
    return LLMRouter(cfg, ledger=Ledger(store))


async def test_1000_concurrent_calls_bill_exactly(store: Store) -> None:
    rng = random.Random(7)
    n = 1000
    kinds = ["answer", "answer", "answer", "fail", "close"]
    local_script = [rng.choice(kinds) for _ in range(n)]
    hosted_script = [rng.choice(["answer"] * 8 + ["fail", "close"]) for _ in range(n)]
    calls = [(i, rng.choice(TENANTS), rng.randint(1, 4000), rng.randint(1, 2000))
             for i in range(n)]
    for t in TENANTS:
        await store.add_credits(t, credits_to_nano(1_000_000))
    async with FakeOpenAIServer(model="smollm2") as local, \
            FakeOpenAIServer(model="gpt-3.5-turbo") as hosted:
        local.script(*local_script)
        hosted.script(*hosted_script)
        router = router_for(store, local, hosted)
        queue: asyncio.Queue[tuple[int, str, int, int]] = asyncio.Queue()
        for call in calls:
            queue.put_nowait(call)
        ok: dict[int, str] = {}

        async def worker() -> None:
            while not queue.empty():
                i, tenant, p, c = queue.get_nowait()
                try:
                    result = await router.chat(
                        [{"role": "user", "content": f"call-{i} #usage={p}/{c}"}],
                        tenant_id=tenant, idempotency_key=f"call-{i}")
                except AllBackendsFailedError:
                    continue
                ok[i] = result.backend

        await asyncio.gather(*(worker() for _ in range(50)))
        await router.aclose()
        # Which server answered which call, from the servers' own logs and scripts.
        answered = {}
        for server, script, name in ((local, local_script, "local"),
                                     (hosted, hosted_script, "openai")):
            for body, kind in zip(server.requests, script, strict=False):
                if kind == "answer":
                    answered[int(body["messages"][-1]["content"].split()[0][5:])] = name
    assert answered == ok  # the router's account matches the servers'
    assert 0 < len(ok) < n  # some calls failed on both backends

    records = await store.usage_records()
    assert sorted(int(r.idempotency_key[5:]) for r in records) == sorted(ok)  # once each
    by_call = {i: (t, p, c) for i, t, p, c in calls}
    for tenant in TENANTS:
        mine = [r for r in records if r.tenant_id == tenant]
        calls_ok = [i for i in ok if by_call[i][0] == tenant]
        assert sum(r.prompt_tokens for r in mine) == sum(by_call[i][1] for i in calls_ok)
        assert sum(r.completion_tokens for r in mine) == sum(by_call[i][2] for i in calls_ok)
        expected = sum(LOCAL_NANO if answered[i] == "local" else
                       hosted_nano(by_call[i][1], by_call[i][2]) for i in calls_ok)
        assert sum(r.cost_nano for r in mine) == expected
        tenant_row = await store.get_tenant(tenant)
        assert tenant_row is not None
        assert credits_to_nano(1_000_000) - tenant_row.balance_nano == expected


async def test_a_retried_write_never_charges_twice(store: Store) -> None:
    await store.add_credits("t", credits_to_nano(10))
    rec = UsageRecord("key-1", "t", "openai", "gpt-3.5-turbo", "hosted", 1000, 1000, 2_000_000,
                      5.0)
    assert await store.charge_usage(rec)
    again = UsageRecord("key-1", "t", "openai", "gpt-3.5-turbo", "hosted", 1000, 1000,
                        2_000_000, 5.0)
    assert not await store.charge_usage(again)
    tenant = await store.get_tenant("t")
    assert tenant is not None and tenant.balance_nano == credits_to_nano(10) - 2_000_000
    assert len(await store.usage_records(tenant_id="t")) == 1


async def test_unknown_tenant_is_refused_and_leaves_nothing(store: Store) -> None:
    rec = UsageRecord("k", "ghost", "local", "m", "local", 1, 1, 5, 1.0)
    with pytest.raises(UnknownTenantError):
        await store.charge_usage(rec)
    assert await store.usage_records() == []


async def test_insufficient_credits_refused_before_any_request(sqlite_store: Store) -> None:
    await sqlite_store.add_credits("poor", credits_to_nano("0.01"))  # $0.0001
    async with FakeOpenAIServer(model="smollm2") as local, \
            FakeOpenAIServer(model="gpt-3.5-turbo") as hosted:
        router = router_for(sqlite_store, local, hosted)
        with pytest.raises(InsufficientCreditsError) as err:
            await router.chat([{"role": "user", "content": "hello"}], tenant_id="poor",
                              max_tokens=100)
        assert local.count == hosted.count == 0
        assert err.value.tenant_id == "poor"
        # "local" (the CLI's tenant) has no limit and is billed all the same.
        result = await router.chat([{"role": "user", "content": "hi #usage=3/4"}])
        await router.aclose()
    assert result.billed
    local_tenant = await sqlite_store.get_tenant("local")
    assert local_tenant is not None and local_tenant.balance_nano == -LOCAL_NANO


def test_money_is_exact() -> None:
    assert dollars_to_nano(Decimal("0.0005") * 3 / 1000) == 1500
    assert nano_to_credits(1_000_000) == Decimal("0.1")  # $0.001 = 0.1 credit
    assert credits_to_nano("12.5") == 125_000_000
    with pytest.raises(ValueError, match="finer than one nano-dollar"):
        credits_to_nano("0.00000001")
    # The plan's max(1, int(cost * 100)) would bill 1 credit ($0.01) for a $0.000035 call.
    total = sum(Decimal(p) * Decimal("0.0005") / 1000 + Decimal(c) * Decimal("0.0015") / 1000
                for p, c in [(10, 20)] * 1000)
    assert dollars_to_nano(total) == 1000 * hosted_nano(10, 20)


async def test_per_tenant_balances_are_independent(store: Store) -> None:
    ledger = Ledger(store)
    assert await ledger.add_credits("a", 5) == Decimal(5)
    assert await ledger.add_credits("a", "0.5") == Decimal("5.5")
    with pytest.raises(UnknownTenantError):
        await ledger.balance("b")
    await ledger.check_budget("a", Decimal("0.055"))  # 5.5 credits = $0.055: just enough
    with pytest.raises(InsufficientCreditsError):
        await ledger.check_budget("a", Decimal("0.0551"))

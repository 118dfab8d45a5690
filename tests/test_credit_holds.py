"""Prepaid credit is held before a call is sent, so parallel calls can never overdraw it."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from omium.billing import Ledger, credits_to_nano
from omium.cli import app
from omium.errors import (
    AllBackendsFailedError,
    InsufficientCreditsError,
    LLMRequestError,
    UnknownTenantError,
)
from omium.llm import LLMRouter, parse_config
from omium.llm.router import HOLD_MARGIN_S, LLMResult
from omium.store.base import Store
from omium.store.records import UsageRecord
from omium.testing.fake_server import Behaviour, FakeOpenAIServer
from tests.conftest import ROOT

LOCAL_NANO = 1_000_000  # $0.001 per local inference: 1 credit ($0.01) pays for ten


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def router_for(ledger: Ledger, *servers: FakeOpenAIServer) -> LLMRouter:
    backends = [{"name": s.model, "base_url": s.base_url, "model": s.model,
                 "kind": "hosted" if s.model == "gpt-3.5-turbo" else "local"} for s in servers]
    return LLMRouter(parse_config({"backends": backends,
                                   "circuit": {"failure_threshold": 100000}}), ledger=ledger)


async def nano(store: Store, tenant: str) -> int:
    row = await store.get_tenant(tenant)
    assert row is not None
    return row.balance_nano


async def until(condition, within: float = 20) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(within / 0.01)):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_200_parallel_calls_spend_one_credit_once(store: Store) -> None:
    await store.add_credits("poor", credits_to_nano(1))
    async with FakeOpenAIServer(model="smollm2") as local:
        async with router_for(Ledger(store), local) as router:
            # Each call stays in flight a while, so the served ones overlap the refused ones.
            outcomes = await asyncio.gather(*(router.chat(
                [{"role": "user", "content": f"call {i} #delay=0.05"}], tenant_id="poor")
                for i in range(200)), return_exceptions=True)
        served = [o for o in outcomes if isinstance(o, LLMResult)]
        refused = [o for o in outcomes if isinstance(o, InsufficientCreditsError)]
        assert (len(served), len(refused)) == (10, 190)
        assert local.count == 10  # the refused ones never reached the backend
    assert await nano(store, "poor") == 0
    records = await store.usage_records(tenant_id="poor")
    assert sum(r.cost_nano for r in records) == credits_to_nano(1) == 10 * LOCAL_NANO
    assert await store.credit_holds("poor") == []


async def test_a_failed_refused_or_cancelled_call_gives_its_hold_back(store: Store) -> None:
    await store.add_credits("t", credits_to_nano(1))
    async with FakeOpenAIServer(model="smollm2") as local, \
            FakeOpenAIServer(model="gpt-3.5-turbo") as hosted:
        local.default = hosted.default = Behaviour(kind="fail", status=500)
        async with router_for(Ledger(store), local, hosted) as router:
            with pytest.raises(AllBackendsFailedError):
                await router.chat([{"role": "user", "content": "hi"}], tenant_id="t",
                                  max_tokens=100)
            assert (local.count, hosted.count) == (1, 1)
            assert await nano(store, "t") == credits_to_nano(1)
            with pytest.raises(LLMRequestError):  # the request's fault: a 400, no fallback
                await router.chat([{"role": "user", "content": "hi #status=400"}],
                                  tenant_id="t", max_tokens=100)
            assert await nano(store, "t") == credits_to_nano(1)
            call = asyncio.create_task(router.chat(
                [{"role": "user", "content": "hi #stall=30"}], tenant_id="t", max_tokens=100))

            async def sent() -> bool:
                return local.count == 3

            await until(sent)
            assert await nano(store, "t") < credits_to_nano(1)  # held while in flight
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
    assert await nano(store, "t") == credits_to_nano(1)  # restored exactly, every time
    assert await store.credit_holds("t") == []
    assert await store.usage_records(tenant_id="t") == []


async def test_the_balance_shows_holds_and_settles_to_the_exact_cost(store: Store) -> None:
    await store.add_credits("t", credits_to_nano(10))
    ledger = Ledger(store)
    async with FakeOpenAIServer(model="gpt-3.5-turbo") as hosted:
        async with router_for(ledger, hosted) as router:
            call = asyncio.create_task(router.chat(
                [{"role": "user", "content": "hi #usage=100/50 #delay=0.5"}], tenant_id="t",
                max_tokens=100))

            async def held() -> bool:
                return bool(await store.credit_holds("t"))

            await until(held)
            [hold] = await store.credit_holds("t")
            # Available balance: what the call in flight holds is already taken off.
            assert await ledger.balance("t") == Decimal(10) - Decimal(hold.amount_nano) / 10**7
            result = await call
    cost = 100 * 500 + 50 * 1500  # gpt-3.5-turbo: $0.0005 / 1K in, $0.0015 / 1K out
    assert hold.amount_nano > cost  # the estimate allowed 100 completion tokens
    assert result.billed
    assert await nano(store, "t") == credits_to_nano(10) - cost
    assert [r.cost_nano for r in await store.usage_records(tenant_id="t")] == [cost]
    assert await store.credit_holds("t") == []


async def test_a_retried_settle_charges_once_and_frees_its_hold(store: Store) -> None:
    await store.add_credits("t", credits_to_nano(1))
    ledger = Ledger(store)

    def rec() -> UsageRecord:
        return UsageRecord("key-1", "t", "local", "smollm2", "local", 3, 4, LOCAL_NANO, 1.0)

    first = await ledger.reserve("t", Decimal("0.002"), ttl_s=60)
    assert first is not None and await ledger.settle(rec(), first)
    again = await ledger.reserve("t", Decimal("0.002"), ttl_s=60)
    assert again is not None and not await ledger.settle(rec(), again)
    assert await nano(store, "t") == credits_to_nano(1) - LOCAL_NANO
    assert len(await store.usage_records(tenant_id="t")) == 1
    assert await store.credit_holds("t") == []


async def test_an_expired_hold_is_released_once(store: Store) -> None:
    await store.add_credits("t", credits_to_nano(1))
    clock = Clock()
    ledger = Ledger(store, clock=clock)
    dead = await ledger.reserve("t", Decimal("0.01"), ttl_s=60)  # its process then dies
    assert dead is not None
    with pytest.raises(InsufficientCreditsError) as err:
        await ledger.reserve("t", Decimal("0.001"), ttl_s=60)
    assert err.value.balance == 0
    clock.now += 61
    # The next reserve that it blocks releases it first.
    live = await ledger.reserve("t", Decimal("0.001"), ttl_s=60)
    assert live is not None
    assert await store.credit_holds("t") == [live]
    assert await nano(store, "t") == credits_to_nano(1) - LOCAL_NANO
    # A straggler settling the expired hold pays exactly what it spent, and gets nothing back.
    await ledger.release(live)
    assert await ledger.settle(UsageRecord("late", "t", "local", "smollm2", "local", 1, 1,
                                           LOCAL_NANO, 1.0), dead)
    assert await nano(store, "t") == credits_to_nano(1) - LOCAL_NANO


async def test_racing_releases_give_a_hold_back_once(store: Store) -> None:
    await store.add_credits("t", credits_to_nano(1))
    clock = Clock()
    ledger = Ledger(store, clock=clock)
    for i in range(5):
        hold = await ledger.reserve("t", Decimal("0.01"), ttl_s=1)
        assert hold is not None
        released = await asyncio.gather(
            store.release_hold(hold), store.release_hold(hold),
            store.release_expired_holds(clock.now + 2, "t"),
            store.settle_usage(UsageRecord(f"k{i}", "t", "local", "m", "local", 1, 1, 0, 1.0),
                               hold))
        assert await nano(store, "t") == credits_to_nano(1), released
        assert await store.credit_holds("t") == []


async def test_a_killed_process_hold_expires(database_url: str, store: Store) -> None:
    await store.add_credits("t", credits_to_nano(1))
    async with FakeOpenAIServer(model="smollm2") as local:
        local.default = Behaviour(kind="stall", stall_s=60)
        script = (
            "import asyncio, sys\n"
            "from omium.billing import Ledger\n"
            "from omium.llm import LLMRouter, parse_config\n"
            "from omium.store import open_store\n"
            "async def main():\n"
            "    async with open_store(sys.argv[1]) as store:\n"
            "        cfg = parse_config({'backends': [{'name': 'local', 'model': 'smollm2',\n"
            "                                          'base_url': sys.argv[2]}]})\n"
            "        await LLMRouter(cfg, ledger=Ledger(store)).chat(\n"
            "            [{'role': 'user', 'content': 'hi'}], tenant_id='t')\n"
            "asyncio.run(main())\n")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, database_url, local.base_url, cwd=ROOT)
        try:
            async def sent() -> bool:
                return local.count == 1

            await until(sent)
        finally:
            proc.send_signal(signal.SIGKILL)  # dies mid-call, its hold still taken
            await proc.wait()
    [hold] = await store.credit_holds("t")
    assert await nano(store, "t") == credits_to_nano(1) - LOCAL_NANO
    # read_timeout_s 60 + connect_timeout_s 2 + the margin
    assert hold.expires_at - hold.created_at == pytest.approx(62 + HOLD_MARGIN_S)
    clock = Clock()
    clock.now = hold.expires_at + 1
    assert await Ledger(store, clock=clock).balance("t") == Decimal(1)
    assert await store.credit_holds("t") == []


async def test_unlimited_tenants_take_no_holds(store: Store,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_holds(*args: object) -> bool:
        raise AssertionError("an unlimited tenant took a hold")

    monkeypatch.setattr(store, "reserve_credit", no_holds)
    async with FakeOpenAIServer(model="smollm2") as local:
        async with router_for(Ledger(store), local) as router:
            results = await asyncio.gather(*(router.chat(
                [{"role": "user", "content": f"call {i}"}]) for i in range(50)))
    assert all(r.billed for r in results) and local.count == 50
    assert await nano(store, "local") == -50 * LOCAL_NANO  # "local" is billed, not limited


async def test_a_tenant_seen_unlimited_is_not_read_again_and_limited_ones_always_are(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await store.create_tenant("poor")  # limited, balance 0
    await store.create_tenant("free", limited=False)
    reads: list[str] = []
    get = store.get_tenant

    async def counted(tenant_id: str) -> object:
        reads.append(tenant_id)
        return await get(tenant_id)

    monkeypatch.setattr(store, "get_tenant", counted)
    ledger = Ledger(store)
    for _ in range(3):
        assert await ledger.reserve("free", Decimal("1"), 60) is None
    assert reads == ["free"]  # known unlimited after the first: no read per call
    for _ in range(2):  # a limited tenant is never taken for unlimited: refused each time
        with pytest.raises(InsufficientCreditsError):
            await ledger.reserve("poor", Decimal("1"), 60)
    with pytest.raises(UnknownTenantError):  # an unknown one is not remembered either
        await ledger.reserve("nobody", Decimal("1"), 60)
    with pytest.raises(UnknownTenantError):
        await ledger.reserve("nobody", Decimal("1"), 60)
    assert reads.count("nobody") == 2


async def test_an_overdraft_lets_a_tenant_go_that_far_below_zero_and_no_further(
        store: Store) -> None:
    await store.create_tenant("t")
    ledger = Ledger(store)
    assert await ledger.set_overdraft("t", "0.5") == Decimal("0.5")
    async with FakeOpenAIServer(model="smollm2") as local:
        async with router_for(ledger, local) as router:
            outcomes = await asyncio.gather(*(router.chat(
                [{"role": "user", "content": f"call {i} #delay=0.05"}], tenant_id="t")
                for i in range(20)), return_exceptions=True)
    assert sum(isinstance(o, LLMResult) for o in outcomes) == 5 == local.count
    assert sum(isinstance(o, InsufficientCreditsError) for o in outcomes) == 15
    assert await nano(store, "t") == -credits_to_nano("0.5")
    with pytest.raises(ValueError, match="negative"):
        await ledger.set_overdraft("t", "-1")
    with pytest.raises(UnknownTenantError):
        await ledger.set_overdraft("nobody", "1")


def test_credits_overdraft_cli() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["credits", "add", "acme", "1"]).exit_code == 0
    result = runner.invoke(app, ["credits", "overdraft", "acme", "2.5", "--json"])
    assert result.exit_code == 0 and '"overdraft_credits": "2.5"' in result.output
    result = runner.invoke(app, ["credits", "overdraft", "acme", "--", "-1"])
    assert result.exit_code == 2 and "overdraft: -1 is negative" in result.output
    result = runner.invoke(app, ["credits", "overdraft", "acme", "lots"])
    assert result.exit_code == 2 and "not a number: 'lots'" in result.output
    result = runner.invoke(app, ["credits", "overdraft", "nobody", "1"])
    assert result.exit_code == 2 and "no tenant 'nobody'" in result.output

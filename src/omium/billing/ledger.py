"""The usage ledger: a hold on the balance before a call, one exact charge per successful call.

A limited tenant's call first takes its worst-case estimate off the balance (a *hold*, in the
same transaction as the check), so parallel calls cannot all pass one check and together
overdraw. The hold is settled to the exact cost with the usage record, or given back if the
call fails. A hold whose process died expires (the router gives it the call's timeouts plus
a margin) and is released lazily: when a reserve for that tenant is refused, and when
its balance is read here. Unlimited tenants take no holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal

from omium.billing.money import credits_to_nano, dollars_to_nano, nano_to_credits
from omium.errors import InsufficientCreditsError, UnknownTenantError
from omium.ids import random_hex
from omium.store.base import BillingStore
from omium.store.records import CreditHold, UsageRecord

# CreditHold too: what ``reserve`` hands a caller, to pass back to a settle or ``release``.
__all__ = ["CreditHold", "Ledger"]


class Ledger:
    def __init__(self, store: BillingStore, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock  # wall time: hold expiry is compared across processes
        # Tenants seen limited. ``limited`` is fixed at creation, and a stale entry corrects
        # itself (the reserve finds no limited row and looks again), so limited tenants'
        # calls skip the read and cost one write before sending, as the old check cost one
        # read.
        self._limited: set[str] = set()
        # Tenants seen unlimited: for them ``reserve`` holds nothing and needs no read. Safe
        # to keep for good because nothing ever makes an existing tenant limited (``limited``
        # is written only by the insert that creates the tenant) and tenants are never
        # deleted; a tenant that is unknown, or limited, is not kept here.
        self._unlimited: set[str] = set()
        self._pending: set[asyncio.Task[bool]] = set()

    async def check_budget(self, tenant_id: str, estimate: Decimal) -> None:
        """Refuse a call the tenant's available balance cannot cover. A check only, holding
        nothing: parallel callers may all pass it. The router uses ``reserve``."""
        tenant = await self.store.get_tenant(tenant_id)
        if tenant is None:
            raise UnknownTenantError(tenant_id)
        needed = dollars_to_nano(estimate)
        if tenant.limited and tenant.balance_nano + tenant.overdraft_nano < needed:
            raise InsufficientCreditsError(tenant_id, nano_to_credits(tenant.balance_nano),
                                           nano_to_credits(needed))

    def known_unlimited(self, tenant_id: str) -> bool:
        """Whether ``tenant_id`` is a tenant seen unlimited (``reserve`` would hold nothing): a
        caller may skip estimating the call's cost."""
        return tenant_id in self._unlimited

    async def reserve(self, tenant_id: str, estimate: Decimal,
                      ttl_s: float) -> CreditHold | None:
        """Hold ``estimate`` (dollars) of a limited tenant's balance for a call about to be
        sent, for at most ``ttl_s`` seconds; ``InsufficientCreditsError`` (nothing held) if
        the balance, less other calls' holds, cannot cover it. None for unlimited tenants.

        Pass the hold to ``settle`` after the call, or to ``release`` if it failed.
        """
        if tenant_id in self._unlimited:
            return None
        if tenant_id not in self._limited:
            tenant = await self.store.get_tenant(tenant_id)
            if tenant is None:
                raise UnknownTenantError(tenant_id)
            if not tenant.limited:
                self._unlimited.add(tenant_id)
                return None
            self._limited.add(tenant_id)
        now = self.clock()
        hold = CreditHold(random_hex(), tenant_id, dollars_to_nano(estimate), now,
                          now + ttl_s)
        if await self._take(hold):
            return hold
        # Refused: holds left by processes that died mid-call may be what stands in the way.
        if await self.store.release_expired_holds(now, tenant_id) and await self._take(hold):
            return hold
        tenant = await self.store.get_tenant(tenant_id)
        if tenant is None:
            self._limited.discard(tenant_id)
            raise UnknownTenantError(tenant_id)
        if not tenant.limited:
            self._limited.discard(tenant_id)
            self._unlimited.add(tenant_id)
            return None
        raise InsufficientCreditsError(tenant_id, nano_to_credits(tenant.balance_nano),
                                       nano_to_credits(hold.amount_nano))

    async def _take(self, hold: CreditHold) -> bool:
        task = asyncio.ensure_future(self.store.reserve_credit(hold))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The caller gave up, but the write may still commit: give it back if it does,
            # rather than leave it held until it expires.
            task.add_done_callback(lambda t: self._release_if_taken(t, hold))
            raise

    def _release_if_taken(self, task: asyncio.Task[bool], hold: CreditHold) -> None:
        if task.cancelled() or task.exception() is not None or not task.result():
            return
        release = asyncio.ensure_future(self.store.release_hold(hold))
        self._pending.add(release)  # a reference, so the task is not collected mid-way
        release.add_done_callback(self._pending.discard)

    async def settle(self, rec: UsageRecord, hold: CreditHold | None) -> bool:
        """Charge a finished call exactly and give its hold back, in one transaction; the
        idempotency key makes a retried write a no-op (False) that still frees the hold."""
        if hold is None:
            return await self.store.charge_usage(rec)
        return await self.store.settle_usage(rec, hold)

    async def settle_call(self, hold: CreditHold | None, *, idempotency_key: str,
                          tenant_id: str, backend: str, model: str, model_type: str,
                          prompt_tokens: int, completion_tokens: int, cached_tokens: int,
                          estimated: bool, cost: Decimal, latency_ms: float,
                          used_fallback: bool, execution_id: str | None,
                          agent_id: str | None) -> bool:
        """``settle`` for an LLM call: its usage record, charged ``cost`` (exact dollars)."""
        return await self.settle(UsageRecord(
            idempotency_key, tenant_id, backend, model, model_type, prompt_tokens,
            completion_tokens, dollars_to_nano(cost), latency_ms, cached_tokens, estimated,
            used_fallback, execution_id, agent_id), hold)

    async def release(self, hold: CreditHold) -> None:
        """Give a failed, cancelled or refused call's hold back in full."""
        await self.store.release_hold(hold)

    async def charge(self, rec: UsageRecord) -> bool:
        """Write the usage record and lower the balance atomically, holding nothing. The
        idempotency key makes a retried write a no-op (False)."""
        return await self.store.charge_usage(rec)

    async def record_failure(self, backend: str, kind: str, error: str,
                             tenant_id: str | None) -> None:
        await self.store.add_llm_failure(backend, kind, error, tenant_id)

    async def add_credits(self, tenant_id: str, credits: str | int | Decimal) -> Decimal:
        """Top a tenant up (creating it, limited, if new); returns the new balance."""
        return nano_to_credits(await self.store.add_credits(tenant_id,
                                                            credits_to_nano(credits)))

    async def set_overdraft(self, tenant_id: str, credits: str | int | Decimal) -> Decimal:
        """Let a limited tenant's calls take its balance down to minus ``credits`` (0: to
        zero, the default); returns the overdraft."""
        nano = credits_to_nano(credits)
        if nano < 0:
            raise ValueError(f"overdraft: {credits} is negative (0 or more credits)")
        if not await self.store.set_overdraft(tenant_id, nano):
            raise UnknownTenantError(tenant_id)
        return nano_to_credits(nano)

    async def balance(self, tenant_id: str) -> Decimal:
        """The available balance in credits: what is left after the holds of calls in flight
        (expired holds are given back first)."""
        await self.store.release_expired_holds(self.clock(), tenant_id)
        tenant = await self.store.get_tenant(tenant_id)
        if tenant is None:
            raise UnknownTenantError(tenant_id)
        return nano_to_credits(tenant.balance_nano)

"""The usage ledger: budget checks before a call, one exact charge per successful call."""

from __future__ import annotations

from decimal import Decimal

from omium.billing.money import credits_to_nano, dollars_to_nano, nano_to_credits
from omium.errors import InsufficientCreditsError, UnknownTenantError
from omium.store.base import Store
from omium.store.records import UsageRecord


class Ledger:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def check_budget(self, tenant_id: str, estimate: Decimal) -> None:
        """Refuse (before any request is sent) a call the tenant's balance cannot cover.

        Concurrent calls may each pass the check and together overdraw a little: the check
        bounds spending per call, the charge afterwards is always exact.
        """
        tenant = await self.store.get_tenant(tenant_id)
        if tenant is None:
            raise UnknownTenantError(tenant_id)
        needed = dollars_to_nano(estimate)
        if tenant.limited and tenant.balance_nano < needed:
            raise InsufficientCreditsError(tenant_id, nano_to_credits(tenant.balance_nano),
                                           nano_to_credits(needed))

    async def charge(self, rec: UsageRecord) -> bool:
        """Write the usage record and lower the balance atomically. The idempotency key makes
        a retried write a no-op (False)."""
        return await self.store.charge_usage(rec)

    async def record_failure(self, backend: str, kind: str, error: str,
                             tenant_id: str | None) -> None:
        await self.store.add_llm_failure(backend, kind, error, tenant_id)

    async def add_credits(self, tenant_id: str, credits: str | int | Decimal) -> Decimal:
        """Top a tenant up (creating it, limited, if new); returns the new balance."""
        return nano_to_credits(await self.store.add_credits(tenant_id,
                                                            credits_to_nano(credits)))

    async def balance(self, tenant_id: str) -> Decimal:
        tenant = await self.store.get_tenant(tenant_id)
        if tenant is None:
            raise UnknownTenantError(tenant_id)
        return nano_to_credits(tenant.balance_nano)

"""``Store`` over a ``Driver``: the same SQL serves SQLite and PostgreSQL, one mixin per
protocol of ``omium.store.base``."""

from __future__ import annotations

import contextlib

from omium.errors import DatabaseUnavailableError
from omium.store._driver import Driver
from omium.store._signal import QueueSignal
from omium.store.base import Store
from omium.store.billing_sql import BillingSql
from omium.store.execution_sql import ExecutionSql
from omium.store.graph_sql import GraphSql
from omium.store.lease_sql import LeaseSql
from omium.store.migrate import current_revision, ensure_migrated
from omium.store.migrations import HEAD
from omium.store.records import SchemaRevision
from omium.store.tenant_sql import TenantSql


class SqlStore(ExecutionSql, BillingSql, TenantSql, LeaseSql, GraphSql, Store):
    def __init__(self, url: str, driver: Driver, migration_url: str) -> None:
        self.url = url
        self._driver = driver  # private: nothing outside omium.store runs SQL
        self._migration_url = migration_url
        self._connected = False
        self._known_workflows = set()
        self._queue = QueueSignal()

    async def connect(self) -> None:
        if self._connected:
            return
        try:
            await self._driver.open()
            await ensure_migrated(self._driver, self._migration_url)
        except Exception as err:  # whatever the driver raises: say which database, and why
            with contextlib.suppress(Exception):
                await self._driver.close()
            raise DatabaseUnavailableError(self.url, err) from err
        self._connected = True

    async def close(self) -> None:
        await self._driver.close()
        self._connected = False

    async def schema_revision(self) -> SchemaRevision:
        return SchemaRevision(await current_revision(self._driver), HEAD)

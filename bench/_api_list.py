"""The list-latency phase of ``bench/api_load.py``: a tenant's executions table grown by
direct inserts to each size in turn, with the first page of ``GET /api/v1/executions``
(filtered by status and not) timed at every size."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench._api_util import Database, PgDatabase, execution_rows, latency_summary, spread


async def _timed_gets(session: Any, path: str, key: str, n: int, concurrency: int,
                      check: Any) -> list[float]:
    latencies: list[float] = []
    todo = iter(range(n))
    headers = {"Authorization": f"Bearer {key}"}

    async def conn() -> None:
        for _ in todo:
            started = time.perf_counter()
            async with session.get(path, headers=headers) as r:
                payload = await r.read()
                status = r.status
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"GET {path} -> {status}: {payload[:300]!r}")
            check(json.loads(payload))

    await asyncio.gather(*(conn() for _ in range(concurrency)))
    return latencies


def _queued_for(size: int) -> int:
    """Queued rows wanted at a size: 10 % at 1,000, a few hundred beyond."""
    return min(size // 10, 300)


async def list_phase(db: Database, base: str, key: str, tenant: str, wf: dict[str, Any],
                     sizes: list[int], requests: int, concurrency: int) -> list[dict[str, Any]]:
    import aiohttp

    out = []
    # The tenant's history is a grid of 1 ms time slots (as many as the largest size); each
    # size adds rows in free slots spread evenly over the whole grid, so at every size the
    # queued rows are spread evenly through the tenant's history (the worst case for a
    # status filter: a page needs ~50/queued-share rows walked in created_at order).
    final = sizes[-1]
    base_ts = time.time() - final * 1e-3 - 1.0
    used: set[int] = set()
    queued_have = 0
    queries = {"status=queued": "/api/v1/executions?status=queued&limit=50",
               "all (first page)": "/api/v1/executions?limit=50"}
    async with aiohttp.ClientSession(base) as session:
        for size in sizes:
            new = spread([k for k in range(final) if k not in used], size - len(used))
            insert_s = 0.0
            if new:
                queued = set(spread(new, _queued_for(size) - queued_have))
                rows = execution_rows(new, queued, tenant_id=tenant, workflow_id=wf["id"],
                                      name=wf["name"], definition=wf["definition"],
                                      base_ts=base_ts)
                started = time.perf_counter()
                await db.insert_executions(rows)
                if isinstance(db, PgDatabase):
                    await db.analyze()
                insert_s = time.perf_counter() - started
                used.update(new)
                queued_have += len(queued)
            tenant_rows, table_rows = await db.count(tenant), await db.count()
            if tenant_rows != size:
                raise RuntimeError(f"list tenant has {tenant_rows} rows, expected {size}")
            for label, path in queries.items():
                want_status = "queued" if "queued" in label else None

                def check(page: dict[str, Any], want: str | None = want_status) -> None:
                    items = page["items"]
                    if len(items) != 50 or (want and any(i["status"] != want for i in items)):
                        raise RuntimeError(f"unexpected page: {len(items)} items")

                await _timed_gets(session, path, key, 20, concurrency, check)  # warm-up
                lat = await _timed_gets(session, path, key, requests, concurrency, check)
                out.append({"rows": size, "queued": queued_have, "table_rows": table_rows,
                            "query": label, "insert_s": round(insert_s, 2),
                            "requests": len(lat), **latency_summary(lat)})
                insert_s = 0.0
    return out


def list_verdict(rows: list[dict[str, Any]]) -> dict[str, bool]:
    verdict = {}
    for query in dict.fromkeys(r["query"] for r in rows):
        mine = sorted((r for r in rows if r["query"] == query), key=lambda r: r["rows"])
        verdict[query] = all(
            mine[-1][k] <= max(2 * mine[0][k], mine[0][k] + 10.0) for k in ("p50_ms", "p99_ms"))
    return verdict

"""``bench/api_load.py --profile N``: the server side in-process (httpx ``ASGITransport``, no
sockets) under cProfile, with the top costs printed per request."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from pathlib import Path
from typing import Any

from bench._api_util import Database, workflow_definition


async def profile_backend(db: Database, n: int, concurrency: int, top: int,
                          out_dir: Path) -> None:
    """N requests of the 3:1 mix through the ASGI app (httpx ASGITransport) under cProfile;
    prints the top functions by own time and by cumulative time, per request."""
    import cProfile
    import pstats

    import httpx

    from omium.api.app import create_app
    from omium.api.settings import Settings
    from omium.engine.tenants import create_tenant_with_key

    # The benchmark names its own agents over the API (the server's default allows examples).
    os.environ.setdefault("OMIUM_ALLOWED_MODULES", "bench")
    await db.open()
    try:
        app = create_app(Settings(database_url=db.url))
        async with app.router.lifespan_context(app):
            store = app.state.store
            _, key = await create_tenant_with_key(store, "apiprof")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://omium",
                                         headers={"Authorization": f"Bearer {key}"}) as client:
                r = await client.post("/api/v1/workflows", json=workflow_definition())
                r.raise_for_status()
                wf_id = r.json()["id"]
                ids: list[str] = []
                counter = itertools.count()
                rnd = random.Random(0)

                async def conn(total: int) -> None:
                    while (i := next(counter)) < total:
                        if i % 4 == 3 and ids:
                            resp = await client.get("/api/v1/executions/"
                                                    + ids[rnd.randrange(len(ids))])
                        else:
                            resp = await client.post("/api/v1/executions", json={
                                "workflow_id": wf_id,
                                "inputs": {"applicant_id": f"P-{i}", "step": 0}})
                            if resp.status_code == 202:
                                ids.append(resp.json()["execution_id"])
                        if resp.status_code >= 300:
                            raise RuntimeError(f"{resp.status_code}: {resp.text[:300]}")

                await asyncio.gather(*(conn(max(40, n // 10)) for _ in range(concurrency)))
                counter = itertools.count()
                main_prof, db_prof = cProfile.Profile(), cProfile.Profile()
                # Profiling the SQLite driver's own thread needs the private driver: no store
                # method runs code on that thread.
                pool = getattr(getattr(store, "_driver", None), "_pool", None)
                db_thread = pool is not None and hasattr(pool, "submit")  # SQLite's one thread
                if db_thread:
                    pool.submit(db_prof.enable).result()
                started, cpu0 = time.perf_counter(), time.process_time()
                main_prof.enable()
                await asyncio.gather(*(conn(n) for _ in range(concurrency)))
                main_prof.disable()
                wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
                if db_thread:
                    pool.submit(db_prof.disable).result()
        profiles = [("event-loop thread (client + server)", main_prof, "main")]
        if db_thread:
            profiles.append(("SQLite driver thread", db_prof, "sqlite-thread"))
        print(f"\n== profile, {db.name}: {n} requests (3 POST : 1 GET) at concurrency "
              f"{concurrency}, in-process: {wall:.2f} s wall, {cpu:.2f} s CPU "
              f"({1e3 * cpu / n:.3f} ms CPU/request, profiler overhead included) ==")
        app_ms = max((ct for (f, _l, fn), (_c, _n, _t, ct, _x) in
                      pstats.Stats(main_prof).stats.items()  # type: ignore[attr-defined]
                      if f.endswith("fastapi/applications.py") and fn == "__call__"),
                     default=float("nan")) * 1e3 / n
        print(f"the ASGI app itself (fastapi/applications.py __call__, cumulative, event-loop "
              f"thread, time while suspended excluded): {app_ms:.3f} ms/request; the rest of "
              "the event-loop thread is the httpx client, the loop and idle polling")
        if db_thread:
            print("the SQLite thread's times are wall time inside each call: a C call that "
                  "releases the GIL (sqlite3 execute) also counts the wait to take it back")
        print("calls/req: a coroutine counts one call per resumption")
        for title, prof, stem in profiles:
            path = out_dir / f"api_profile_{db.name}_{stem}.prof"
            prof.dump_stats(str(path))
            for sort in ("tottime", "cumulative"):
                print(f"\n-- {title}, by {sort} (ms per request = time / {n}); {path} --")
                _print_stats(pstats.Stats(prof), sort, top, n)
    finally:
        await db.close()


def _print_stats(stats: Any, sort: str, top: int, n: int) -> None:
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        rows.append((tt if sort == "tottime" else ct, nc, tt, ct, filename, line, func))
    rows.sort(reverse=True)
    print(f"{'own ms/req':>10} {'cum ms/req':>10} {'calls/req':>9}  function")
    for _key, nc, tt, ct, filename, line, func in rows[:top]:
        short = _short_path(filename)
        print(f"{1e3 * tt / n:>10.3f} {1e3 * ct / n:>10.3f} {nc / n:>9.1f}  "
              f"{short}:{line}({func})")


def _short_path(filename: str) -> str:
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename

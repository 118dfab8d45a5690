"""Throughput must not cost durability: a default ``omium serve`` (SQLite, in-process workers)
SIGKILLed while clients are submitting and workers are running; after a restart every
execution that got a 202 completes, and no checkpointed agent runs again."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from collections import Counter
from pathlib import Path

import aiohttp

from omium import open_store
from tests._serve_process import omium_serve

N = 300  # executions accepted in all, before and after the kill
KILL_AT = 120  # accepted before the SIGKILL
CLIENTS = 4
AGENTS = ["s1", "s2", "s3"]
WORKFLOW = {"name": "effects", "execution_order": "sequential", "inputs": {"total": 0},
            "agents": [{"id": a, "framework": "python",
                        "definition": {"callable": "tests.agents_for_tests:side_effect"},
                        "retry": {"max_attempts": 1}} for a in AGENTS]}


def _effects(path: Path) -> list[list]:
    """(execution, agent, attempt, idempotency key, pid) per run of an agent; a line the
    SIGKILL cut short is not a run that finished writing its record."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


async def _load(base: str, key: str, wf_id: str, accepted: list[str], until: int,
                start: int) -> None:
    """CLIENTS concurrent clients submit until ``until`` are accepted or the server is gone;
    only a 202 that arrived counts as accepted."""
    counter = itertools.count(start)
    headers = {"Authorization": f"Bearer {key}"}

    async def client() -> None:
        async with aiohttp.ClientSession(headers=headers) as http:
            while len(accepted) < until:
                body = {"workflow_id": wf_id, "idempotency_key": f"k{next(counter)}"}
                try:
                    async with http.post(f"{base}/api/v1/executions", json=body) as r:
                        if r.status != 202:
                            raise AssertionError(f"{r.status}: {await r.text()}")
                        accepted.append((await r.json())["execution_id"])
                except (TimeoutError, aiohttp.ClientError):
                    return  # the server was killed under us

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


async def test_sigkill_under_load_loses_and_repeats_nothing(tmp_path: Path) -> None:
    db = tmp_path / "load.db"
    effects = tmp_path / "effects.jsonl"
    env = {"OMIUM_TEST_EFFECTS": str(effects), "OMIUM_TEST_STEP_S": "0.01"}
    accepted: list[str] = []
    async with omium_serve(db, **env) as served:
        async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {served.key}"}) as http:
            async with http.post(f"{served.base}/api/v1/workflows", json=WORKFLOW) as r:
                assert r.status == 201, await r.text()
                wf_id = (await r.json())["id"]
        # Submitting until the kill, however the CPU is shared out between the load and the
        # workers: the kill lands once both have got going.
        load = asyncio.ensure_future(_load(served.base, served.key, wf_id, accepted,
                                           10 * N, 0))
        deadline = time.monotonic() + 60
        while len(accepted) < KILL_AT or not _effects(effects):  # load and work both flow
            assert time.monotonic() < deadline and not load.done(), len(accepted)
            await asyncio.sleep(0.01)
        served.process.send_signal(signal.SIGKILL)
        served.process.wait()
        await load
        killed_pid = served.process.pid
    assert served.process.returncode == -signal.SIGKILL
    assert len(accepted) >= KILL_AT

    url = f"sqlite:///{db}"
    stored = set(accepted) | {e[0] for e in _effects(effects)}  # a 202 the kill swallowed too
    async with open_store(url) as store:
        checkpointed = {(i, c.agent_id) for i in stored
                        for c in await store.get_checkpoints(i)}
        unfinished = [i for i in accepted
                      if (await store.get_execution(i)).status != "completed"]  # type: ignore[union-attr]
    assert unfinished, "the kill came after all the work: it tested nothing"
    # In flight at the kill: begun by the killed process, not checkpointed.
    in_flight = {(e[0], e[1]) for e in _effects(effects) if e[4] == killed_pid} - checkpointed

    async with omium_serve(db, **env) as served:  # the restart: same database, new process
        target = max(N, len(accepted) + N - KILL_AT)  # the restarted server takes load too
        await _load(served.base, served.key, wf_id, accepted, target, 100 * N)
        assert len(accepted) >= target
        async with open_store(url) as store:
            deadline = time.monotonic() + 120  # leases the killed process held must expire
            while time.monotonic() < deadline:
                recs = {i: await store.get_execution(i) for i in accepted}
                if all(r is not None and r.status == "completed" for r in recs.values()):
                    break
                await asyncio.sleep(0.2)
            cps = {i: [c.agent_id for c in await store.get_checkpoints(i)] for i in accepted}

    assert len(set(accepted)) == len(accepted)
    not_done = {i: r.status if r else None for i, r in recs.items()
                if r is None or r.status != "completed"}
    assert not_done == {}, f"{len(not_done)} accepted executions never completed"
    assert all(r.result["output"] == {"total": 3, "by": "s3"}  # type: ignore[union-attr,index]
               for r in recs.values())
    assert all(cps[i] == AGENTS for i in accepted)
    runs = Counter((e[0], e[1]) for e in _effects(effects))
    for i in accepted:
        for agent in AGENTS:
            assert runs[(i, agent)] >= 1, (i, agent)
    repeated = {pair for pair, n in runs.items() if n > 1}
    assert repeated <= in_flight, f"ran twice past a checkpoint: {sorted(repeated - in_flight)}"
    assert all(runs[pair] <= 2 for pair in repeated)
    print(f"accepted {len(accepted)}; unfinished at the kill {len(unfinished)}; in flight "
          f"{len(in_flight)}; ran twice {len(repeated)}")

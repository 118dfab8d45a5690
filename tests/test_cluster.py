"""Several machines' worth of processes on one PostgreSQL: two API processes, three workers,
300 executions, one worker SIGKILLed in the middle."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

from omium import open_store
from tests._processes import ROOT, free_port, omium, wait_http

AGENTS = ["s1", "s2", "s3", "s4"]
N = 300

WORKFLOW = {"name": "cluster", "inputs": {"total": 0}, "agents": [
    {"id": a, "definition": {"callable": "tests.agents_for_tests:side_effect"},
     "retry": {"max_attempts": 1}} for a in AGENTS]}


def _effects(path: Path) -> list[list]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


async def test_300_executions_survive_a_killed_worker(postgres_url: str, tmp_path: Path) -> None:
    database_url = postgres_url  # multi-machine scale is PostgreSQL plus more processes
    effects = tmp_path / "effects.jsonl"
    env = {**os.environ, "OMIUM_DATABASE_URL": database_url,
           "OMIUM_TEST_EFFECTS": str(effects), "OMIUM_TEST_STEP_S": "0.02",
           "OMIUM_METRICS_TOKEN": "scrape-token"}
    created = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "omium.cli", "tenants", "create", "acme",
                         "--json"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    key = json.loads(created.stdout)["api_key"]
    port = free_port()
    procs: list[subprocess.Popen] = []
    try:
        procs.append(omium("serve", "--port", str(port), "--processes", "2", "--no-workers",
                           env=env, stderr=subprocess.DEVNULL))
        workers = [omium("worker", "--lease", "2", "--poll", "0.05", "--concurrency", "4",
                         env=env, stderr=subprocess.DEVNULL) for _ in range(3)]
        procs += workers
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"{base}/health")
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"{base}/api/v1/workflows", json=WORKFLOW) as r:
                assert r.status == 201, await r.text()
                wf_id = (await r.json())["id"]

            async def submit(i: int) -> str:
                async with http.post(f"{base}/api/v1/executions",
                                     json={"workflow_id": wf_id, "idempotency_key": f"k{i}"}
                                     ) as r:
                    assert r.status == 202, await r.text()
                    return (await r.json())["execution_id"]

            ids = []
            for chunk in range(0, N, 50):
                ids += await asyncio.gather(*(submit(i) for i in range(chunk, chunk + 50)))
            # Kill one worker while it holds leases, once work flows through all of them.
            victim = workers[0]
            async with open_store(database_url) as store:
                for _ in range(600):
                    running = await store.list_executions(status="running", limit=N + 10)
                    held = [r for r in running
                            if f"-{victim.pid}-" in (r.lease_owner or "")]
                    if held and len(_effects(effects)) > N:
                        break
                    await asyncio.sleep(0.02)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            deadline = time.monotonic() + 120
            async with open_store(database_url) as store:
                while time.monotonic() < deadline:
                    done = await store.list_executions(status="completed", limit=N + 10,
                                                       tenant_id="acme")
                    if len(done) == N:
                        break
                    await asyncio.sleep(0.2)
                recs = {i: await store.get_execution(i) for i in ids}
                cps = {i: await store.get_checkpoints(i, include_superseded=True) for i in ids}
                events = {i: await store.get_events(i) for i in ids}
            async with http.get(f"{base}/api/v1/executions/{ids[0]}") as r:
                assert r.status == 200 and (await r.json())["status"] == "completed"
            async with http.get(f"{base}/metrics",  # summed over both API processes
                                headers={"Authorization": "Bearer scrape-token"}) as r:
                assert r.status == 200, await r.text()
                metrics_text = await r.text()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(20)

    assert all(r is not None and r.status == "completed" for r in recs.values())
    assert 'omium_executions_started_total{framework="python",tenant_id="acme"} 300.0' \
        in metrics_text
    # Same results as an undisturbed run of this workflow.
    assert {json.dumps(r.result["output"]) for r in recs.values()} == {  # type: ignore[union-attr]
        json.dumps({"total": 4, "by": "s4"})}
    runs = Counter((e[0], e[1]) for e in _effects(effects))
    killed = victim.pid
    reclaimed = [i for i in ids if any(e.type == "claimed" and e.data["reclaimed"]
                                       for e in events[i])]
    assert reclaimed, "the killed worker held no execution"
    for i in ids:
        assert [c.agent_id for c in cps[i]] == AGENTS  # one checkpoint each, none superseded
        for agent in AGENTS:
            if runs[(i, agent)] > 1:  # only an agent in flight on the killed worker
                assert runs[(i, agent)] == 2 and i in reclaimed
                pids = [e[4] for e in _effects(effects) if e[0] == i and e[1] == agent]
                assert killed in pids
    # No write with a stale epoch was accepted: every checkpoint of a reclaimed execution
    # written under the old epoch was committed before the new epoch's claim.
    for i in reclaimed:
        claims = {e.data["epoch"]: e.ts for e in events[i] if e.type == "claimed"}
        for c in cps[i]:
            nxt = claims.get(c.lease_epoch + 1)
            assert nxt is None or c.finished_at <= nxt

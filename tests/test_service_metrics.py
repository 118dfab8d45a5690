"""The service end to end in one process: API + in-process workers, then /metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests._api_harness import ADMIN, V1, agent, serve


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_after_a_run_by_in_process_workers(tmp_path: Path) -> None:
    wf = {"name": "flaky_flow", "agents": [
        agent("first"), agent("flaky", "tests.agents_for_tests:flaky",
                              retry={"max_attempts": 3, "backoff_s": 0})]}
    async with serve(f"sqlite:///{tmp_path}/svc.db", worker_concurrency=2) as api:
        r = await api.client.post(f"{V1}/tenants", json={"name": "metrics-co"},
                                  headers={"Authorization": f"Bearer {ADMIN}"})
        tenant, key = r.json()["tenant_id"], r.json()["api_key"]
        headers = {"Authorization": f"Bearer {key}"}
        admin = {"Authorization": f"Bearer {ADMIN}"}  # /metrics names tenants: not public
        before = scrape((await api.client.get("/metrics", headers=admin)).text)
        ids = [await api.submit(headers, workflow=wf) for _ in range(3)]
        for _ in range(200):  # the in-process workers pick them up
            statuses = [(await api.client.get(f"{V1}/executions/{i}", headers=headers)
                         ).json()["status"] for i in ids]
            if statuses == ["completed"] * 3:
                break
            await asyncio.sleep(0.05)
        assert statuses == ["completed"] * 3
        ready = await api.client.get("/health/ready")
        after = scrape((await api.client.get("/metrics", headers=admin)).text)
    assert ready.status_code == 200, ready.text

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("omium_executions_started_total", framework="python", tenant_id=tenant) == 3
    assert moved("omium_execution_duration_seconds_count", framework="python",
                 status="completed") == 3
    assert moved("omium_failures_detected_total", failure_type="exception") == 6
    assert moved("omium_recovery_success_total", strategy="retry") == 3
    assert moved("omium_handoff_latency_seconds_count") == 3
    assert value(after, "omium_active_executions", framework="python") == 0
    assert value(after, "omium_queue_depth") == 0
    assert value(after, "omium_health_check_status", service="database") == 1

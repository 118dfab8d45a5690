"""The service end to end in one process: API + in-process workers, then /metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._api_harness import ADMIN, V1, agent, serve
from tests._serve_process import METRICS_TOKEN, omium_serve


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


# -- every family the README lists is on the first scrape, in one process and in several

README_FAMILIES = (  # README "Metrics": the plan's eight, then the operators' additions
    "omium_executions_started_total", "omium_execution_duration_seconds",
    "omium_active_executions", "omium_llm_inference_latency_seconds",
    "omium_llm_cost_usd_total", "omium_failures_detected_total",
    "omium_recovery_success_total", "omium_health_check_status",
    "omium_handoff_latency_seconds", "omium_consensus_outcomes_total", "omium_queue_depth",
    "omium_lease_reclaims_total", "omium_stale_writes_rejected_total", "omium_llm_tokens_total",
    "omium_llm_fallbacks_total", "omium_llm_circuit_state")


def families(text: str) -> dict[str, list]:
    """Family name (counters with their ``_total``) -> its samples."""
    out = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        out[name] = family.samples
    return out


def test_the_known_label_values_match_the_engines() -> None:
    from typing import get_args

    from omium import metrics
    from omium.coordination.consensus import Outcome
    from omium.engine.failures import FAILURE_TYPES
    from omium.workflow.model import FailureStrategy

    assert metrics.FAILURE_TYPES == FAILURE_TYPES
    assert metrics.RECOVERY_STRATEGIES == get_args(FailureStrategy)
    assert metrics.CONSENSUS_OUTCOMES == get_args(Outcome)


async def _scrape(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/metrics",
                        headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as r:
        assert r.status == 200
        return await r.text()


@pytest.mark.parametrize("processes", [1, 2])
async def test_every_family_is_on_the_first_scrape(tmp_path: Path, processes: int) -> None:
    """Dashboards and ``absent()`` alerts need the families before anything has run; with
    --processes 2 (multiprocess mode) prometheus-client shows only what a process wrote."""
    llm_config = tmp_path / "llm.yaml"
    llm_config.write_text("backends:\n  - {name: local, base_url: 'http://127.0.0.1:9/v1', "
                          "model: tiny-local}\n")
    async with omium_serve(tmp_path / "first.db", "--processes", str(processes),
                           OMIUM_LLM_CONFIG=str(llm_config)) as served, \
            aiohttp.ClientSession() as http:
        first = await _scrape(http, served.base)
        wf = {"name": "flaky_flow", "agents": [
            agent("first"), agent("flaky", "tests.agents_for_tests:flaky",
                                  retry={"max_attempts": 3, "backoff_s": 0})]}
        headers = {"Authorization": f"Bearer {served.key}"}
        async with http.post(f"{served.base}{V1}/executions", json={"workflow": wf},
                             headers=headers) as r:
            assert r.status == 202, await r.text()
            eid = (await r.json())["execution_id"]
        for _ in range(300):
            async with http.get(f"{served.base}{V1}/executions/{eid}", headers=headers) as r:
                if (await r.json())["status"] == "completed":
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{eid} never completed")
        after = await _scrape(http, served.base)
    got = families(first)
    assert [f for f in README_FAMILIES if f not in got] == []
    types = [line for line in first.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))  # each family once, whoever wrote it
    samples = scrape(first)
    # Known label values start at zero (true, not invented); the health gauges are real checks.
    for kind in ("exception", "timeout", "worker_lost", "max_recoveries_exceeded"):
        assert samples[("omium_failures_detected_total", (("failure_type", kind),))] == 0
    for strategy in ("retry", "fallback", "rollback", "manual_review"):
        assert samples[("omium_recovery_success_total", (("strategy", strategy),))] == 0
    assert samples[("omium_consensus_outcomes_total", (("outcome", "approved"),))] == 0
    assert samples[("omium_llm_cost_usd_total", (("model", "tiny-local"),))] == 0
    assert samples[("omium_llm_inference_latency_seconds_count", (("model", "tiny-local"),))
                   ] == 0
    assert samples[("omium_health_check_status", (("service", "database"),))] == 1
    assert samples[("omium_health_check_status", (("service", "migrations"),))] == 1
    # ... and the figures move once work has run (summed over processes in multiprocess mode).
    moved = scrape(after)
    assert [f for f in README_FAMILIES if f not in families(after)] == []
    assert moved[("omium_failures_detected_total", (("failure_type", "exception"),))] == 2
    assert moved[("omium_recovery_success_total", (("strategy", "retry"),))] == 1
    assert value(moved, "omium_execution_duration_seconds_count", framework="python",
                 status="completed") == 1

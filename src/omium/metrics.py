"""Prometheus metrics, with the plan's names. The service exposes them at /metrics; every
layer records into the same default registry (multiprocess mode is the service's concern).

Every family is on the first scrape: labels whose values are known in advance (failure types,
recovery strategies, consensus outcomes) start at zero here, in each process; the service adds
the configured LLM models at startup and sets the health gauges at each scrape; and
``with_declared_families`` adds the HELP/TYPE lines of any family still without a sample
(multiprocess mode only shows what a process wrote)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

# The label values known before anything runs. metrics is a leaf and cannot import the engine
# or the workflow model: tests/test_service_metrics.py checks these equal
# engine.failures.FAILURE_TYPES, workflow.model.FailureStrategy and the consensus Outcome.
FAILURE_TYPES = ("timeout", "exception", "validation_error", "no_consensus", "llm_error",
                 "worker_lost", "max_recoveries_exceeded")
RECOVERY_STRATEGIES = ("retry", "fallback", "rollback", "manual_review")
CONSENSUS_OUTCOMES = ("approved", "manual_review", "failed")
HEALTH_SERVICES = ("database", "migrations", "workers")

executions_started = Counter("omium_executions_started_total", "Total executions started",
                             ["framework", "tenant_id"])
execution_duration = Histogram("omium_execution_duration_seconds", "Execution duration",
                               ["framework", "status"], buckets=(0.5, 1, 2, 5, 10, 30, 60))
active_executions = Gauge("omium_active_executions", "Currently active executions",
                          ["framework"])
llm_inference_latency = Histogram("omium_llm_inference_latency_seconds",
                                  "LLM inference latency", ["model"],
                                  buckets=(0.1, 0.5, 1, 2, 5))
llm_cost = Counter("omium_llm_cost_usd_total", "Total LLM inference cost", ["model"])
llm_tokens = Counter("omium_llm_tokens_total", "LLM tokens billed", ["model", "type"])
llm_fallbacks = Counter("omium_llm_fallbacks_total",
                        "Calls that a backend failed and the next one was tried", ["backend"])
llm_backend_failures = Counter("omium_llm_backend_failures_total", "Backend failures by kind",
                               ["backend", "kind"])
llm_circuit_state = Gauge("omium_llm_circuit_state",
                          "Circuit breaker state per backend (0 closed, 1 half-open, 2 open)",
                          ["backend"])
failures_detected = Counter("omium_failures_detected_total", "Total failures detected",
                            ["failure_type"])
recovery_success = Counter("omium_recovery_success_total", "Successful recoveries",
                           ["strategy"])
health_check_status = Gauge("omium_health_check_status", "Service health status",
                            ["service"], multiprocess_mode="mostrecent")

# What operators need beyond the plan's names.
handoff_latency = Histogram("omium_handoff_latency_seconds", "Handoff latency (validation + acks)",
                            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 1))
consensus_outcomes = Counter("omium_consensus_outcomes_total", "Votes by outcome", ["outcome"])
lease_reclaims = Counter("omium_lease_reclaims_total",
                         "Executions reclaimed from a worker whose lease expired")
stale_writes_rejected = Counter("omium_stale_writes_rejected_total",
                                "Writes refused because they carried an old lease epoch")

FAMILIES: tuple[Counter | Gauge | Histogram, ...] = (
    executions_started, execution_duration, active_executions, llm_inference_latency, llm_cost,
    llm_tokens, llm_fallbacks, llm_backend_failures, llm_circuit_state, failures_detected,
    recovery_success, health_check_status, handoff_latency, consensus_outcomes, lease_reclaims,
    stale_writes_rejected)

for _kind in FAILURE_TYPES:
    failures_detected.labels(_kind)
for _strategy in RECOVERY_STRATEGIES:
    recovery_success.labels(_strategy)
for _outcome in CONSENSUS_OUTCOMES:
    consensus_outcomes.labels(_outcome)


def declare_models(models: Iterable[str]) -> None:
    """Zero the per-model LLM series for ``models`` (the configured backends' models)."""
    for model in models:
        llm_inference_latency.labels(model)
        llm_cost.labels(model)
        for kind in ("prompt", "completion"):
            llm_tokens.labels(model, kind)


class _Declared(Collector):
    """``source``'s families, then an empty family (HELP and TYPE only) for each of
    ``declared`` that ``source`` did not yield."""

    def __init__(self, source: CollectorRegistry, declared: Iterable[Metric]) -> None:
        self.source, self.declared = source, list(declared)

    def collect(self) -> Iterator[Metric]:
        seen = set()
        for family in self.source.collect():
            seen.add(family.name)
            yield family
        for family in self.declared:
            if family.name not in seen:
                yield Metric(family.name, family.documentation, family.type)


def with_declared_families(source: CollectorRegistry,
                           extra: Iterable[Counter | Gauge | Histogram] = ()
                           ) -> CollectorRegistry:
    """A registry that yields ``source``'s families plus every one of ``FAMILIES`` (and
    ``extra``) that it lacks."""
    registry = CollectorRegistry(auto_describe=False)
    families = (*FAMILIES, *extra)
    registry.register(_Declared(source, (d for m in families for d in m.describe())))
    return registry

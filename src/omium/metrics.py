"""Prometheus metrics, with the plan's names. The service exposes them at /metrics; every
layer records into the same default registry (multiprocess mode is the service's concern)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
                            ["service"])

# What operators need beyond the plan's names.
handoff_latency = Histogram("omium_handoff_latency_seconds", "Handoff latency (validation + acks)",
                            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 1))
consensus_outcomes = Counter("omium_consensus_outcomes_total", "Votes by outcome", ["outcome"])
lease_reclaims = Counter("omium_lease_reclaims_total",
                         "Executions reclaimed from a worker whose lease expired")
stale_writes_rejected = Counter("omium_stale_writes_rejected_total",
                                "Writes refused because they carried an old lease epoch")

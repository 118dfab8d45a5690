"""The API's shapes of the store's records (``Store.execution_detail`` and its pages): which
fields each answer shows, and money as exact decimal strings. The store decodes; this only
shapes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from omium.billing.money import nano_to_credits, nano_to_dollars
from omium.store.records import (
    CheckpointRecord,
    ConsensusRecord,
    DetailTotals,
    EventRecord,
    ExecutionDetail,
    ExecutionRecord,
    HandoffRecord,
    UsageRecord,
)


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def dollars(nano: int) -> str:
    """Exact decimal dollars as a string ("0.00000015", never "1.5E-7")."""
    return _plain(nano_to_dollars(nano))


def credits(nano: int) -> str:
    return _plain(nano_to_credits(nano))


def summary(rec: ExecutionRecord) -> dict[str, Any]:
    """An execution in a list."""
    return {"id": rec.id, "workflow_id": rec.workflow_id, "workflow_name": rec.workflow_name,
            "status": rec.status, "decision": rec.decision, "created_at": rec.created_at,
            "updated_at": rec.updated_at, "finished_at": rec.finished_at}


def checkpoints(recs: list[CheckpointRecord]) -> list[dict[str, Any]]:
    return [{"agent_id": c.agent_id, "agent_index": c.agent_index, "attempt": c.attempt,
             "output": c.output, "served_by": c.served_by, "superseded": c.superseded,
             "started_at": c.started_at, "finished_at": c.finished_at,
             "lease_epoch": c.lease_epoch} for c in recs]


def steps(recs: list[CheckpointRecord]) -> list[dict[str, Any]]:
    return [{"agent_id": c.agent_id, "status": "superseded" if c.superseded else "done",
             "attempt": c.attempt, "duration_s": c.finished_at - c.started_at,
             "served_by": c.served_by, "started_at": c.started_at,
             "finished_at": c.finished_at} for c in recs]


def handoffs(recs: list[HandoffRecord]) -> list[dict[str, Any]]:
    return [{"from_agent": h.from_agent, "to_agents": h.to_agents, "status": h.status,
             "acks": h.acks, "reason": h.reason, "error": h.error, "latency_ms": h.latency_ms,
             "created_at": h.created_at} for h in recs]


def votes(recs: list[ConsensusRecord]) -> list[dict[str, Any]]:
    return [{"node_id": v.node_id, "result": v.result, "outcome": v.outcome,
             "decision": v.decision, "agreement_level": v.agreement_level,
             "created_at": v.created_at, "reviewed_decision": v.reviewed_decision,
             "reviewed_at": v.reviewed_at} for v in recs]


def events(recs: list[EventRecord]) -> list[dict[str, Any]]:
    return [{"id": e.id, "ts": e.ts, "type": e.type, "agent_id": e.agent_id, "data": e.data}
            for e in recs]


def usage_records(recs: list[UsageRecord]) -> list[dict[str, Any]]:
    return [{"backend": u.backend, "model": u.model, "model_type": u.model_type,
             "agent_id": u.agent_id, "prompt_tokens": u.prompt_tokens,
             "completion_tokens": u.completion_tokens, "cached_tokens": u.cached_tokens,
             "estimated": u.estimated, "used_fallback": u.used_fallback,
             "cost_usd": dollars(u.cost_nano)} for u in recs]


def usage(recs: list[UsageRecord], totals: DetailTotals | None = None) -> dict[str, Any]:
    """Sums over every call (``totals``: the store's sums, when ``recs`` are only the first)."""
    if totals is None:
        calls, sums = len(recs), {k: sum(getattr(u, k) for u in recs) for k in _SUMMED}
    else:
        calls, sums = totals.usage, {k: getattr(totals, k) for k in _SUMMED}
    return {"calls": calls, **{k: sums[k] for k in _SUMMED if k != "cost_nano"},
            "cost_usd": dollars(sums["cost_nano"]), "records": usage_records(recs)}


_SUMMED = ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_nano")
# Each list of the detail (a key of its totals and links) -> the path of its pages.
LISTS = {"steps": "steps", "checkpoints": "checkpoints", "handoffs": "handoffs",
         "consensus": "consensus", "events": "history", "usage_records": "usage"}


def _counts(detail: ExecutionDetail) -> dict[str, int]:
    found = detail.totals
    if found is None:
        return {"steps": len(detail.checkpoints), "checkpoints": len(detail.checkpoints),
                "handoffs": len(detail.handoffs), "consensus": len(detail.consensus),
                "events": len(detail.events), "usage_records": len(detail.usage)}
    return {"checkpoints": found.checkpoints, "handoffs": found.handoffs,
            "consensus": found.consensus, "events": found.events, "steps": found.checkpoints,
            "usage_records": found.usage}


def execution_detail(detail: ExecutionDetail, base_path: str) -> dict[str, Any]:
    """``base_path``: the execution's URL path, under which each whole list is paged."""
    rec, result = detail.execution, detail.execution.result
    failed = rec.failed_agent or rec.failure_type or rec.error
    return {
        **summary(rec),
        "inputs": rec.inputs,
        "idempotency_key": rec.idempotency_key,
        "cancel_requested": rec.cancel_requested,
        "result": None if result is None else {
            "results": result.get("results") or {}, "consensus": result.get("consensus"),
            "output": result.get("output"), "reused": result.get("reused") or []},
        "failure": {"failed_agent": rec.failed_agent, "failure_type": rec.failure_type,
                    "error": rec.error} if failed else None,
        "steps": steps(detail.checkpoints),
        "checkpoints": checkpoints(detail.checkpoints),
        "handoffs": handoffs(detail.handoffs),
        "consensus": votes(detail.consensus),
        "events": events(detail.events),
        "usage": usage(detail.usage, detail.totals),
        "lease": {"owner": rec.lease_owner, "epoch": rec.lease_epoch,
                  "expires_at": rec.lease_expires_at},
        "totals": _counts(detail),
        "links": {name: f"{base_path}/{path}" for name, path in LISTS.items()},
    }

"""Turning ``Store.execution_detail`` rows (JSON columns as text) into the API's shapes."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from omium.billing.money import nano_to_credits, nano_to_dollars
from omium.store.records import ExecutionRecord


def decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def dollars(nano: int) -> str:
    """Exact decimal dollars as a string ("0.00000015", never "1.5E-7")."""
    return _plain(nano_to_dollars(nano))


def credits(nano: int) -> str:
    return _plain(nano_to_credits(nano))


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """The list view of a raw executions row."""
    return {"id": row["id"], "workflow_id": row["workflow_id"],
            "workflow_name": row["workflow_name"], "status": row["status"],
            "decision": decode(row["decision"]), "created_at": row["created_at"],
            "updated_at": row["updated_at"], "finished_at": row["finished_at"]}


def record_summary(rec: ExecutionRecord) -> dict[str, Any]:
    """The list view of an ``ExecutionRecord`` (its JSON columns are decoded already)."""
    return {"id": rec.id, "workflow_id": rec.workflow_id, "workflow_name": rec.workflow_name,
            "status": rec.status, "decision": rec.decision, "created_at": rec.created_at,
            "updated_at": rec.updated_at, "finished_at": rec.finished_at}


def checkpoints(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "output": decode(r["output"]), "superseded": bool(r["superseded"])}
            for r in rows]


def steps(cps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"agent_id": c["agent_id"], "status": "superseded" if c["superseded"] else "done",
             "attempt": c["attempt"], "duration_s": c["finished_at"] - c["started_at"],
             "served_by": c["served_by"], "started_at": c["started_at"],
             "finished_at": c["finished_at"]} for c in cps]


def handoffs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "to_agents": decode(r["to_agents"]), "acks": decode(r["acks"])} for r in rows]


def votes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "result": decode(r["result"]), "decision": decode(r["decision"])}
            for r in rows]


def events(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "data": decode(r["data"])} for r in rows]


def usage_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"backend": r["backend"], "model": r["model"], "model_type": r["model_type"],
             "agent_id": r["agent_id"], "prompt_tokens": r["prompt_tokens"],
             "completion_tokens": r["completion_tokens"],
             "cached_tokens": r["cached_tokens"], "estimated": bool(r["estimated"]),
             "used_fallback": bool(r["used_fallback"]), "cost_usd": dollars(r["cost_nano"])}
            for r in rows]


def usage(rows: list[dict[str, Any]], totals: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sums over every call (``totals``: the store's sums, when ``rows`` are only the first)."""
    sums = totals or {"usage": len(rows), **{k: sum(r[k] for r in rows) for k in _SUMMED}}
    return {"calls": int(sums["usage"]),
            **{k: int(sums[k]) for k in _SUMMED if k != "cost_nano"},
            "cost_usd": dollars(int(sums["cost_nano"])), "records": usage_records(rows)}


_SUMMED = ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_nano")
# Each list of the detail (a key of its totals and links) -> the path of its pages.
LISTS = {"steps": "steps", "checkpoints": "checkpoints", "handoffs": "handoffs",
         "consensus": "consensus", "events": "history", "usage_records": "usage"}


def execution_detail(detail: dict[str, list[dict[str, Any]]],
                     base_path: str) -> dict[str, Any]:
    """``base_path``: the execution's URL path, under which each whole list is paged."""
    row = detail["execution"][0]
    result = decode(row["result"])
    cps = checkpoints(detail["checkpoints"])
    failed = row["failed_agent"] or row["failure_type"] or row["error"]
    found = detail["totals"][0] if detail.get("totals") else None
    counts = {"steps": len(cps), "checkpoints": len(cps), "handoffs": len(detail["handoffs"]),
              "consensus": len(detail["consensus"]), "events": len(detail["events"]),
              "usage_records": len(detail["usage"])}
    if found is not None:
        counts = {**{k: int(found[k]) for k in ("checkpoints", "handoffs", "consensus",
                                                "events")},
                  "steps": int(found["checkpoints"]), "usage_records": int(found["usage"])}
    return {
        **summary(row),
        "inputs": decode(row["inputs"]),
        "idempotency_key": row["idempotency_key"],
        "cancel_requested": bool(row["cancel_requested"]),
        "result": None if result is None else {
            "results": result.get("results") or {}, "consensus": result.get("consensus"),
            "output": result.get("output"), "reused": result.get("reused") or []},
        "failure": {"failed_agent": row["failed_agent"], "failure_type": row["failure_type"],
                    "error": row["error"]} if failed else None,
        "steps": steps(cps),
        "checkpoints": cps,
        "handoffs": handoffs(detail["handoffs"]),
        "consensus": votes(detail["consensus"]),
        "events": events(detail["events"]),
        "usage": usage(detail["usage"], found),
        "lease": {"owner": row["lease_owner"], "epoch": row["lease_epoch"],
                  "expires_at": row["lease_expires_at"]},
        "totals": counts,
        "links": {name: f"{base_path}/{path}" for name, path in LISTS.items()},
    }

"""The one decoder between database rows and records: JSON text, 0/1 flags, and the numbers
the backends return differently.

Each record's fields are its table's columns (or a query's aliases), so a ``Shape`` knows what
to select and how to turn the row into the record. SQLite and PostgreSQL then give the same
records: flags ``bool``; JSON decoded; nano amounts and counts ``int`` (PostgreSQL's ``SUM``
over a ``BIGINT`` is a ``Decimal``, SQLite's an ``int``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, Generic, TypeVar

from omium.store.records import (
    ApiKeyRecord,
    CheckpointRecord,
    ConsensusRecord,
    CreditHold,
    DetailTotals,
    EventRecord,
    ExecutionRecord,
    HandoffRecord,
    LLMFailureCount,
    TenantRecord,
    UsageRecord,
    UsageSummary,
    WorkflowRecord,
)

T = TypeVar("T")


def dump(value: Any) -> str:
    # allow_nan=False: NaN/Infinity written as text would be read back as nothing valid.
    # What enters is checked earlier (omium.jsonsafe); this is the last line, a ValueError.
    return json.dumps(value, separators=(",", ":"), default=str, allow_nan=False)


def load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@dataclass(frozen=True)
class Shape(Generic[T]):
    """How rows become one kind of record: which columns hold JSON text, 0/1 flags, sums."""

    record: type[T]
    json: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    ints: tuple[str, ...] = ()

    @cached_property
    def columns(self) -> str:
        """The select list: the record's fields, in order."""
        return ", ".join(f.name for f in fields(self.record))  # type: ignore[arg-type]

    def decode(self, row: dict[str, Any]) -> T:
        for key in self.json:
            row[key] = load(row[key])
        for key in self.flags:
            row[key] = bool(row[key])
        for key in self.ints:
            row[key] = int(row[key] or 0)
        return self.record(**row)

    def decode_all(self, rows: Iterable[dict[str, Any]]) -> list[T]:
        return [self.decode(r) for r in rows]


EXECUTION = Shape(ExecutionRecord, json=("definition", "inputs", "decision", "result"),
                  flags=("cancel_requested",))
CHECKPOINT = Shape(CheckpointRecord, json=("output",), flags=("superseded",))
HANDOFF = Shape(HandoffRecord, json=("to_agents", "acks"))
CONSENSUS = Shape(ConsensusRecord, json=("result", "decision"))
EVENT = Shape(EventRecord, json=("data",))
USAGE = Shape(UsageRecord, flags=("estimated", "used_fallback"))
WORKFLOW = Shape(WorkflowRecord, json=("definition",))
TENANT = Shape(TenantRecord, flags=("limited",))
HOLD = Shape(CreditHold)
API_KEY = Shape(ApiKeyRecord, flags=("admin",))
# Aggregates: counts and sums.
USAGE_SUMMARY = Shape(UsageSummary, ints=("calls", "prompt_tokens", "completion_tokens",
                                          "cost_nano", "fallbacks", "estimated"))
LLM_FAILURES = Shape(LLMFailureCount, ints=("n",))
DETAIL_TOTALS = Shape(DetailTotals, ints=tuple(f.name for f in fields(DetailTotals)))


def count(row: dict[str, Any] | None) -> int:
    """``SELECT COUNT(*) AS n``'s answer."""
    return int(row["n"]) if row else 0

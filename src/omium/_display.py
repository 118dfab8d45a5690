"""Terminal output for the CLI: live progress per agent and the summary tables."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from omium.agents.runtime import REVIEW_REQUESTED

STYLE = {"completed": "green", "failed": "red", "awaiting_review": "yellow",
         "running": "cyan", "reused": "blue", "done": "green", "retrying": "yellow"}


VOTE_LABELS = {"__consensus__": "(vote)"}


@dataclass
class AgentRow:
    status: str = "pending"
    attempts: int = 0
    duration_s: float | None = None
    note: str = ""


class Progress:
    """Collects engine events; renders a live table on a TTY, plain lines otherwise."""

    def __init__(self, console: Console, agent_ids: list[str], quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.rows = {VOTE_LABELS.get(a, a): AgentRow() for a in agent_ids}
        self.started: dict[str, float] = {}
        self.events = 0  # seen: the execution exists
        self.live: Live | None = None
        if console.is_terminal and not quiet:
            self.live = Live(self.table(), console=console, refresh_per_second=8,
                             transient=True)

    def __enter__(self) -> Progress:
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.stop()

    def _row(self, agent_id: str) -> AgentRow:
        # The vote a parallel workflow ends in has an internal id; show it as "(vote)".
        return self.rows.setdefault(VOTE_LABELS.get(agent_id, agent_id), AgentRow())

    def __call__(self, kind: str, agent_id: str | None, data: dict[str, Any]) -> None:
        self.events += 1
        line = self._apply(kind, agent_id, data)
        if self.live:
            self.live.update(self.table())
        elif line and not self.quiet:
            self.console.print(line, highlight=False, soft_wrap=True)

    def _apply(self, kind: str, agent_id: str | None, data: dict[str, Any]) -> str | None:
        if agent_id is None:
            return None
        row = self._row(agent_id)
        agent_id = VOTE_LABELS.get(agent_id, agent_id)
        if kind == "agent_started":
            row.status, row.attempts = "running", max(row.attempts, 1)
            self.started[agent_id] = time.perf_counter()
            return f"{agent_id}: started"
        if kind == "agent_reused":
            row.status, row.attempts, row.duration_s = "reused", data["attempts"], \
                data["duration_s"]
            row.note = "from checkpoint"
            return f"{agent_id}: reused from checkpoint"
        if kind == "agent_finished":
            row.status, row.attempts, row.duration_s = "done", data["attempts"], \
                data["duration_s"]
            if data.get("served_by"):
                row.note = f"served by fallback {data['served_by']}"
            return f"{agent_id}: done in {_ms(row.duration_s)} (attempt {row.attempts})"
        if kind == "agent_failed_attempt":
            row.status, row.attempts = "retrying", data["attempt"]
            row.note = f"{data['failure_type']}: {data['error']}"
            return f"{agent_id}: attempt {data['attempt']} failed ({row.note})"
        if kind == "agent_failed" and data["failure_type"] == REVIEW_REQUESTED:
            row.status, row.note = "awaiting_review", data["error"]  # its own pause
            return f"{agent_id}: {row.note}"
        if kind == "agent_failed":
            row.status, row.note = "failed", f"{data['failure_type']}: {data['error']}"
            return f"{agent_id}: failed ({row.note})"
        if kind == "consensus":
            row.status = "done" if data["outcome"] == "approved" else data["outcome"]
            row.note = (f"leading {data['decision']!r}, "
                        f"agreement {data['agreement_level']:.0%}")
            return f"{agent_id}: vote {row.note} -> {data['outcome']}"
        if kind == "agent_rollback":
            row.note = f"rolled back {', '.join(data['upstream'])}"
            return f"{agent_id}: {row.note}"
        return None

    def table(self, title: str | None = None) -> Table:
        table = Table(title=title)
        for col in ("agent", "status", "duration", "attempts", "note"):
            table.add_column(col)
        for agent_id, row in self.rows.items():
            style = STYLE.get(row.status, "")
            table.add_row(agent_id, Text(row.status, style=style),
                          _ms(row.duration_s), str(row.attempts or ""), row.note)
        return table


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def preview(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def when(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))

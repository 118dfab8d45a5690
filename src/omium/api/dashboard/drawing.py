"""What the execution and workflow pages draw: the timeline (Gantt) of attempts and the
workflow graph, as coordinates for SVG (attributes, not inline styles: the CSP allows no
``style=``).

Times come from the store: a checkpoint is the successful attempt (start and end); a failed
attempt is its ``failure_detected`` event (its end); its start is where it must have begun:
after its upstream agents finished (the first attempt) or after the previous attempt's
backoff (``retry.delay``), so those bars are marked ``estimated``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omium.engine.graph import WorkflowGraph
from omium.status import Status
from omium.store.records import ExecutionDetail

WIDTH = 1000.0  # the timeline's viewBox width; the SVG scales to its box
ROW_H = 28.0
LABEL_W = 170.0
RIGHT_PAD = 12.0  # room for a marker at the very end
# Events drawn as markers where they happened (the rest are only in the events table).
MARKED = {"rollback": "rollback", "recovery_succeeded": "recovered",
          "recovery_failed": "recovery failed", "paused_for_review": "paused for review",
          "review_requested": "review requested", "review": "reviewed",
          "cancelled": "cancelled", "resumed": "resumed", "dead_lettered": "dead-lettered",
          "claimed": "claimed"}


@dataclass
class Bar:
    agent: str
    attempt: int
    kind: str  # done | failed | superseded | fallback | backoff
    start: float
    end: float
    label: str
    estimated: bool = False
    x: float = 0.0
    w: float = 0.0


@dataclass
class Marker:
    agent: str
    kind: str
    ts: float
    label: str
    x: float = 0.0


@dataclass
class Lane:
    agent: str
    y: float
    bars: list[Bar] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)


@dataclass
class Timeline:
    lanes: list[Lane]
    start: float
    end: float
    height: float
    ticks: list[tuple[float, str]]


def _delay(graph: WorkflowGraph | None, agent: str, attempt: int) -> float:
    node = graph.nodes.get(agent) if graph is not None else None
    if node is None or node.spec is None:
        return 0.0
    return node.spec.retry.delay(attempt)


def timeline(detail: ExecutionDetail, graph: WorkflowGraph | None, now: float) -> Timeline:
    rec = detail.execution
    finished: dict[str, float] = {}
    for cp in detail.checkpoints:
        finished[cp.agent_id] = max(finished.get(cp.agent_id, 0.0), cp.finished_at)
    order: list[str] = list(graph.nodes) if graph is not None else []
    lanes: dict[str, Lane] = {}

    def lane(agent: str) -> Lane:
        if agent not in lanes:
            if agent not in order:
                order.append(agent)
            lanes[agent] = Lane(agent, 0.0)
        return lanes[agent]

    last_fail: dict[str, tuple[int, float]] = {}
    for ev in detail.events:
        agent = ev.agent_id or "execution"
        if ev.type == "failure_detected" and ev.agent_id and "attempt" in ev.data:
            attempt = int(ev.data.get("attempt") or 1)
            prev = last_fail.get(agent)
            if prev is not None:
                start = min(ev.ts, prev[1] + _delay(graph, agent, prev[0]))
                lane(agent).bars.append(Bar(agent, prev[0], "backoff", prev[1], start,
                                            "backoff"))
            else:
                deps = graph.nodes[agent].deps if graph is not None and agent in graph.nodes \
                    else []
                start = max([rec.created_at, *(finished.get(d, 0.0) for d in deps)])
                start = min(start, ev.ts)
            lane(agent).bars.append(Bar(
                agent, attempt, "failed", start, ev.ts,
                f"attempt {attempt} failed: {ev.data.get('failure_type', '')}",
                estimated=True))
            last_fail[agent] = (attempt, ev.ts)
        elif ev.type in MARKED:
            lane(agent).markers.append(Marker(agent, ev.type, ev.ts, MARKED[ev.type]))
    for cp in detail.checkpoints:
        prev = last_fail.get(cp.agent_id)
        if prev is not None and prev[1] <= cp.started_at:
            lane(cp.agent_id).bars.append(Bar(cp.agent_id, prev[0], "backoff", prev[1],
                                              cp.started_at, "backoff"))
        kind = "superseded" if cp.superseded else "fallback" if cp.served_by else "done"
        label = (f"attempt {cp.attempt}" + (f", served by {cp.served_by}" if cp.served_by
                                            else "") + (" (rolled back)" if cp.superseded
                                                        else ""))
        lane(cp.agent_id).bars.append(Bar(cp.agent_id, cp.attempt, kind, cp.started_at,
                                          cp.finished_at, label))
    times = [t for ln in lanes.values() for b in ln.bars for t in (b.start, b.end)]
    times += [m.ts for ln in lanes.values() for m in ln.markers]
    start = min([rec.created_at, *times]) if times else rec.created_at
    end = max([rec.finished_at or (now if rec.status == Status.RUNNING else start), *times])
    span = max(end - start, 1e-3)
    scale = (WIDTH - LABEL_W - RIGHT_PAD) / span
    # The execution's own events (claims, resumes, cancels) first, then agents in order.
    shown = [lanes[a] for a in ["execution", *(a for a in order if a != "execution")]
             if a in lanes]
    for i, ln in enumerate(shown):
        ln.y = i * ROW_H
        for b in ln.bars:
            b.x = LABEL_W + (b.start - start) * scale
            b.w = max((b.end - b.start) * scale, 3.0)  # a failure in no time stays visible
        for m in ln.markers:
            m.x = LABEL_W + (m.ts - start) * scale
    ticks = [(LABEL_W + i * (WIDTH - LABEL_W - RIGHT_PAD) / 4, _tick(span * i / 4))
             for i in range(5)]
    return Timeline(shown, start, end, max(len(shown), 1) * ROW_H, ticks)


def _tick(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


# -- the workflow graph
NODE_W, NODE_H, GAP_X, GAP_Y = 150.0, 40.0, 50.0, 16.0


@dataclass
class GraphNode:
    id: str
    status: str
    x: float
    y: float
    vote: bool


@dataclass
class GraphEdge:
    x1: float
    y1: float
    x2: float
    y2: float
    status: str


@dataclass
class Drawing:
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    width: float
    height: float
    node_w: float = NODE_W
    node_h: float = NODE_H


def node_statuses(detail: ExecutionDetail, graph: WorkflowGraph) -> dict[str, str]:
    """Each node's state in this execution: done, fallback, failed, review, running,
    rolled_back or pending."""
    rec = detail.execution
    live = {c.agent_id: c for c in detail.checkpoints if not c.superseded}
    superseded = {c.agent_id for c in detail.checkpoints if c.superseded}
    split = {v.node_id for v in detail.consensus
             if v.outcome == "manual_review" and v.reviewed_decision is None}
    out: dict[str, str] = {}
    for node_id, node in graph.nodes.items():
        if node_id in live:
            out[node_id] = "fallback" if live[node_id].served_by else "done"
        elif node_id in split and rec.status == Status.AWAITING_REVIEW:
            out[node_id] = "review"  # a split vote waits for a human
        elif node_id == rec.failed_agent:
            out[node_id] = "review" if rec.status == Status.AWAITING_REVIEW else "failed"
        elif rec.status == Status.RUNNING and all(d in live for d in node.deps):
            out[node_id] = "running"
        elif node_id in superseded:
            out[node_id] = "rolled_back"
        else:
            out[node_id] = "pending"
    return out


def draw_graph(graph: WorkflowGraph, statuses: dict[str, str] | None = None) -> Drawing:
    """Columns by depth (the longest path from an entry node): a chain is a row, a parallel
    fan-out a column of siblings, a DAG its layers."""
    depth: dict[str, int] = {}
    for node_id, node in graph.nodes.items():  # topological order: deps come first
        depth[node_id] = 1 + max((depth[d] for d in node.deps if d in depth), default=-1)
    columns: dict[int, list[str]] = {}
    for node_id, d in depth.items():
        columns.setdefault(d, []).append(node_id)
    tallest = max((len(c) for c in columns.values()), default=1)
    height = tallest * (NODE_H + GAP_Y) + GAP_Y
    where: dict[str, tuple[float, float]] = {}
    nodes: list[GraphNode] = []
    for d, ids in sorted(columns.items()):
        top = (height - len(ids) * (NODE_H + GAP_Y) + GAP_Y) / 2
        for i, node_id in enumerate(ids):
            x, y = GAP_X / 2 + d * (NODE_W + GAP_X), top + i * (NODE_H + GAP_Y)
            where[node_id] = (x, y)
            nodes.append(GraphNode(node_id, (statuses or {}).get(node_id, "pending"), x, y,
                                   graph.nodes[node_id].is_vote))
    edges = []
    for node_id, node in graph.nodes.items():
        for dep in node.deps:
            (x1, y1), (x2, y2) = where[dep], where[node_id]
            edges.append(GraphEdge(x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2,
                                   (statuses or {}).get(dep, "pending")))
    width = (max(depth.values(), default=0) + 1) * (NODE_W + GAP_X)
    return Drawing(nodes, edges, width, height)


def vote_rows(result: dict[str, Any], weights: dict[str, float]) -> list[tuple[str, Any, float]]:
    """(agent, answer, weight) for a vote's table; abstainers answer nothing."""
    rows = [(agent, answer, weights.get(agent, 1.0))
            for agent, answer in (result.get("votes") or {}).items()]
    rows += [(agent, f"abstained: {why}", weights.get(agent, 1.0))
             for agent, why in (result.get("abstentions") or {}).items()]
    return rows

"""Turning a definition into a runnable graph: every order is a DAG underneath.

sequential: each agent depends on the one before; parallel: all agents are roots feeding one
consensus node; dag: as written. Fallback agents stand aside and run only in place of another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from omium.agents.base import Agent
from omium.agents.registry import agent_class, known_frameworks
from omium.errors import FieldProblem, WorkflowValidationError
from omium.workflow.loader import parse_workflow
from omium.workflow.model import AgentSpec, ConsensusSpec, WorkflowDef

CONSENSUS = "consensus"  # the built-in vote node kind
PARALLEL_VOTE = "__consensus__"  # the vote node a parallel workflow ends in


@dataclass
class Node:
    id: str
    index: int
    spec: AgentSpec | None  # None for the synthetic vote node of a parallel workflow
    deps: list[str] = field(default_factory=list)
    dependents: list[str] = field(default_factory=list)
    agent: Agent | None = None
    consensus: ConsensusSpec | None = None

    @property
    def is_vote(self) -> bool:
        return self.agent is None


@dataclass
class WorkflowGraph:
    workflow: WorkflowDef
    nodes: dict[str, Node]  # in a topological order
    fallbacks: dict[str, Agent]

    @property
    def entry_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values() if not n.deps]

    @property
    def sinks(self) -> list[Node]:
        return [n for n in self.nodes.values() if not n.dependents]

    @cached_property
    def frameworks(self) -> frozenset[str]:
        """The kinds of agent it runs, fallbacks included (a vote is not an agent)."""
        return frozenset(a.framework for a in self.workflow.agents if a.framework != CONSENSUS)

    @property
    def framework(self) -> str:
        """The metrics label: the one framework of its agents, or "mixed"."""
        return next(iter(self.frameworks)) if len(self.frameworks) == 1 else "mixed"

    def is_fatal(self, node_id: str) -> bool:
        """A failure is fatal unless every node waiting on it is a vote (it abstains there)."""
        node = self.nodes[node_id]
        if not node.dependents:  # a final agent or the final vote: nothing can stand in
            return True
        return any(not self.nodes[d].is_vote for d in node.dependents)


def _agent_problems(defn: WorkflowDef) -> list[FieldProblem]:
    problems = []
    for i, spec in enumerate(defn.agents):
        where = f"agents[{i}] ({spec.id})"
        if spec.framework == CONSENSUS:
            continue
        cls = agent_class(spec.framework)
        if cls is None:
            known = ", ".join([*known_frameworks(), CONSENSUS])
            problems.append(FieldProblem(f"{where}.framework",
                                         f"unknown framework {spec.framework!r} "
                                         f"(known: {known})"))
            continue
        problems += [FieldProblem(f"{where}.{p.path}", p.reason)
                     for p in cls.check(spec, defn.base_dir)]
    return problems


def _topological(deps: dict[str, list[str]]) -> list[str]:
    order: list[str] = []
    placed: set[str] = set()
    remaining = [a for a in deps]
    while remaining:  # the structural check already rejected cycles
        ready = [a for a in remaining if all(d in placed for d in deps[a])]
        order += ready
        placed.update(ready)
        remaining = [a for a in remaining if a not in placed]
    return order


def prepare(workflow: WorkflowDef | dict[str, Any], *, source: str | None = None) -> WorkflowGraph:
    """Validate fully (structure, frameworks, callables) and build the graph.

    Raises ``WorkflowValidationError`` listing every problem; nothing has been written yet.
    """
    defn = parse_workflow(workflow, source=source)
    problems = _agent_problems(defn)
    if problems:
        raise WorkflowValidationError(problems, source)
    standby = defn.fallback_ids
    main = [a for a in defn.agents if a.id not in standby]
    order = defn.execution_order
    deps: dict[str, list[str]] = {}
    for i, spec in enumerate(main):
        if order == "sequential":
            deps[spec.id] = [main[i - 1].id] if i else []
        else:
            deps[spec.id] = list(spec.depends_on)
    if order == "parallel":
        deps[PARALLEL_VOTE] = [a.id for a in main]
    specs = {a.id: a for a in defn.agents}
    nodes: dict[str, Node] = {}
    for index, node_id in enumerate(_topological(deps)):
        spec = specs.get(node_id)
        if spec is None or spec.framework == CONSENSUS:
            vote = (spec.consensus if spec else defn.consensus) or ConsensusSpec()
            nodes[node_id] = Node(node_id, index, spec, deps[node_id], consensus=vote)
        else:
            cls = agent_class(spec.framework)
            assert cls is not None
            nodes[node_id] = Node(node_id, index, spec, deps[node_id],
                                  agent=cls(spec, defn.base_dir))
    for node in nodes.values():
        for dep in node.deps:
            nodes[dep].dependents.append(node.id)
    fallbacks = {}
    for fid in standby:
        spec = specs[fid]
        cls = agent_class(spec.framework)
        assert cls is not None
        fallbacks[fid] = cls(spec, defn.base_dir)
    return WorkflowGraph(defn, nodes, fallbacks)

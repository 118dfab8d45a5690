"""``framework: langgraph``: a LangGraph graph as an Omium agent.

definition: ``{graph: "module:attr", output_key?: str}``. ``attr`` is a compiled graph, an
uncompiled ``StateGraph``, or a factory ``fn(ctx)`` (or ``fn()``; sync or async) returning
either. The agent's input is the graph's input state; its output the final state (or
``state[output_key]``) as JSON. Over the API a reference must name a function or class, so
clients name a factory.

LangGraph is imported only when a workflow holds such an agent; without it, the workflow is
bad input naming the agent and ``pip install 'omium[langgraph]'``. How a graph runs, resumes
and pauses for review: ``omium.contrib.langgraph._run``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from omium.agents._imports import import_object
from omium.agents.base import Agent, AgentContext
from omium.agents.runtime import current_runtime
from omium.contrib import _factories
from omium.errors import AgentError, FieldProblem, OutputValidationError
from omium.workflow.model import AgentSpec

INSTALL = "pip install 'omium[langgraph]'"
_KEYS = ("graph", "output_key")
Kind = Literal["compiled", "builder", "factory"]


def missing_extra() -> str | None:
    """Why LangGraph cannot be used here (it is not installed), or None."""
    return _factories.missing_extra("LangGraph", (
        "langgraph.graph", "langgraph.pregel", "langchain_core.messages"), INSTALL)


def _kind(obj: Any) -> Kind | None:
    from langgraph.graph import StateGraph
    from langgraph.pregel import Pregel

    if isinstance(obj, Pregel):
        return "compiled"
    if isinstance(obj, StateGraph):
        return "builder"
    return "factory" if callable(obj) else None


def _compiled(made: Any, what: str) -> Any:
    kind = _kind(made)
    if kind == "compiled":
        return made
    if kind == "builder":
        return made.compile()
    raise AgentError(f"{what} returned a {type(made).__name__}, not a compiled graph or a "
                     "StateGraph")


class LangGraphAgent(Agent):
    framework = "langgraph"
    reference_fields = ("graph",)

    def __init__(self, spec: AgentSpec, base_dir: str | None = None) -> None:
        super().__init__(spec, base_dir)
        self.ref: str = spec.definition["graph"]
        self.output_key: str | None = spec.definition.get("output_key")
        self.target = import_object(self.ref, base_dir)
        self.kind = _kind(self.target)
        self._with_ctx = self.kind == "factory" and _factories.takes_argument(self.target)
        # A module's graph is compiled once; each run gets a copy with its own saver.
        self._graph = _compiled(self.target, self.ref) if self.kind != "factory" else None

    @classmethod
    def check(cls, spec: AgentSpec, base_dir: str | None) -> list[FieldProblem]:
        d, problems = spec.definition, []
        if unknown := set(d) - set(_KEYS):
            problems.append(FieldProblem("definition", f"unknown keys {sorted(unknown)}"))
        if "output_key" in d and (not isinstance(d["output_key"], str) or not d["output_key"]):
            problems.append(FieldProblem("definition.output_key", "must be a non-empty string"))
        if "graph" not in d:
            return [*problems, FieldProblem(
                "definition.graph", "required for framework: langgraph ('module:attr' naming "
                "a compiled graph, a StateGraph or a factory returning one)")]
        if (missing := missing_extra()) is not None:
            return [*problems, FieldProblem("framework", missing)]
        try:
            target = import_object(d["graph"], base_dir)
        except ValueError as err:
            return [*problems, FieldProblem("definition.graph", str(err))]
        kind = _kind(target)
        if kind is None:
            problems.append(FieldProblem("definition.graph", (
                f"{d['graph']!r} is a {type(target).__name__}, not a compiled graph, a "
                "StateGraph or a factory")))
        elif kind == "builder":
            try:  # a graph that cannot compile (no entry point, a dangling edge) is bad input
                target.compile()
            except Exception as err:
                problems.append(FieldProblem("definition.graph",
                                             f"{d['graph']!r} does not compile: {err}"))
        return problems

    async def graph(self, ctx: AgentContext) -> Any:
        """The compiled graph for this call (a factory's is made per call)."""
        if self._graph is not None:
            return self._graph
        return _compiled(await _factories.call_factory(self.target, self._with_ctx, ctx),
                         self.ref)

    async def run(self, inputs: Any, ctx: AgentContext) -> Any:
        from omium.contrib.langgraph._jsonable import jsonable
        from omium.contrib.langgraph._run import run_graph

        state = await run_graph(await self.graph(ctx), inputs, ctx, current_runtime())
        if self.output_key is not None:
            if not isinstance(state, Mapping) or self.output_key not in state:
                keys = sorted(state) if isinstance(state, Mapping) else type(state).__name__
                raise OutputValidationError(f"the graph's final state has no "
                                            f"{self.output_key!r} (it has {keys})")
            state = state[self.output_key]
        return jsonable(state)

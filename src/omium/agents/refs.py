"""Checking every code reference a workflow definition holds, whatever the agent kind.

Each agent kind declares the ``definition`` keys that name code (``Agent.reference_fields``:
``callable`` and ``accept`` for python agents; an adapter's ``graph``, ``crew`` or ``team``),
so a new kind is checked by declaring them, not by editing a list here.
"""

from __future__ import annotations

from typing import Any

from omium.agents._imports import RefusedReference, declared_refs, resolve_ref
from omium.agents.registry import agent_class
from omium.errors import FieldProblem


def reference_problems(definition: Any, allowed: tuple[str, ...] | None,
                       base_dir: str | None = None) -> list[FieldProblem]:
    """Each reference of each agent, resolved under a client's rules (``allowed``: the
    allowed packages) or the operator's (None): one problem per refused reference, named
    ``agents[i] (id).definition.<field>``. Works on the raw definition, before ``prepare``
    imports anything. A reference that merely does not resolve (no such module or name), and
    an agent too malformed to read, are left to ``prepare``, which reports them together
    with every other problem of the definition."""
    agents = definition.get("agents") if isinstance(definition, dict) else None
    problems = []
    for i, agent in enumerate(agents if isinstance(agents, list) else []):
        if not isinstance(agent, dict) or not isinstance(agent.get("definition"), dict):
            continue
        framework = agent.get("framework", "python")
        cls = agent_class(framework) if isinstance(framework, str) else None
        if cls is None:  # consensus, or an unknown kind that prepare reports
            continue
        spec = agent["definition"]
        for key in cls.reference_fields:
            for path, ref in declared_refs(spec, key):
                try:
                    resolve_ref(ref, base_dir, allowed=allowed)
                except RefusedReference as err:
                    problems.append(FieldProblem(f"agents[{i}] ({agent.get('id')}).{path}",
                                                 str(err)))
                except ValueError:  # does not resolve: prepare says so, with the rest
                    pass
    return problems

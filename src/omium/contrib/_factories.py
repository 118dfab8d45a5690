"""What the framework adapters share: whether their framework is installed, calling a user's
factory (with or without the agent's context, sync or async), and ``FactoryAgent``, an agent
kind whose definition names such a factory."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

from omium.agents._imports import import_object
from omium.agents._params import positional
from omium.agents.base import Agent, AgentContext
from omium.errors import AgentError, FieldProblem
from omium.workflow.model import AgentSpec


def missing_extra(framework: str, modules: Sequence[str], install: str) -> str | None:
    """Why ``framework`` cannot be used here (a module of it is not installed), or None."""
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError as err:
        return f"{framework} is not installed (no module {err.name!r}); run: {install}"
    return None


def takes_argument(fn: Any) -> bool:
    """Whether a factory takes the context (one that takes nothing is called without it)."""
    params = positional(fn)
    return params is None or params[0] >= 1 or params[1]


async def call_factory(fn: Any, with_ctx: bool, ctx: AgentContext) -> Any:
    made = fn(ctx) if with_ctx else fn()
    return await made if inspect.isawaitable(made) else made


class FactoryAgent(Agent):
    """An agent whose ``definition[factory_key]`` names a factory ``fn(ctx)`` / ``fn()`` (sync
    or async) that makes the framework's object (a team, a crew) anew for every attempt."""

    factory_key: ClassVar[str]
    keys: ClassVar[tuple[str, ...]]  # every definition key the kind takes
    produces: ClassVar[str]  # what the factory returns, for messages: "a crewai.Crew"

    def __init__(self, spec: AgentSpec, base_dir: str | None = None) -> None:
        super().__init__(spec, base_dir)
        self.ref: str = spec.definition[self.factory_key]
        self.factory = import_object(self.ref, base_dir)
        if not callable(self.factory):
            raise AgentError(f"{self.ref!r} is a {type(self.factory).__name__}, not a factory")
        self._with_ctx = takes_argument(self.factory)

    @staticmethod
    def missing() -> str | None:
        """Why the framework cannot be used here (it is not installed), or None."""
        return None

    @staticmethod
    def is_made(obj: Any) -> bool:
        """Whether ``obj`` is an object the factory should make (named instead of a factory)."""
        return False

    @classmethod
    def check(cls, spec: AgentSpec, base_dir: str | None) -> list[FieldProblem]:
        d, key, problems = spec.definition, cls.factory_key, []
        if unknown := set(d) - set(cls.keys):
            problems.append(FieldProblem("definition", f"unknown keys {sorted(unknown)}"))
        where = f"definition.{key}"
        if key not in d:
            return [*problems, FieldProblem(where, (
                f"required for framework: {cls.framework} ('module:factory' naming a function "
                f"that returns {cls.produces})"))]
        if not isinstance(d[key], str):
            return [*problems, FieldProblem(where, "must be a 'module:factory' string")]
        if (missing := cls.missing()) is not None:
            return [*problems, FieldProblem("framework", missing)]
        try:
            target = import_object(d[key], base_dir)
        except ValueError as err:
            return [*problems, FieldProblem(where, str(err))]
        if not callable(target) or cls.is_made(target):
            problems.append(FieldProblem(where, (
                f"{d[key]!r} is a {type(target).__name__}, not a factory returning "
                f"{cls.produces} (one is made anew for every attempt)")))
        return problems

    async def make(self, ctx: AgentContext) -> Any:
        """What the factory returns for this attempt."""
        return await call_factory(self.factory, self._with_ctx, ctx)

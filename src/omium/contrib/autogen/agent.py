"""``framework: autogen``: an AutoGen AgentChat team (or a single agent) as an Omium agent.

definition: ``{team: "module:factory", task?: "template"}``. ``factory(ctx)`` (or
``factory()``; sync or async) returns an AgentChat team (``RoundRobinGroupChat``,
``SelectorGroupChat``, ``Swarm``, ...) or agent (an ``AssistantAgent``); it is called on every
attempt, so a team is never reused. ``task`` is rendered from the agent's input by the ``llm``
agent's ``{{ dotted.path }}`` templates (default: the input as JSON) and given to ``run``. The
output: ``{final: text, messages: [{source, content}], stop_reason}``.

The factory builds its model client on the endpoint Omium lends the agent
(``OpenAIChatCompletionClient(model=ctx.llm_model, base_url=ctx.llm_base_url,
api_key=ctx.llm_api_key, model_info=...)``), so its calls are routed and billed by Omium.

AutoGen is imported only when a workflow holds such an agent; without it, the workflow is bad
input naming the agent and ``pip install 'omium[autogen]'``. How a team runs and resumes:
``omium.contrib.autogen._run``.
"""

from __future__ import annotations

import json
from typing import Any

from omium.agents.base import AgentContext
from omium.agents.llm import render
from omium.agents.runtime import current_runtime
from omium.contrib import _factories
from omium.errors import FieldProblem
from omium.workflow.model import AgentSpec

INSTALL = "pip install 'omium[autogen]'"
_KEYS = ("team", "task")


def missing_extra() -> str | None:
    """Why AutoGen cannot be used here (it is not installed), or None."""
    return _factories.missing_extra("AutoGen", (
        "autogen_agentchat.teams", "autogen_agentchat.agents", "autogen_agentchat.base"),
        INSTALL)


def task_text(template: str | None, inputs: Any) -> str:
    """The task the team is given: the template over the input, else the input as JSON."""
    if template is None:
        return inputs if isinstance(inputs, str) else json.dumps(inputs, default=str)
    return render(template, inputs)


class AutoGenAgent(_factories.FactoryAgent):
    framework = "autogen"
    reference_fields = ("team",)
    factory_key, keys, produces = "team", _KEYS, "an AgentChat team or agent"
    missing = staticmethod(missing_extra)

    def __init__(self, spec: AgentSpec, base_dir: str | None = None) -> None:
        super().__init__(spec, base_dir)
        self.template: str | None = spec.definition.get("task")

    @staticmethod
    def is_made(obj: Any) -> bool:
        from autogen_agentchat.base import ChatAgent, Team

        return isinstance(obj, ChatAgent | Team)

    @classmethod
    def check(cls, spec: AgentSpec, base_dir: str | None) -> list[FieldProblem]:
        problems = []
        if "task" in spec.definition and not isinstance(spec.definition["task"], str):
            problems.append(FieldProblem("definition.task", "must be a template string"))
        return [*problems, *super().check(spec, base_dir)]

    async def team(self, ctx: AgentContext) -> Any:
        """A fresh team for this attempt (a single agent is a one-turn team of it)."""
        from omium.contrib.autogen._run import as_team

        return as_team(await self.make(ctx), self.ref)

    async def run(self, inputs: Any, ctx: AgentContext) -> Any:
        from omium.contrib.autogen._run import run_team

        task = task_text(self.template, inputs)
        return await run_team(await self.team(ctx), task, ctx, current_runtime())


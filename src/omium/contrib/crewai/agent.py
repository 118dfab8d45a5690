"""``framework: crewai``: a CrewAI crew as an Omium agent.

definition: ``{crew: "module:factory"}``. ``factory(ctx)`` (or ``factory()``; sync or async)
returns a ``crewai.Crew``; it is called on every attempt, so a crew is never reused. The agent's
input is the crew's ``kickoff(inputs=...)`` (a dict as it is, anything else as
``{"input": value}``). The output: the last task's structured output (its ``output_pydantic``
model's fields, or its ``output_json`` dict), else ``{"raw": text}``, plus
``tasks: [{name, raw}]``, one per task.

The factory builds its agents' LLM on the endpoint Omium lends the agent
(``LLM(model=ctx.llm_model, base_url=ctx.llm_base_url, api_key=ctx.llm_api_key)``), so their
calls are routed and billed by Omium.

CrewAI is imported only when a workflow holds such an agent; without it, the workflow is bad
input naming the agent and ``pip install 'omium[crewai]'``. How a crew runs and resumes:
``omium.contrib.crewai._run``.
"""

from __future__ import annotations

import os
from typing import Any

from omium.agents.base import AgentContext
from omium.agents.runtime import current_runtime
from omium.contrib import _factories
from omium.errors import AgentError

INSTALL = "pip install 'omium[crewai]'"
# CrewAI phones home unless told not to: anonymous telemetry (an OTLP exporter to
# telemetry.crewai.com), execution tracing (with a first-run consent prompt) and a PyPI version
# check. An Omium agent's only network peer must be the endpoint Omium lends it, and a machine
# without internet must not wait on DNS. Set (unless the operator set them) before CrewAI is
# first imported, because some of it is read at import.
QUIET_ENV = {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_DISABLE_TRACKING": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "CREWAI_DISABLE_VERSION_CHECK": "true",
    "OTEL_SDK_DISABLED": "true",  # CrewAI's telemetry opt-out; Omium itself uses no OTel
}


def quiet() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def missing_extra() -> str | None:
    """Why CrewAI cannot be used here (it is not installed), or None."""
    quiet()
    return _factories.missing_extra("CrewAI", ("crewai",), INSTALL)


class CrewAIAgent(_factories.FactoryAgent):
    framework = "crewai"
    reference_fields = ("crew",)
    factory_key, keys, produces = "crew", ("crew",), "a crewai.Crew"
    missing = staticmethod(missing_extra)

    @staticmethod
    def is_made(obj: Any) -> bool:
        from crewai import Crew

        return isinstance(obj, Crew)

    async def crew(self, ctx: AgentContext) -> Any:
        """A fresh crew for this attempt."""
        made = await self.make(ctx)
        if not self.is_made(made):
            raise AgentError(f"{self.ref} returned a {type(made).__name__}, not a crewai.Crew")
        return made

    async def run(self, inputs: Any, ctx: AgentContext) -> Any:
        quiet()
        from omium.contrib.crewai._run import run_crew

        kickoff = inputs if isinstance(inputs, dict) else {"input": inputs}
        return await run_crew(await self.crew(ctx), kickoff, ctx, current_runtime())

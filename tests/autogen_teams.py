"""AutoGen AgentChat factories for tests/test_autogen.py: their model client is built on the
endpoint Omium lends the agent (``ctx.llm_*``), as the README tells users to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autogen_agentchat.agents import AssistantAgent, BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.messages import BaseChatMessage, TextMessage
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core import CancellationToken
from autogen_ext.models.openai import OpenAIChatCompletionClient

from omium.agents.base import AgentContext

MODEL_INFO: Any = {"vision": False, "function_calling": False, "json_output": False,
                   "family": "unknown", "structured_output": False}
# What the critic saw, and whether it fails once more (the resume test sets it).
CRITIC: dict[str, Any] = {"fail": 0, "calls": 0, "seen": []}


def client(ctx: AgentContext) -> OpenAIChatCompletionClient:
    return OpenAIChatCompletionClient(model=ctx.llm_model or "", base_url=ctx.llm_base_url,
                                      api_key=ctx.llm_api_key, model_info=MODEL_INFO,
                                      max_retries=0)


def analyst(ctx: AgentContext) -> AssistantAgent:
    """One agent (the adapter runs it as a one-turn team)."""
    return AssistantAgent("analyst", model_client=client(ctx),
                          system_message="You assess loan applicants.")


async def analyst_team(ctx: AgentContext) -> RoundRobinGroupChat:
    """An async factory: a one-agent team, one reply."""
    return RoundRobinGroupChat([analyst(ctx)], max_turns=1)


def no_ctx() -> RoundRobinGroupChat:
    raise AssertionError("not run")


class Critic(BaseChatAgent):
    """No LLM: fails while CRITIC['fail'] > 0, else approves what it was shown."""

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (TextMessage,)

    async def on_messages(self, messages: Sequence[BaseChatMessage],
                          cancellation_token: CancellationToken) -> Response:
        CRITIC["calls"] += 1
        CRITIC["seen"].append([m.source for m in messages])
        if CRITIC["fail"] > 0:
            CRITIC["fail"] -= 1
            raise RuntimeError("critic crashed")
        return Response(chat_message=TextMessage(content="approved", source=self.name))

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        pass


def writer_and_critic(ctx: AgentContext) -> RoundRobinGroupChat:
    """writer (an LLM call), then critic; three messages with the task."""
    writer = AssistantAgent("writer", model_client=client(ctx))
    return RoundRobinGroupChat([writer, Critic("critic", "reviews")],
                               termination_condition=MaxMessageTermination(3))

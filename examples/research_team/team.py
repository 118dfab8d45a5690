"""The AutoGen panel: an advocate and a skeptic each weigh the claim (one call each, AutoGen's
``OpenAIChatCompletionClient`` on the endpoint Omium lends the agent), then a clerk (no
model) writes the panel's verdict: the one both gave, else ``undecided``."""

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

from examples.research_team.verdicts import ANSWER_FORMAT, read_verdict

# What AutoGen needs to know about a model it has no entry for (a local one).
MODEL_INFO: Any = {"vision": False, "function_calling": False, "json_output": False,
                   "family": "unknown", "structured_output": False}


class Clerk(BaseChatAgent):
    """Writes the verdict the advocate and the skeptic agree on (``undecided`` if not)."""

    def __init__(self) -> None:
        super().__init__("clerk", "records the panel's verdict")

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (TextMessage,)

    async def on_messages(self, messages: Sequence[BaseChatMessage],
                          cancellation_token: CancellationToken) -> Response:
        votes = {read_verdict(m.to_text())[0] for m in messages
                 if m.source in ("advocate", "skeptic")}
        final = votes.pop() if len(votes) == 1 else "undecided"
        return Response(chat_message=TextMessage(content=final, source=self.name))

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        pass


def panel(ctx: Any) -> RoundRobinGroupChat:
    """advocate -> skeptic -> clerk: the task and three messages."""
    client = OpenAIChatCompletionClient(model=ctx.llm_model or "", base_url=ctx.llm_base_url,
                                        api_key=ctx.llm_api_key, model_info=MODEL_INFO,
                                        temperature=0, max_tokens=160, max_retries=0)
    advocate = AssistantAgent("advocate", model_client=client, system_message=(
        "Argue for the claim using only the sources. " + ANSWER_FORMAT))
    skeptic = AssistantAgent("skeptic", model_client=client, system_message=(
        "Look for what the sources do not show. " + ANSWER_FORMAT))
    return RoundRobinGroupChat([advocate, skeptic, Clerk()],
                               termination_condition=MaxMessageTermination(4))

"""Running one AutoGen agent call: the team's ``save_state()`` checkpointed after every
message, so a call finds the conversation where the last one left it.

The checkpoints live in the store's graph-checkpoint tables (the ones LangGraph's saver uses),
namespace ``autogen``, on a thread derived from the execution and agent (a new one after a
rollback, as for LangGraph). Each holds the team's state, the messages so far and whether the
run finished:

* no checkpoint yet: the team starts with the task;
* stopped mid-conversation (the process was killed, an agent or the model raised, a timeout):
  the next attempt ``load_state()``s the last checkpoint and continues the conversation
  (``run_stream()`` without a task): the turns that finished are not asked again;
* finished (the kill came after the team, before Omium's own checkpoint): its output is
  given back, nothing runs.

When the state is saved: AgentChat warns that a team's state saved while it runs may be
inconsistent, and the message ``run_stream`` yields arrives after the manager has already
picked the next speaker. So the state is saved inside the run, at the one consistent point: when
the group chat manager checks its termination condition with an agent's reply (the team's
termination condition is wrapped for that), after every participant has the reply and before
the next speaker is chosen. The turn count is saved as it will be once that turn is counted; the
wrapped condition is given the conversation so far again on resume, so ``MaxMessageTermination``
and its kind count every message, not only those after the resume.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from autogen_agentchat.base import ChatAgent, TaskResult, Team, TerminationCondition
from autogen_agentchat.messages import (
    BaseAgentEvent,
    BaseChatMessage,
    MessageFactory,
    StopMessage,
)
from autogen_agentchat.teams import BaseGroupChat, RoundRobinGroupChat

from omium.agents.base import AgentContext
from omium.agents.runtime import AgentRuntime
from omium.contrib._checkpoints import JsonCheckpoints
from omium.errors import AgentError

NAMESPACE = "autogen"
_Message = BaseAgentEvent | BaseChatMessage


def as_team(made: Any, what: str) -> BaseGroupChat:
    """The factory's team; a single agent becomes a one-turn ``RoundRobinGroupChat`` of it
    (what ``agent.run(task=...)`` does, with a team's ``save_state``)."""
    if isinstance(made, BaseGroupChat):
        return made
    if isinstance(made, ChatAgent):
        return RoundRobinGroupChat([made], max_turns=1)
    if isinstance(made, Team):
        raise AgentError(f"{what} returned a {type(made).__name__}: a team that is not an "
                         "AgentChat group chat cannot save its state after each message")
    raise AgentError(f"{what} returned a {type(made).__name__}, not an AgentChat team or agent")


def _text(message: _Message) -> str:
    return message.to_text()


def _jsonable_content(message: _Message) -> Any:
    content = getattr(message, "content", None)
    if isinstance(content, str):
        return content
    try:
        json.dumps(content)
    except (TypeError, ValueError):
        return message.to_text()
    return content


def _entry(message: _Message) -> dict[str, Any]:
    return {"source": message.source, "content": _jsonable_content(message)}


class _SaveEachTurn(TerminationCondition):
    """The team's own termination condition (or none), which also checkpoints the team each
    time the manager hands it an agent's reply."""

    def __init__(self, inner: TerminationCondition | None) -> None:
        self.inner = inner
        self.team: BaseGroupChat | None = None
        self.checkpoints: JsonCheckpoints | None = None
        self.messages: list[dict[str, Any]] = []
        self.skip_first = False  # with a task, the manager's first call is the task itself
        self.failure: BaseException | None = None

    @property
    def terminated(self) -> bool:
        return self.inner.terminated if self.inner is not None else False

    async def reset(self) -> None:
        if self.inner is not None:
            await self.inner.reset()

    async def replay(self, messages: Sequence[_Message]) -> None:
        """Let the team's condition see the conversation so far (on resume)."""
        if self.inner is not None and messages:
            await self.inner(messages)

    async def __call__(self, messages: Sequence[_Message]) -> StopMessage | None:
        if self.skip_first:
            self.skip_first = False  # the task: participants may not have it yet
        else:
            await self._save()
        return await self.inner(messages) if self.inner is not None else None

    async def _save(self) -> None:
        assert self.team is not None and self.checkpoints is not None
        try:
            state = dict(await self.team.save_state())
            manager = state["agent_states"].get(self.team._group_chat_manager_name)
            if isinstance(manager, dict) and isinstance(manager.get("current_turn"), int):
                # Saved before the manager counts this turn: as it will be.
                manager = {**manager, "current_turn": manager["current_turn"] + 1}
                state["agent_states"] = {**state["agent_states"],
                                         self.team._group_chat_manager_name: manager}
            thread = manager.get("message_thread") if isinstance(manager, dict) else None
            await self.checkpoints.put({"state": state, "done": False, "thread": thread})
        except BaseException as err:  # the run reports it; AgentChat would swallow it
            self.failure = err
            raise


def _thread_messages(dumps: Any) -> list[_Message]:
    factory, out = MessageFactory(), []
    for d in dumps if isinstance(dumps, list) else ():
        try:
            out.append(factory.create(d))
        except Exception:  # a custom message type the plain factory does not know
            continue
    return out


async def run_team(team: BaseGroupChat, task: str, ctx: AgentContext,
                   runtime: AgentRuntime | None) -> dict[str, Any]:
    """The team's output, ``{final, messages, stop_reason}``."""
    checkpoints = JsonCheckpoints(ctx, runtime, NAMESPACE, "omium.contrib.autogen")
    saved = await checkpoints.latest()
    if saved is not None and saved.get("done"):
        return cast(dict[str, Any], saved["output"])
    saver = _SaveEachTurn(team._termination_condition)
    saver.team, saver.checkpoints = team, checkpoints
    team._termination_condition = saver  # the manager is made with it on the first run
    prior: list[dict[str, Any]] = []
    if saved is None:
        saver.skip_first = True
        stream = team.run_stream(task=task)
    else:
        await team.load_state(saved["state"])
        thread = _thread_messages(saved.get("thread"))
        await saver.replay(thread)
        prior = [_entry(m) for m in thread if isinstance(m, BaseChatMessage)]
        stream = team.run_stream()
    messages = list(prior)
    result: TaskResult | None = None
    try:
        async for item in stream:
            if isinstance(item, TaskResult):
                result = item
            elif isinstance(item, BaseChatMessage):
                messages.append(_entry(item))
    except Exception as err:
        if saver.failure is not None:
            raise saver.failure from err
        raise
    if saver.failure is not None:
        raise saver.failure
    if result is None:
        raise AgentError("the AutoGen team stopped without a result")
    chat = [m for m in result.messages if isinstance(m, BaseChatMessage)]
    final = _text(chat[-1]) if chat else (messages[-1]["content"] if messages else "")
    output = {"final": final, "messages": messages, "stop_reason": result.stop_reason}
    await checkpoints.put({"done": True, "output": output})
    return output

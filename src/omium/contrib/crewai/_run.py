"""Running one CrewAI crew: each task's output checkpointed as the task finishes, so a later call
runs only the tasks that had not.

The checkpoints live in the store's graph-checkpoint tables, namespace ``crewai``, on the
thread ``EXECUTION_ID:AGENT_ID:crewai`` (a new one after a rollback), fenced by the lease epoch
(``omium.contrib._checkpoints``). Each holds the outputs of the tasks finished so far; the last
one, once the crew is done, its output:

* no checkpoint yet: the crew runs from its first task;
* some tasks finished (the process was killed, an agent or the model raised, a timeout): their
  outputs are set back on the crew's tasks (``task.output``, an ``output_pydantic`` model
  rebuilt from its fields) and the crew is kicked off the way CrewAI resumes from its own
  checkpoints (``checkpoint_kickoff_event_id`` set): it starts at the first task without an
  output and hands the earlier outputs to the later tasks as their context. Only the leading
  run of finished tasks is given back (tasks finish in order in a sequential crew; a task whose
  description or expected output changed since, and every task after it, runs again);
* finished (the kill came after the crew, before Omium's own checkpoint): its output is given
  back, nothing runs.

When a task is saved: its ``callback`` is wrapped. ``akickoff`` (CrewAI's native async kickoff)
awaits an async callback after the task's output is final (guardrails passed) and before the
next task starts, so the save is durable before anything depends on the task. The task's own
callback runs first; the crew's ``task_callback`` still runs after, as CrewAI calls it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any, cast

from crewai import Crew, Task
from crewai.crews.crew_output import CrewOutput
from crewai.events.utils.console_formatter import (
    set_suppress_console_output,
    should_suppress_console_output,
)
from crewai.tasks.output_format import OutputFormat
from crewai.tasks.task_output import TaskOutput

from omium.agents.base import AgentContext
from omium.agents.runtime import AgentRuntime
from omium.contrib._checkpoints import JsonCheckpoints
from omium.errors import AgentError

NAMESPACE = "crewai"
RESERVED = "tasks"  # the output's key for every task's output, beside the last one's fields


def _saved(task: Task, index: int, out: TaskOutput) -> dict[str, Any]:
    return {"index": index, "key": task.key, "name": out.name, "description": out.description,
            "expected_output": out.expected_output, "agent": out.agent, "raw": out.raw,
            "pydantic": None if out.pydantic is None else out.pydantic.model_dump(mode="json"),
            "json_dict": out.json_dict, "output_format": out.output_format.value}


def _restored(task: Task, saved: dict[str, Any]) -> TaskOutput:
    model = task.output_pydantic
    fields = saved.get("pydantic")
    return TaskOutput(
        name=saved.get("name"), description=saved.get("description") or task.description,
        expected_output=saved.get("expected_output"), raw=saved.get("raw") or "",
        pydantic=model.model_validate(fields) if model is not None and fields is not None
        else None,
        json_dict=saved.get("json_dict"), agent=saved.get("agent") or "",
        output_format=OutputFormat(saved.get("output_format") or OutputFormat.RAW.value))


class _SaveEachTask:
    """Wraps every task's callback to checkpoint the finished tasks after each one."""

    def __init__(self, checkpoints: JsonCheckpoints, finished: dict[int, dict[str, Any]]):
        self.checkpoints, self.finished = checkpoints, finished

    def wrap(self, index: int, task: Task) -> None:
        inner: Callable[[TaskOutput], Any] | None = task.callback

        async def callback(output: TaskOutput) -> None:
            if inner is not None:
                result = inner(output)
                if inspect.isawaitable(result):
                    await result
            self.finished[index] = _saved(task, index, output)
            await self.checkpoints.put({"done": False, "tasks": [
                self.finished[i] for i in sorted(self.finished)]})

        task.callback = callback


def _restore(crew: Crew, saved: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    """Set the finished tasks' outputs back on the crew; the ones given back, by index."""
    by_index = {t["index"]: t for t in (saved or {}).get("tasks", ()) if isinstance(t, dict)}
    restored: dict[int, dict[str, Any]] = {}
    for index, task in enumerate(crew.tasks):
        record = by_index.get(index)
        if record is None or record.get("key") != task.key:
            break
        task.output = _restored(task, record)
        restored[index] = record
    return restored


def _declared_fields(task: Task) -> set[str]:
    model = task.output_pydantic or task.output_json
    return set(model.model_fields) if model is not None else set()


def output_of(result: CrewOutput) -> dict[str, Any]:
    """The last task's structured output (else ``{raw}``), plus every task's ``{name, raw}``."""
    if result.pydantic is not None:
        out = result.pydantic.model_dump(mode="json")
    elif result.json_dict is not None:
        out = json.loads(json.dumps(result.json_dict, default=str))
    else:
        out = {"raw": result.raw}
    if RESERVED in out:
        raise AgentError(f"the crew's final output has a field {RESERVED!r}, the key the "
                         "crewai agent's output keeps for every task's output")
    out[RESERVED] = [{"name": t.name or t.description, "raw": t.raw}
                     for t in result.tasks_output]
    return cast(dict[str, Any], out)


async def run_crew(crew: Crew, inputs: dict[str, Any], ctx: AgentContext,
                   runtime: AgentRuntime | None) -> dict[str, Any]:
    """The crew's output (see ``output_of``), resuming after its finished tasks."""
    if crew.tasks and RESERVED in _declared_fields(crew.tasks[-1]):
        raise AgentError(f"the crew's last task declares a field {RESERVED!r}, the key the "
                         "crewai agent's output keeps for every task's output")
    checkpoints = JsonCheckpoints(ctx, runtime, NAMESPACE, "omium.contrib.crewai")
    saved = await checkpoints.latest()
    if saved is not None and saved.get("done"):
        return cast(dict[str, Any], saved["output"])
    finished = _restore(crew, saved)
    if finished:
        # CrewAI's own resume: start at the first task without an output.
        crew.checkpoint_kickoff_event_id = f"omium:{checkpoints.thread}"
    saver = _SaveEachTask(checkpoints, dict(finished))
    for index, task in enumerate(crew.tasks):
        saver.wrap(index, task)
    crew.stream = False  # Omium takes the crew's result, not a stream of chunks
    # CrewAI prints to stdout (verbose panels, its event bus's warnings when a call fails),
    # which is the CLI's (`omium run --json`): silenced for this crew's context; its log
    # records (stderr) remain.
    was_quiet = should_suppress_console_output()
    set_suppress_console_output(True)
    try:
        result = await crew.akickoff(inputs=inputs)
    finally:
        set_suppress_console_output(was_quiet)
    if not isinstance(result, CrewOutput):
        raise AgentError(f"the crew's kickoff returned a {type(result).__name__}, "
                         "not a CrewOutput")
    output = output_of(result)
    await checkpoints.put({"done": True, "output": output})
    return output

"""``omium``: run, resume, review and inspect durable multi-agent executions.

Exit codes: 0 completed, 1 failed, 2 bad input, 3 awaiting review, 4 still in progress.
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.table import Table

from omium._cli_common import DbOption, JsonOption, err, fail, out, run_async, styled
from omium._cli_llm import credits_app, llm_app, usage
from omium._cli_service import keys_app, serve, tenants_app, worker
from omium._display import Progress, preview, when
from omium.agents.runtime import REVIEW_REQUESTED
from omium.billing.money import nano_to_dollars
from omium.engine import commands
from omium.engine._llm import check_llm_backends
from omium.engine.executor import MultiAgentExecutor, check_inputs
from omium.engine.graph import prepare
from omium.engine.holder import INTERRUPTED, orphaned
from omium.engine.result import ExecutionResult
from omium.errors import OmiumError
from omium.jsonsafe import MAX_JSON_DEPTH, NotJSONError, json_problem, loads_strict
from omium.status import STATUSES, Status
from omium.store import open_store
from omium.workflow.loader import load_workflow

app = typer.Typer(help="Omium: durable multi-agent workflows.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
executions_app = typer.Typer(help="List and inspect executions.", no_args_is_help=True)
app.add_typer(executions_app, name="executions")
app.add_typer(llm_app, name="llm")
app.add_typer(credits_app, name="credits")
app.command("usage")(usage)
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.command("worker")(worker)
app.command("serve")(serve)

EXIT = {Status.COMPLETED: 0, Status.FAILED: 1, Status.AWAITING_REVIEW: 3, Status.CANCELLED: 1}


def _read_inputs(value: str | None) -> Any:
    if value is None:
        return None
    path = Path(value)
    try:
        is_file = path.is_file()
    except OSError:  # JSON longer than a file name may be ("File name too long")
        is_file = False
    if is_file:
        try:
            inputs = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            fail(f"--input {value}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                 f"{e.start})")
        except OSError as e:
            fail(f"--input {value}: cannot read file: {e.strerror}")
        except yaml.YAMLError as e:
            fail(f"--input {value}: not valid JSON/YAML: {e}")
        except RecursionError:  # PyYAML composes nested nodes recursively
            fail(f"--input {value}: nested deeper than {MAX_JSON_DEPTH} levels")
        if (bad := json_problem(inputs, "inputs")) is not None:  # YAML's .nan, .inf
            fail(f"--input {value}: {bad}")
        return inputs
    try:
        return loads_strict(value)
    except json.JSONDecodeError as e:
        fail(f"--input: {value!r} is neither a file nor valid JSON ({e.msg} at {e.pos})")
    except NotJSONError as e:
        fail(f"--input: {e}")


# What a vote's outcome means, next to the decision it reached (or did not).
_VOTE = {"approved": "agreement reached", "manual_review": "no agreement: sent to review",
         "reviewed": "decided in review"}


def _finish(result: ExecutionResult, as_json: bool, progress: Progress | None = None,
            verb: str = "run") -> NoReturn:
    if as_json:
        print(json.dumps(result.to_dict(), default=str))
    elif result.existing:
        how = {Status.FAILED: f"continue with: omium resume {result.execution_id}",
               Status.AWAITING_REVIEW: f"decide with: omium review {result.execution_id} "
                                       "--decision approve|reject",
               Status.RUNNING: "it is running", Status.QUEUED: "it is queued for a worker"}
        out.print(f"execution {result.execution_id} exists already and is {result.status}: "
                  f"not {verb} again" + (f"; {how[result.status]}" if result.status in how
                                         else "; nothing to resume"), soft_wrap=True)
    else:
        if progress is not None:
            out.print(progress.table(title=f"execution {result.execution_id}"))
        style = {Status.COMPLETED: "green", Status.FAILED: "red"}.get(result.status, "yellow")
        out.print(styled("status: ", (result.status, style)))
        if result.decision is not None:
            out.print(styled("decision: ", (str(result.decision), "bold"),
                             " (the workflow's result)"))
        if result.consensus:
            c = result.consensus
            out.print(f"vote: {_VOTE.get(c['outcome'], c['outcome'])} ({c['strategy']}, "
                      f"{c['agreement_level']:.0%} agree, votes {c['votes']})", soft_wrap=True)
        if result.usage:
            u = result.usage
            out.print(f"LLM: {u['calls']} call(s), {u['prompt_tokens']} prompt + "
                      f"{u['completion_tokens']} completion tokens, ${u['cost_usd']}",
                      soft_wrap=True)
        if result.status == Status.FAILED:
            out.print(f"failed agent: {result.failed_agent} ({result.failure_type}): "
                      f"{result.error}", soft_wrap=True)
            out.print(f"after fixing, continue with: omium resume {result.execution_id}")
        if result.status == Status.AWAITING_REVIEW:
            answer = "approve|reject"
            if result.failure_type == REVIEW_REQUESTED:  # what the agent asks the reviewer
                out.print(f"{result.failed_agent}: {result.error}", soft_wrap=True)
                answer = "TEXT (the answer the agent gets back; approve or reject too)"
            out.print(f"decide with: omium review {result.execution_id} --decision {answer}",
                      soft_wrap=True)
    raise typer.Exit(EXIT.get(result.status, 4))


async def _with_executor(db: str | None, fn: Any, on_event: Any = None) -> Any:
    async with MultiAgentExecutor(open_store(db) if db else None, on_event=on_event) as ex:
        return await fn(ex)


@app.command()
def run(workflow: Annotated[Path, typer.Argument(help="Workflow file (YAML or JSON).")],
        input: Annotated[str | None, typer.Option("--input", "-i",
                                                  help="Inputs: a JSON/YAML file or JSON.")
                         ] = None,
        execution_id: Annotated[str | None, typer.Option(
            "--execution-id", help="Idempotent: an existing id is never started twice.")] = None,
        db: DbOption = None, as_json: JsonOption = False) -> None:
    """Run a workflow to its end, checkpointing each finished agent."""
    inputs = _read_inputs(input)
    try:
        defn = load_workflow(workflow)
        plan = prepare(defn, source=str(workflow))
        check_llm_backends(plan, source=str(workflow))
        check_inputs(plan, inputs if inputs is not None else (plan.workflow.inputs or {}))
    except OmiumError as e:
        fail(str(e))
    exec_id = execution_id or f"exec-{uuid.uuid4().hex[:12]}"
    if not as_json:
        err.print(styled("execution ", (exec_id, "bold"), f" ({plan.workflow.name})"),
                  soft_wrap=True)
    progress = Progress(err, list(plan.nodes), quiet=as_json)
    with progress:
        result = run_async(_with_executor(db, lambda ex: ex.execute(
            exec_id, plan, inputs), progress), interrupted=_resume_hint(exec_id, progress))
    _finish(result, as_json, progress)


def _resume_hint(execution_id: str, progress: Progress) -> Any:
    """After Ctrl-C: how to continue, once the execution exists (an agent has started)."""
    return lambda: (f"continue with: omium resume {execution_id}" if progress.events
                    else None)


@app.command()
def resume(execution_id: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Continue an interrupted or failed execution; finished agents are not run again."""
    progress = Progress(err, [], quiet=as_json)
    with progress:
        result = run_async(_with_executor(db, lambda ex: ex.resume(execution_id), progress),
                           interrupted=_resume_hint(execution_id, progress))
    _finish(result, as_json, progress, verb="resumed")


@app.command()
def review(execution_id: str,
           decision: Annotated[str, typer.Option(help=(
               "approve or reject (a split vote, a failure paused for review); any text "
               "answers an agent's own review request (a LangGraph interrupt() resumes "
               "with it)"))],
           reviewer: Annotated[str | None, typer.Option(help="Who decided.")] = None,
           db: DbOption = None, as_json: JsonOption = False) -> None:
    """Decide an execution awaiting review (a split vote, a failure paused for review, or an
    agent's own request)."""
    progress = Progress(err, [], quiet=as_json)
    with progress:
        result = run_async(_with_executor(
            db, lambda ex: ex.review(execution_id, decision, reviewer=reviewer), progress),
            interrupted=_resume_hint(execution_id, progress))
    _finish(result, as_json, progress)


@app.command()
def validate(workflow: Path, as_json: JsonOption = False) -> None:
    """Check a workflow file without running it."""
    try:
        plan = prepare(load_workflow(workflow), source=str(workflow))
        check_llm_backends(plan, source=str(workflow))
    except OmiumError as e:
        if as_json:
            print(json.dumps({"valid": False, "error": str(e)}))
            raise typer.Exit(2) from None
        fail(str(e))
    wf = plan.workflow
    if as_json:
        print(json.dumps({"valid": True, "name": wf.name, "execution_order":
                          wf.execution_order, "agents": [a.id for a in wf.agents]}))
        return
    out.print(styled(("valid", "green"),
                     f": {wf.name} ({wf.execution_order}, {len(wf.agents)} agents)"))


@executions_app.command("list")
def list_executions(status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
                    limit: int = 50, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Recent executions, newest first."""
    if status is not None and status not in STATUSES:
        fail(f"--status must be one of {', '.join(STATUSES)}, got {status!r}")

    async def go() -> Any:
        async with open_store(db) as store:
            return await store.list_executions(status=status, limit=limit)

    rows = run_async(go())
    if as_json:
        print(json.dumps([{k: getattr(r, k) for k in ("id", "workflow_name", "status",
                                                        "decision", "failed_agent",
                                                        "failure_type", "created_at",
                                                        "finished_at")}
                          for r in rows], default=str))
        return
    table = Table(title="executions")
    # Ids are never cut (they are copied into resume, review, show): the other columns wrap.
    table.add_column("id", no_wrap=True, min_width=max((len(r.id) for r in rows), default=2))
    for col in ("workflow", "status", "decision", "created", "failed agent"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r.id, r.workflow_name, _status(r), str(r.decision or ""),
                      when(r.created_at), r.failed_agent or "")
    out.print(table)
    if any(orphaned(r.status, r.lease_owner, r.lease_expires_at) for r in rows):
        out.print("orphaned: its process is gone (killed, or its lease expired); take it over "
                  "with: omium resume ID", soft_wrap=True)


def _status(rec: Any) -> str:
    if orphaned(rec.status, rec.lease_owner, rec.lease_expires_at):
        return f"{rec.status} (orphaned)"
    if rec.failure_type == INTERRUPTED:
        return f"{rec.status} (interrupted)"
    return str(rec.status)


@executions_app.command("cancel")
def cancel_execution(execution_id: str, db: DbOption = None, as_json: JsonOption = False
                     ) -> None:
    """Cancel an execution: at once unless a worker runs it (then at its next heartbeat)."""

    async def go() -> str:
        async with open_store(db) as store:  # the service's own cancel, any tenant's
            return await commands.cancel(store, execution_id)

    status = run_async(go())  # unknown or ended: exit 2
    if as_json:
        print(json.dumps({"execution_id": execution_id, "status": status}))
    else:
        out.print(f"{execution_id}: {status}", highlight=False)


@executions_app.command("show")
def show_execution(execution_id: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """One execution: checkpoints, handoffs, votes and events."""

    async def go() -> Any:
        async with open_store(db) as store:
            rec = await store.get_execution(execution_id)
            if rec is None:
                return None
            return (rec, await store.get_checkpoints(execution_id, include_superseded=True),
                    await store.get_handoffs(execution_id),
                    await store.get_consensus(execution_id),
                    await store.get_events(execution_id),
                    await store.usage_records(execution_id=execution_id))

    found = run_async(go())
    if found is None:
        fail(f"no execution with id {execution_id!r}")
    rec, cps, handoffs, votes, events, usage_rows = found
    if as_json:
        print(json.dumps({"execution": asdict(rec), "checkpoints": [asdict(c) for c in cps],
                          "handoffs": [asdict(h) for h in handoffs],
                          "consensus": [asdict(v) for v in votes],
                          "events": [asdict(e) for e in events],
                          "usage": [asdict(u) for u in usage_rows]}, default=str))
        return
    out.print(styled((rec.id, "bold"), f" {rec.workflow_name}: {_status(rec)}"
                     + (f", decision {rec.decision}" if rec.decision is not None else "")
                     + (f"\nfailed agent {rec.failed_agent} ({rec.failure_type}): {rec.error}"
                        if rec.failed_agent else f"\n{rec.error}" if rec.error else "")),
              soft_wrap=True)
    if orphaned(rec.status, rec.lease_owner, rec.lease_expires_at):
        out.print(f"orphaned: {rec.lease_owner} stopped renewing its lease (killed?); take it "
                  f"over with: omium resume {rec.id}", soft_wrap=True)
    _show_tables(cps, handoffs, votes, events)
    for u in usage_rows:
        out.print(f"LLM call by {u.agent_id}: {u.backend}/{u.model} ({u.model_type}"
                  f"{', fallback' if u.used_fallback else ''}), {u.prompt_tokens} + "
                  f"{u.completion_tokens} tokens{' (estimated)' if u.estimated else ''}, "
                  f"${nano_to_dollars(u.cost_nano)}", highlight=False)


def _show_tables(cps: list[Any], handoffs: list[Any], votes: list[Any],
                 events: list[Any]) -> None:
    t = Table(title="checkpoints")
    for col in ("agent", "attempt", "duration", "served by", "output"):
        t.add_column(col, overflow="fold")
    for c in cps:
        name = c.agent_id + (" (superseded)" if c.superseded else "")
        t.add_row(name, str(c.attempt), f"{(c.finished_at - c.started_at) * 1000:.1f} ms",
                  c.served_by or "", preview(c.output))
    out.print(t)
    if handoffs:
        t = Table(title="handoffs")
        for col in ("from", "to", "status", "acks", "latency"):
            t.add_column(col, overflow="fold")
        for h in handoffs:
            acks = ", ".join(f"{k}={'yes' if v['ack'] else 'no'}"
                             + (f" ({v['reason']})" if v.get("reason") else "")
                             for k, v in h.acks.items())
            t.add_row(h.from_agent, ", ".join(h.to_agents),
                      h.status + (f" ({h.reason})" if h.reason else ""),
                      acks or (h.error or ""), f"{h.latency_ms:.2f} ms")
        out.print(t)
    for v in votes:
        out.print(f"vote {v.node_id}: {v.outcome}, decision {v.decision!r}, agreement "
                  f"{v.agreement_level:.0%}, votes {v.result['votes']}"
                  + (f", reviewed: {v.reviewed_decision}" if v.reviewed_decision else ""),
                  highlight=False)
    if events:
        t = Table(title="events")
        for col in ("time", "type", "agent", "data"):
            t.add_column(col, overflow="fold")
        for e in events:
            t.add_row(when(e.ts), e.type, e.agent_id or "", preview(e.data, 80))
        out.print(t)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; resume with omium resume ID")
        sys.exit(130)


if __name__ == "__main__":
    main()

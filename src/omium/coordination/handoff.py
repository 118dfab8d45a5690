"""The handoff protocol: validate against the receiver's schema, collect acks, require a
majority, then apply. Every handoff can be stored with its acks, reasons and latency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from omium.agents.base import ACCEPT, Ack, Agent, AgentContext, contained
from omium.errors import AgentCrashedError, HandoffValidationError
from omium.schemas import first_error
from omium.store.records import HandoffRecord

if TYPE_CHECKING:
    from omium.store.base import ExecutionStore


@dataclass
class HandoffResult:
    status: Literal["success", "failed"]
    acks: dict[str, bool] = field(default_factory=dict)
    reasons: dict[str, str | None] = field(default_factory=dict)
    agents_applied: int = 0
    reason: str | None = None  # "validation_error" | "no_consensus" when failed
    error: str | None = None
    latency_ms: float = 0.0
    # What each receiver was given once applied (its input); empty unless status is success.
    delivered: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "success"


class HandoffProtocol:
    """Hand data from one agent to others with verification.

    ``receivers`` maps agent ids to agents whose ``accept`` hook may refuse; a receiver known
    only by id accepts valid data. An ack slower than ``timeout_s`` counts as a refusal.
    With a ``store``, every handoff (successful or not) is written as it happens.
    """

    def __init__(self, store: ExecutionStore | None = None, *, timeout_s: float = 30.0,
                 receivers: Mapping[str, Agent] | None = None) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.receivers: Mapping[str, Agent] = receivers or {}

    async def initiate_handoff(self, execution_id: str, from_agent_id: str,
                               to_agent_ids: Sequence[str], data: Any,
                               required_schema: dict[str, Any] | None = None, *,
                               receivers: Mapping[str, Agent] | None = None,
                               timeout_s: float | None = None,
                               persist: bool = True) -> HandoffResult:
        """Validate, ask for acks, require a majority (> half), apply.

        Raises ``HandoffValidationError`` (a ``jsonschema.ValidationError``) for invalid data,
        after storing the failed handoff; nothing is applied. No majority returns a failed
        result with reason ``no_consensus``. ``persist=False`` leaves storing to the caller
        (the executor batches the record with the receiver's checkpoint).
        """
        started = time.perf_counter()
        to_ids = list(to_agent_ids)
        if required_schema is not None and (err := first_error(required_schema, data)):
            error = HandoffValidationError.from_error(err, receiver=",".join(to_ids))
            result = HandoffResult("failed", reason="validation_error", error=str(error),
                                   latency_ms=_ms_since(started))
            await self._persist(self.record(execution_id, from_agent_id, to_ids, result))
            raise error
        acks = await self._collect_acks(execution_id, to_ids, data, receivers or self.receivers,
                                        timeout_s or self.timeout_s)
        granted = sum(1 for a in acks.values() if a.accepted)
        result = HandoffResult(
            "success" if granted * 2 > len(to_ids) else "failed",
            acks={k: a.accepted for k, a in acks.items()},
            reasons={k: a.reason for k, a in acks.items()},
        )
        if result.ok:
            # Apply: every receiver gets the data, refusers included, as the majority decided.
            result.delivered = dict.fromkeys(to_ids, data)
            result.agents_applied = len(to_ids)
        else:
            result.reason = "no_consensus"
            result.error = f"{granted}/{len(to_ids)} receivers acknowledged"
        result.latency_ms = _ms_since(started)
        if persist:
            await self._persist(self.record(execution_id, from_agent_id, to_ids, result))
        return result

    async def _collect_acks(self, execution_id: str, to_ids: list[str], data: Any,
                            receivers: Mapping[str, Agent], timeout_s: float) -> dict[str, Ack]:
        acks: dict[str, Ack] = {}
        asking: dict[str, asyncio.Task[Ack]] = {}
        for agent_id in to_ids:
            agent = receivers.get(agent_id)
            if agent is None or not agent.has_accept_hook:
                acks[agent_id] = ACCEPT  # nothing to ask: valid data is accepted
                continue
            ctx = AgentContext(execution_id=execution_id, agent_id=agent_id, attempt=1)
            # contained: a hook's SystemExit is a refusal, not the end of the process.
            asking[agent_id] = asyncio.ensure_future(
                asyncio.wait_for(contained(agent.accept(data, ctx)), timeout_s))
        for agent_id, task in asking.items():
            try:
                acks[agent_id] = await task
            except TimeoutError:
                acks[agent_id] = Ack(False, f"no ack within {timeout_s:g}s")
            except Exception as err:  # a crashing hook refuses; it must not break the handoff
                what = str(err) if isinstance(err, AgentCrashedError) else (
                    f"{type(err).__name__}: {err}")
                acks[agent_id] = Ack(False, f"accept hook raised {what}")
        return {k: acks[k] for k in to_ids}

    @staticmethod
    def record(execution_id: str, from_agent: str, to_ids: list[str],
               result: HandoffResult) -> HandoffRecord:
        return HandoffRecord(
            execution_id=execution_id, from_agent=from_agent, to_agents=to_ids,
            status=result.status,
            acks={k: {"ack": v, "reason": result.reasons.get(k)} for k, v in result.acks.items()},
            reason=result.reason, error=result.error, latency_ms=result.latency_ms,
            created_at=time.time())

    async def _persist(self, record: HandoffRecord) -> None:
        if self.store is not None:
            await self.store.add_handoffs([record])


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000

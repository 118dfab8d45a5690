"""Consensus over parallel agents' answers: majority, unanimous, threshold, weighted."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from omium.workflow.model import ConsensusSpec

Outcome = Literal["approved", "manual_review", "failed"]


@dataclass
class ConsensusResult:
    strategy: str
    field: str | None
    decision: Any
    agreement_level: float  # share of all agents (abstainers included) behind the decision
    votes: dict[str, Any]  # agent id -> its answer
    dissenters: list[str]
    abstentions: dict[str, str]  # agent id -> why it did not vote
    outcome: Outcome  # approved when the rule is met, else on_disagreement's choice
    rule: str = ""
    mean: float | None = None
    reviewed_by: str | None = None  # set on the stored vote once a human decided it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key(value: Any) -> str:
    # Answers are compared by canonical JSON so dicts/lists vote like scalars.
    return json.dumps(value, sort_keys=True, default=str)


def _pick_field(spec: ConsensusSpec | None, outputs: Mapping[str, Any]) -> str | None:
    if spec is not None and spec.field is not None:
        return spec.field
    # No field named: compare "decision" when every answer has one, else whole outputs.
    has = [isinstance(o, dict) and "decision" in o for o in outputs.values()]
    return "decision" if has and all(has) else None


def decide(outputs: Mapping[str, Any], failures: Mapping[str, str],
           spec: ConsensusSpec | None = None) -> ConsensusResult:
    """Reduce ``outputs`` (agent id -> output) to a decision; ``failures`` are abstentions."""
    spec = spec or ConsensusSpec()
    fld = _pick_field(spec, outputs)
    abstentions = dict(failures)
    votes: dict[str, Any] = {}
    for agent_id, out in outputs.items():
        if fld is None:
            votes[agent_id] = out
        elif isinstance(out, dict) and fld in out:
            votes[agent_id] = out[fld]
        else:
            abstentions[agent_id] = f"output has no field {fld!r}"
    voters = list(outputs) + [a for a in failures if a not in outputs]
    if spec.strategy == "threshold":
        return _threshold(spec, fld, votes, abstentions, voters)
    weight = {a: (spec.weights.get(a, 1.0) if spec.strategy == "weighted" else 1.0)
              for a in voters}
    tally: Counter[str] = Counter()
    first: dict[str, Any] = {}
    for agent_id, value in votes.items():
        k = _key(value)
        tally[k] += weight[agent_id]
        first.setdefault(k, value)
    total = sum(weight.values()) or 1.0
    ranked = tally.most_common(2)
    tie = len(ranked) == 2 and ranked[0][1] == ranked[1][1]
    top = None if not ranked or tie else ranked[0][0]
    decision = first[top] if top is not None else None
    level = (tally[top] / total) if top is not None else (ranked[0][1] / total if ranked else 0.0)
    if spec.strategy == "unanimous":
        met, rule = top is not None and level == 1.0, "all agents agree"
    else:
        met, rule = top is not None and level > spec.threshold, f"agreement > {spec.threshold:g}"
    dissenters = [a for a, v in votes.items() if top is None or _key(v) != top]
    return ConsensusResult(spec.strategy, fld, decision, round(level, 6), votes, dissenters,
                           abstentions, "approved" if met else _disagree(spec), rule)


def _threshold(spec: ConsensusSpec, fld: str | None, votes: dict[str, Any],
               abstentions: dict[str, str], voters: list[str]) -> ConsensusResult:
    numeric: dict[str, float] = {}
    for agent_id, value in votes.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            abstentions[agent_id] = f"{fld} is not a number: {value!r}"
        else:
            numeric[agent_id] = float(value)
    cutoff = float(spec.cutoff or 0.0)
    if not numeric:
        return ConsensusResult("threshold", fld, None, 0.0, {}, [], abstentions,
                               _disagree(spec), f"mean >= {cutoff:g}")
    mean = sum(numeric.values()) / len(numeric)
    above = mean >= cutoff
    same_side = [a for a, v in numeric.items() if (v >= cutoff) == above]
    level = len(same_side) / (len(voters) or 1)
    met = level > spec.threshold
    return ConsensusResult("threshold", fld, spec.above if above else spec.below,
                           round(level, 6), dict(numeric),
                           [a for a in numeric if a not in same_side], abstentions,
                           "approved" if met else _disagree(spec),
                           f"mean >= {cutoff:g}; agreement > {spec.threshold:g}",
                           mean=round(mean, 6))


def _disagree(spec: ConsensusSpec) -> Outcome:
    return "manual_review" if spec.on_disagreement == "manual_review" else "failed"

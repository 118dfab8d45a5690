"""What the three teams share: how sources are shown to a model, what it is asked to answer,
and how its answer is read as a vote.

Every team ends in one word in ``final`` (``supported``, ``unsupported`` or ``undecided``): the
field AutoGen's output gives its last message in, so the vote reads the same field from all
three. A model is asked for JSON (``{"final": ..., "reason": ...}``); a small local model often
answers in prose instead, so prose is read too (negations first: "unsupported" contains
"supported").
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

Final = Literal["supported", "unsupported", "undecided"]
ANSWER_FORMAT = ('Answer with JSON only: {"final": "supported" or "unsupported", '
                 '"reason": "one sentence"}.')
_NO = re.compile(r"\b(unsupported|not supported|refuted|false|no)\b", re.IGNORECASE)
_YES = re.compile(r"\b(supported|true|yes)\b", re.IGNORECASE)
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def sources_text(sources: list[dict[str, Any]]) -> str:
    """One line per source: ``[n] title: text``."""
    return "\n".join(f"[{i}] {s.get('title', '')}: {s.get('text', '')}"
                     for i, s in enumerate(sources, 1))


def read_verdict(reply: str) -> tuple[Final, str]:
    """``(final, reason)`` from a model's reply: its JSON when it has some, else its words."""
    if (found := _OBJECT.search(reply)) is not None:
        try:
            data = json.loads(found.group(0))
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and data.get("final") in ("supported", "unsupported"):
            return data["final"], str(data.get("reason", ""))
    if _NO.search(reply):
        return "unsupported", reply.strip()
    if _YES.search(reply):
        return "supported", reply.strip()
    return "undecided", reply.strip()

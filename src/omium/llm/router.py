"""Local-first routing with a circuit breaker per backend, fallback, and exact billing.

A connection error, timeout, 5xx or 429 is the backend's failure: it counts against its
circuit and the next backend is tried. Any other 4xx is the request's fault: it goes back to
the caller (``LLMRequestError``) without fallback and does not count against the backend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from omium import metrics
from omium.aio import shielded
from omium.errors import AllBackendsFailedError, LLMRequestError, NoLLMBackendError
from omium.ids import random_hex
from omium.llm.backend import Backend, BackendFailure, Completion, OnChunk, carries_output
from omium.llm.breaker import STATE_VALUE, CircuitBreaker
from omium.llm.config import SETUP_HINT, BackendConfig, LLMConfig
from omium.llm.pricing import ModelPrice, Usage
from omium.llm.tokens import count_messages, count_tokens

if TYPE_CHECKING:
    from omium.billing.ledger import CreditHold, Ledger

# Added to a call's timeouts for how long its hold on the balance lives (see billing.ledger):
# time queued for a connection, and streams that keep the socket busy past one read timeout.
HOLD_MARGIN_S = 300.0


@dataclass
class LLMResult:
    text: str
    backend: str
    model: str
    model_type: str  # local | hosted
    used_fallback: bool  # served by a backend other than the first candidate
    latency_ms: float
    usage: Usage
    cost: Decimal  # dollars, exact
    idempotency_key: str | None  # the usage record's key (None when nothing is billed)
    errors: dict[str, str] = field(default_factory=dict)  # backends passed over, and why
    billed: bool = False
    # The server's whole JSON answer (tool calls, finish reasons, logprobs: what the gateway
    # hands its clients); None for a streamed answer, which went out chunk by chunk.
    raw: dict[str, Any] | None = None
    raw_body: bytes | None = None  # ``raw`` as the server's bytes


class _Metrics:
    def __init__(self, backend: str, model: str) -> None:
        self.latency = metrics.llm_inference_latency.labels(model)
        self.cost = metrics.llm_cost.labels(model)
        self.prompt_tokens = metrics.llm_tokens.labels(model, "prompt")
        self.completion_tokens = metrics.llm_tokens.labels(model, "completion")
        self.fallbacks = metrics.llm_fallbacks.labels(backend)
        self.circuit = metrics.llm_circuit_state.labels(backend)
        self.circuit.set(0)


@dataclass
class BackendStats:
    calls: int = 0
    successes: int = 0
    failures: int = 0
    last_latency_ms: float | None = None
    last_error: str | None = None


class LLMRouter:
    def __init__(self, config: LLMConfig | list[BackendConfig], *, ledger: Ledger | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config if isinstance(config, LLMConfig) else LLMConfig(backends=config)
        self.config.check()
        self.ledger = ledger
        self.backends = [Backend(b) for b in self.config.ordered()]
        circuit = self.config.circuit
        self.breakers = {b.name: CircuitBreaker(circuit.failure_threshold, circuit.cooldown_s,
                                                clock) for b in self.backends}
        self.stats = {b.name: BackendStats() for b in self.backends}
        self._prices = {b.name: self._price(b.cfg) for b in self.backends}
        # Labelled metric children, looked up once: .labels() per call was the largest part
        # of the router's own overhead.
        self._metrics = {b.name: _Metrics(b.name, b.cfg.model) for b in self.backends}

    def _price(self, cfg: BackendConfig) -> ModelPrice:
        price = self.config.prices.price_for(cfg.model, cfg.kind)
        assert price is not None  # config.check() guarantees it
        return price

    async def aclose(self) -> None:
        await asyncio.gather(*(b.close() for b in self.backends))

    async def __aenter__(self) -> LLMRouter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- public calls
    async def chat(self, messages: list[dict[str, Any]], *, model: str | None = None,
                   max_tokens: int | None = None, temperature: float | None = None,
                   stream: bool = False, on_delta: Callable[[str], None] | None = None,
                   on_chunk: OnChunk | None = None,
                   tenant_id: str = "local", execution_id: str | None = None,
                   agent_id: str | None = None, idempotency_key: str | None = None,
                   extra: dict[str, Any] | None = None) -> LLMResult:
        """A chat completion from the first backend that can serve it. Streaming,
        ``on_delta`` gets each piece of text and ``on_chunk`` each chunk as the server sent
        it; ``extra`` is merged into the request body as it is."""
        body: dict[str, Any] = {"messages": messages, **(extra or {})}
        return await self._route("/chat/completions", body, model=model, max_tokens=max_tokens,
                                 temperature=temperature, stream=stream, on_delta=on_delta,
                                 on_chunk=on_chunk, tenant_id=tenant_id,
                                 execution_id=execution_id, agent_id=agent_id,
                                 idempotency_key=idempotency_key,
                                 prompt_text=lambda: count_messages(messages))

    async def complete(self, prompt: str | list[Any], **kwargs: Any) -> LLMResult:
        """A text completion (``/v1/completions``; ``prompt`` a string or OpenAI's list of
        them); same keywords as ``chat``."""
        extra = kwargs.pop("extra", None) or {}
        text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        return await self._route("/completions", {"prompt": prompt, **extra},
                                 prompt_text=lambda: count_tokens(text), **kwargs)

    # -- routing
    def candidates(self, model: str | None) -> list[Backend]:
        if not self.backends:
            raise NoLLMBackendError(f"no LLM backend is configured; {SETUP_HINT}")
        if model is None:
            return self.backends
        found = [b for b in self.backends if b.cfg.serves(model)]
        if not found:
            raise LLMRequestError(f"no backend serves model {model!r}", backend="router",
                                  status=404)
        return found

    async def _route(self, path: str, body: dict[str, Any], *, prompt_text: Callable[[], int],
                     model: str | None = None, max_tokens: int | None = None,
                     temperature: float | None = None, stream: bool = False,
                     on_delta: Callable[[str], None] | None = None,
                     on_chunk: OnChunk | None = None, tenant_id: str = "local",
                     execution_id: str | None = None, agent_id: str | None = None,
                     idempotency_key: str | None = None) -> LLMResult:
        backends = self.candidates(model)
        hold: CreditHold | None = None
        if self.ledger is not None and not self.ledger.known_unlimited(tenant_id):
            # Refuse before sending: the estimate assumes the dearest backend that may serve,
            # and is held off the balance until the call is settled, so parallel calls cannot
            # all spend the same credit.
            est = _rough_tokens(body)
            completion = max_tokens or body.get("max_completion_tokens") or 512
            if not isinstance(completion, int):  # the backend will refuse it: hold the default
                completion = 512
            worst = max(self._prices[b.name].cost(est, completion) for b in backends)
            ttl = HOLD_MARGIN_S + sum(b.cfg.connect_timeout_s + b.cfg.read_timeout_s
                                      for b in backends)
            hold = await self.ledger.reserve(tenant_id, worst, ttl)
        try:
            return await self._send(path, body, backends, max_tokens, temperature, stream,
                                    (on_delta, on_chunk), tenant_id, execution_id, agent_id,
                                    idempotency_key, prompt_text, hold)
        except BaseException:
            # Failed, refused by the backend, cancelled: nothing is owed, give it all back
            # (a no-op if the settle got through before a cancel landed).
            if hold is not None and self.ledger is not None:
                await asyncio.shield(self.ledger.release(hold))
            raise

    async def _send(self, path: str, body: dict[str, Any], backends: list[Backend],
                    max_tokens: int | None, temperature: float | None, stream: bool,
                    callbacks: tuple[Callable[[str], None] | None, OnChunk | None],
                    tenant_id: str,
                    execution_id: str | None, agent_id: str | None,
                    idempotency_key: str | None, prompt_text: Callable[[], int],
                    hold: CreditHold | None) -> LLMResult:
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        errors: dict[str, str] = {}
        emitted = False
        on_delta, on_chunk = callbacks
        if on_delta is not None:
            user_delta = on_delta

            def on_delta(piece: str) -> None:
                nonlocal emitted
                emitted = True
                user_delta(piece)
        if on_chunk is not None:
            user_chunk = on_chunk

            def on_chunk(chunk: dict[str, Any]) -> None:
                nonlocal emitted
                emitted = emitted or carries_output(chunk)
                user_chunk(chunk)

        for position, backend in enumerate(backends):
            breaker = self.breakers[backend.name]
            if not breaker.allow():
                errors[backend.name] = f"circuit open (retry in {breaker.retry_in_s:.0f}s)"
                continue
            completion = await self._try(backend, breaker, path, {**body,
                                                                 "model": backend.cfg.model},
                                         (on_delta, on_chunk), errors)
            if completion is None:
                if emitted:  # the caller has part of an answer: another backend would repeat it
                    raise AllBackendsFailedError({**errors, "router": "stream broke mid-answer"})
                if position + 1 < len(backends):
                    self._metrics[backend.name].fallbacks.inc()
                continue
            return await self._settle(backend, completion, position > 0, errors, tenant_id,
                                      execution_id, agent_id, idempotency_key, prompt_text,
                                      hold)
        if self.ledger is not None:
            await self.ledger.record_failure("*", "all_failed", "; ".join(
                f"{k}: {v}" for k, v in errors.items()), tenant_id)
        raise AllBackendsFailedError(errors)

    async def _try(self, backend: Backend, breaker: CircuitBreaker, path: str,
                   body: dict[str, Any],
                   callbacks: tuple[Callable[[str], None] | None, OnChunk | None],
                   errors: dict[str, str]) -> tuple[Completion, float] | None:
        stats = self.stats[backend.name]
        stats.calls += 1
        started = time.perf_counter()
        try:
            completion = await backend.request(path, body, *callbacks)
        except BackendFailure as err:
            breaker.record_failure()
            stats.failures += 1
            stats.last_error = errors[backend.name] = f"{err.kind}: {err}"
            metrics.llm_backend_failures.labels(backend.name, err.kind).inc()
            self._metrics[backend.name].circuit.set(STATE_VALUE[breaker.state])
            if self.ledger is not None:
                await self.ledger.record_failure(backend.name, err.kind, str(err), None)
            return None
        except LLMRequestError:
            breaker.record_success()  # the backend answered: it is alive
            raise
        except BaseException:
            breaker.release()
            raise
        latency = time.perf_counter() - started
        breaker.record_success()
        stats.successes += 1
        stats.last_latency_ms = latency * 1000
        if breaker.state != "closed" or stats.failures:
            self._metrics[backend.name].circuit.set(0)
        return completion, latency

    async def _settle(self, backend: Backend, done: tuple[Completion, float], fallback: bool,
                      errors: dict[str, str], tenant_id: str, execution_id: str | None,
                      agent_id: str | None, idempotency_key: str | None,
                      prompt_text: Callable[[], int], hold: CreditHold | None) -> LLMResult:
        completion, latency = done
        usage = completion.usage
        if usage is None:  # the server reported nothing: count, and say it was counted
            usage = Usage(prompt_text(), count_tokens(completion.text), 0, estimated=True)
        cost = self._prices[backend.name].cost(usage.prompt_tokens, usage.completion_tokens,
                                               usage.cached_tokens)
        if idempotency_key is None and self.ledger is not None:
            idempotency_key = random_hex()  # only billing needs one
        result = LLMResult(completion.text, backend.name, completion.model, backend.cfg.kind,
                           fallback, latency * 1000, usage, cost, idempotency_key, errors,
                           raw=completion.raw, raw_body=completion.body)
        model = backend.cfg.model
        m = self._metrics[backend.name]
        m.latency.observe(latency)
        m.cost.inc(float(cost))
        m.prompt_tokens.inc(usage.prompt_tokens)
        m.completion_tokens.inc(usage.completion_tokens)
        if self.ledger is not None:
            assert idempotency_key is not None
            # Shielded: tokens were spent, so a timeout or cancel of the caller must not roll
            # the charge back half-way (PostgreSQL would abandon the transaction). With a hold,
            # the same transaction gives back what was held beyond the cost.
            result.billed = await shielded(self.ledger.settle_call(
                hold, idempotency_key=idempotency_key, tenant_id=tenant_id,
                backend=backend.name, model=model, model_type=backend.cfg.kind,
                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens, estimated=usage.estimated, cost=cost,
                latency_ms=result.latency_ms, used_fallback=fallback,
                execution_id=execution_id, agent_id=agent_id))
        return result


def _rough_tokens(body: dict[str, Any]) -> int:
    """An upper-leaning token estimate for budget checks (~3 characters per token)."""
    if "messages" in body:
        chars = sum(len(str(m.get("content") or "")) + 8 for m in body["messages"])
    else:
        chars = len(str(body.get("prompt") or ""))
    return chars // 3 + 1

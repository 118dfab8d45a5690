"""The router through real sockets against the project's fake OpenAI-compatible servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from omium.errors import AllBackendsFailedError, LLMConfigError, LLMRequestError
from omium.llm import BackendConfig, LLMConfig, LLMRouter, parse_config
from omium.testing.fake_server import Behaviour, FakeOpenAIServer

MSG = [{"role": "user", "content": "is this applicant ok"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def local() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(model="smollm2") as server:
        yield server


@pytest.fixture
async def hosted() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(model="gpt-3.5-turbo") as server:
        yield server


def config(local: FakeOpenAIServer, hosted: FakeOpenAIServer, **circuit: float) -> LLMConfig:
    return parse_config({
        "backends": [
            {"name": "openai", "base_url": hosted.base_url, "model": "gpt-3.5-turbo",
             "kind": "hosted", "priority": 10},
            {"name": "local", "base_url": local.base_url, "model": "smollm2",
             "read_timeout_s": 0.3},
        ],
        "circuit": {"failure_threshold": 3, "cooldown_s": 60, **circuit}})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def router(local: FakeOpenAIServer, hosted: FakeOpenAIServer,
                 clock: Clock) -> AsyncIterator[LLMRouter]:
    async with LLMRouter(config(local, hosted), clock=clock) as r:
        yield r


async def test_local_first_with_usage_cost_and_latency(router: LLMRouter,
                                                       local: FakeOpenAIServer,
                                                       hosted: FakeOpenAIServer) -> None:
    result = await router.chat([{"role": "user", "content": "hello #usage=12/30"}])
    assert (result.backend, result.model_type, result.used_fallback) == ("local", "local", False)
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (12, 30)
    assert result.cost == Decimal("0.001")  # local: flat per inference
    assert result.latency_ms > 0 and (local.count, hosted.count) == (1, 0)
    assert local.requests[0]["model"] == "smollm2"


@pytest.mark.parametrize("failure", ["#fail", "#status=429", "#close", "#stall"])
async def test_backend_failures_fall_back_to_hosted(router: LLMRouter, local: FakeOpenAIServer,
                                                    hosted: FakeOpenAIServer,
                                                    failure: str) -> None:
    local.default = Behaviour(kind={"#fail": "fail", "#status=429": "fail", "#close": "close",
                                    "#stall": "stall"}[failure],
                              status=429 if "429" in failure else 500, stall_s=2)
    result = await router.chat([{"role": "user", "content": "hi #usage=10/20"}])
    assert (result.backend, result.used_fallback) == ("openai", True)
    assert "local" in result.errors
    # gpt-3.5-turbo: 10 * 0.0005/1K + 20 * 0.0015/1K, exactly
    assert result.cost == Decimal("0.000035")
    assert hosted.count == 1


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_request_errors_are_returned_without_fallback(router: LLMRouter,
                                                            local: FakeOpenAIServer,
                                                            hosted: FakeOpenAIServer,
                                                            status: int) -> None:
    local.default = Behaviour(kind="fail", status=status)
    with pytest.raises(LLMRequestError) as err:
        await router.chat(MSG)
    assert err.value.status == status and err.value.backend == "local"
    assert hosted.count == 0
    assert router.breakers["local"].consecutive_failures == 0


async def test_circuit_opens_after_three_failures_and_probes_once(
        router: LLMRouter, local: FakeOpenAIServer, hosted: FakeOpenAIServer,
        clock: Clock) -> None:
    local.default = Behaviour(kind="fail")
    for _ in range(3):
        assert (await router.chat(MSG)).backend == "openai"
    assert router.breakers["local"].state == "open" and local.count == 3
    result = await router.chat(MSG)  # the fourth never touches the local server
    assert (result.backend, local.count) == ("openai", 3)
    assert "circuit open" in result.errors["local"]
    local.health_status = 200  # its /health says fine: that must not close the circuit
    clock.now += 59
    await router.chat(MSG)
    assert local.count == 3
    clock.now += 2  # cooldown over: exactly one probe goes through
    await router.chat(MSG)
    await router.chat(MSG)
    assert local.count == 4 and router.breakers["local"].state == "open"
    clock.now += 61
    local.default = Behaviour()  # recovered
    assert (await router.chat(MSG)).backend == "local"
    assert router.breakers["local"].state == "closed"


async def test_concurrent_calls_during_half_open_send_a_single_probe(
        router: LLMRouter, local: FakeOpenAIServer, clock: Clock) -> None:
    import asyncio

    local.default = Behaviour(kind="fail")
    for _ in range(3):
        await router.chat(MSG)
    clock.now += 61
    local.default = Behaviour(delay_s=0.1)
    results = await asyncio.gather(*(router.chat(MSG) for _ in range(10)))
    assert local.count == 4
    assert sum(r.backend == "local" for r in results) == 1


async def test_all_backends_down_lists_each_error(router: LLMRouter, local: FakeOpenAIServer,
                                                  hosted: FakeOpenAIServer) -> None:
    local.default = Behaviour(kind="fail", status=503)
    hosted.default = Behaviour(kind="close")
    with pytest.raises(AllBackendsFailedError) as err:
        await router.chat(MSG)
    assert set(err.value.errors) == {"local", "openai"}
    assert "503" in err.value.errors["local"] and "connection" in err.value.errors["openai"]


async def test_missing_usage_is_counted_and_flagged(router: LLMRouter) -> None:
    result = await router.chat([{"role": "user", "content": "count me #no-usage"}])
    assert result.usage.estimated and result.usage.prompt_tokens > 0
    assert result.usage.completion_tokens > 0


async def test_streaming_collects_deltas_and_usage(router: LLMRouter,
                                                   local: FakeOpenAIServer) -> None:
    pieces: list[str] = []
    result = await router.chat([{"role": "user", "content": "stream it #usage=7/9"}],
                               stream=True, on_delta=pieces.append)
    assert "".join(pieces) == result.text and len(pieces) > 1
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 9)
    assert local.requests[0]["stream_options"] == {"include_usage": True}


async def test_completions_endpoint(router: LLMRouter, local: FakeOpenAIServer) -> None:
    result = await router.complete("once upon a time #usage=4/5", max_tokens=5)
    assert result.usage.total_tokens == 9 and local.requests[0]["max_tokens"] == 5


async def test_model_selects_backends(router: LLMRouter, local: FakeOpenAIServer) -> None:
    assert (await router.chat(MSG, model="gpt-3.5-turbo")).backend == "openai"
    with pytest.raises(LLMRequestError):
        await router.chat(MSG, model="no-such-model")


def test_hosted_backend_without_a_price_is_a_config_error() -> None:
    with pytest.raises(LLMConfigError, match=r"backends\[0\] \(x\).model"):
        LLMRouter([BackendConfig(name="x", base_url="http://127.0.0.1:1/v1", model="gpt-9",
                                 kind="hosted")])
    with pytest.raises(LLMConfigError, match="base_url"):
        parse_config({"backends": [{"name": "y", "base_url": "ftp://x", "model": "m"}]})


async def test_metrics_move_with_calls(router: LLMRouter, local: FakeOpenAIServer) -> None:
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {
        "lat": value("omium_llm_inference_latency_seconds_count", model="gpt-3.5-turbo"),
        "cost": value("omium_llm_cost_usd_total", model="gpt-3.5-turbo"),
        "tokens": value("omium_llm_tokens_total", model="gpt-3.5-turbo", type="completion"),
        "fallbacks": value("omium_llm_fallbacks_total", backend="local"),
    }
    local.default = Behaviour(kind="fail")
    for _ in range(3):
        await router.chat([{"role": "user", "content": "x #usage=100/50"}])
    assert value("omium_llm_inference_latency_seconds_count",
                 model="gpt-3.5-turbo") == before["lat"] + 3
    assert value("omium_llm_cost_usd_total", model="gpt-3.5-turbo") == pytest.approx(
        before["cost"] + 3 * 0.000125)
    assert value("omium_llm_tokens_total", model="gpt-3.5-turbo",
                 type="completion") == before["tokens"] + 150
    assert value("omium_llm_fallbacks_total", backend="local") == before["fallbacks"] + 3
    assert value("omium_llm_circuit_state", backend="local") == 2  # open


def test_price_table_file_relative_to_the_config(tmp_path: Path) -> None:
    from omium.llm import load_config

    (tmp_path / "prices.yaml").write_text(
        "models:\n  gpt-4o-mini: {input_per_1k: '0.00015', output_per_1k: '0.0006'}\n"
        "local: {per_call: '0.0002'}\nreference_model: gpt-4o-mini\n")
    (tmp_path / "llm.yaml").write_text(
        "backends:\n  - {name: h, base_url: 'http://127.0.0.1:9/v1', model: gpt-4o-mini,"
        " kind: hosted}\nprices: prices.yaml\n")
    cfg = load_config(tmp_path / "llm.yaml")
    price = cfg.prices.price_for("gpt-4o-mini", "hosted")
    assert price is not None and price.cost(1000, 1000) == Decimal("0.00075")
    assert cfg.prices.local.per_call == Decimal("0.0002")
    (tmp_path / "bad.yaml").write_text("local: {per_call: -1}\n")
    with pytest.raises(LLMConfigError, match="per_call"):
        load_config_with_prices(tmp_path, "bad.yaml")


def load_config_with_prices(folder: Path, prices: str) -> LLMConfig:
    from omium.llm import load_config

    (folder / "cfg.yaml").write_text(f"prices: {prices}\n")
    return load_config(folder / "cfg.yaml")


async def test_a_200_without_an_answer_is_a_backend_failure(hosted: FakeOpenAIServer) -> None:
    from aiohttp import web

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"choices": []})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        cfg = parse_config({"backends": [
            {"name": "local", "base_url": f"http://127.0.0.1:{port}/v1", "model": "m"},
            {"name": "openai", "base_url": hosted.base_url, "model": "gpt-3.5-turbo",
             "kind": "hosted", "priority": 10}]})
        async with LLMRouter(cfg) as router:
            result = await router.chat(MSG)
            assert result.backend == "openai" and "protocol" in result.errors["local"]
            assert router.breakers["local"].consecutive_failures == 1
    finally:
        await runner.cleanup()

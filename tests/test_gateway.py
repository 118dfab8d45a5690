"""The OpenAI-compatible gateway on ``omium serve``: the official ``openai`` client against a
real ``/v1`` over loopback, the project's fake OpenAI servers as backends, billed exactly.

Every call is checked against what the fake server reported: the usage record's tokens, and
its cost to the nano-dollar (hosted calls are priced per token), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI
from openai import AsyncOpenAI

from omium.api import Settings, create_app
from omium.billing import Ledger
from omium.engine.tenants import create_tenant_with_key
from omium.llm.gateway_token import VERIFIED_CACHE, TokenError, TokenSigner, new_secret
from omium.store.base import Store
from omium.testing.fake_server import FakeOpenAIServer
from tests._gateway_util import LOCAL_CALL_NANO, hosted_nano, served, write_llm_config

ADMIN = "admin-secret-for-gateway-tests"
HI = [{"role": "user", "content": "hello there"}]


@dataclass
class Gw:
    url: str  # the API's root; the gateway is url + /v1
    app: FastAPI
    local: FakeOpenAIServer
    hosted: FakeOpenAIServer

    @property
    def store(self) -> Store:
        return self.app.state.store

    def client(self, key: str) -> AsyncOpenAI:
        return AsyncOpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0)

    async def tenant(self, name: str, credits: int | None = 100) -> str:
        """A limited tenant with ``credits`` (None: unlimited); returns its API key."""
        tenant_id, key = await create_tenant_with_key(self.store, name,
                                                      limited=credits is not None)
        if credits:
            await Ledger(self.store).add_credits(tenant_id, credits)
        return key


@pytest.fixture
async def gw(database_url: str, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gw]:
    async with FakeOpenAIServer(model="smollm2") as local, \
            FakeOpenAIServer(model="gpt-3.5-turbo") as hosted:
        monkeypatch.setenv("OMIUM_LLM_CONFIG", str(write_llm_config(
            tmp_path / "omium-llm.yaml", local, hosted, failure_threshold=1, cooldown_s=600)))
        app = create_app(Settings(database_url=database_url, admin_key=ADMIN,
                                  gateway_secret="s" * 32))
        async with served(app) as url:
            yield Gw(url, app, local, hosted)


async def _records(store: Store, tenant_id: str) -> list[Any]:
    return await store.usage_records(tenant_id=tenant_id)


async def test_chat_is_routed_and_billed_to_the_tenant_to_the_nano_dollar(gw: Gw) -> None:
    key = await gw.tenant("acme", credits=100)
    async with gw.client(key) as client:
        local = await client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hi #usage=40/12"}])
        hosted = await client.chat.completions.create(
            model="gpt-3.5-turbo", max_tokens=30,
            messages=[{"role": "user", "content": "hi #usage=1234/567 #reply=fine"}])
    assert local.choices[0].message.content == "echo: hi"
    assert (local.usage.prompt_tokens, local.usage.completion_tokens) == (40, 12)
    assert hosted.choices[0].message.content == "fine"
    assert (hosted.usage.prompt_tokens, hosted.usage.completion_tokens) == (1234, 567)
    assert gw.hosted.requests[-1]["max_tokens"] == 30  # the client's fields reach the backend
    first, second = await _records(gw.store, "acme")
    assert (first.backend, first.prompt_tokens, first.completion_tokens, first.cost_nano) == (
        "local", 40, 12, LOCAL_CALL_NANO)
    assert (second.backend, second.prompt_tokens, second.completion_tokens) == (
        "openai", 1234, 567)
    assert second.cost_nano == hosted_nano(1234, 567) == 1_467_500
    assert (first.execution_id, first.agent_id) == (None, None)
    # The balance fell by exactly the records' sum (100 credits = $1).
    tenant = await gw.store.get_tenant("acme")
    assert tenant is not None
    assert tenant.balance_nano == 10**9 - LOCAL_CALL_NANO - 1_467_500


async def test_completions_and_models(gw: Gw) -> None:
    key = await gw.tenant("acme")
    async with gw.client(key) as client:
        text = await client.completions.create(model="smollm2",
                                               prompt="once upon #usage=7/3")
        models = [m.id async for m in client.models.list()]
        one = await client.models.retrieve("gpt-3.5-turbo")
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("gpt-9")
    assert text.choices[0].text == "echo: once upon"
    assert (text.usage.prompt_tokens, text.usage.completion_tokens) == (7, 3)
    assert gw.local.requests[-1]["prompt"] == "once upon #usage=7/3"
    assert models == ["smollm2", "gpt-3.5-turbo"]  # the router's order: local first
    assert one.id == "gpt-3.5-turbo"
    [record] = await _records(gw.store, "acme")
    assert (record.prompt_tokens, record.completion_tokens) == (7, 3)


async def test_streaming_with_and_without_include_usage(gw: Gw) -> None:
    key = await gw.tenant("acme")
    async with gw.client(key) as client:
        stream = await client.chat.completions.create(
            model="gpt-3.5-turbo", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "tell me a story #usage=321/45"}])
        chunks = [c async for c in stream]
        plain = await client.chat.completions.create(
            model="gpt-3.5-turbo", stream=True,
            messages=[{"role": "user", "content": "again #usage=5/6"}])
        plain_chunks = [c async for c in plain]
        text = await client.completions.create(
            model="smollm2", prompt="stream this #usage=9/2", stream=True,
            stream_options={"include_usage": True})
        text_chunks = [c async for c in text]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "echo: tell me a story"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (321, 45)
    # Not asked for: no usage anywhere, but the call is billed all the same.
    assert all(c.usage is None for c in plain_chunks) and all(c.choices for c in plain_chunks)
    assert "".join(c.choices[0].text for c in text_chunks if c.choices) == "echo: stream this"
    assert text_chunks[-1].usage is not None and text_chunks[-1].usage.prompt_tokens == 9
    records = await _records(gw.store, "acme")
    assert [(r.prompt_tokens, r.completion_tokens, r.cost_nano) for r in records] == [
        (321, 45, hosted_nano(321, 45)), (5, 6, hosted_nano(5, 6)), (9, 2, LOCAL_CALL_NANO)]


async def test_a_server_that_reports_no_usage_is_counted_and_flagged(gw: Gw) -> None:
    key = await gw.tenant("acme")
    async with gw.client(key) as client:
        reply = await client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "count me #no-usage"}])
        stream = await client.chat.completions.create(
            model="smollm2", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "count me too #no-usage"}])
        chunks = [c async for c in stream]
    first, second = await _records(gw.store, "acme")
    assert first.estimated and second.estimated
    assert reply.usage is not None and reply.usage.prompt_tokens == first.prompt_tokens
    assert chunks[-1].usage is not None  # made up by Omium, as billed
    assert chunks[-1].usage.completion_tokens == second.completion_tokens


def _error(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code",
                                                             "param"}, body
    return body["error"]  # type: ignore[no-any-return]


async def test_bad_keys_are_401_in_openai_shape(gw: Gw) -> None:
    async with gw.client("om_not_a_key") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model="smollm2", messages=HI)
    assert caught.value.code == "invalid_api_key"
    async with httpx.AsyncClient(base_url=gw.url) as http:
        missing = await http.post("/v1/chat/completions", json={"model": "smollm2",
                                                                "messages": HI})
        admin = await http.get("/v1/models", headers={"Authorization": f"Bearer {ADMIN}"})
    assert missing.status_code == 401 and _error(missing)["code"] == "invalid_api_key"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert admin.status_code == 403  # an admin key bound to no tenant bills no one
    assert gw.local.count == gw.hosted.count == 0


async def test_a_limited_tenant_without_credits_gets_402_and_nothing_is_sent(gw: Gw) -> None:
    unlimited_key = await gw.tenant("rich", credits=None)
    poor_key = await gw.tenant("poor", credits=0)  # limited, balance 0
    async with gw.client(poor_key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="gpt-3.5-turbo", messages=HI)
        with pytest.raises(openai.APIStatusError) as streamed:
            await client.chat.completions.create(model="gpt-3.5-turbo", messages=HI,
                                                 stream=True)
    assert caught.value.status_code == streamed.value.status_code == 402
    assert caught.value.code == "insufficient_quota"
    assert gw.hosted.count == 0
    async with gw.client(unlimited_key) as client:  # an unlimited tenant is served
        await client.chat.completions.create(model="gpt-3.5-turbo", messages=HI)
    assert gw.hosted.count == 1


async def test_an_unknown_model_is_404(gw: Gw) -> None:
    key = await gw.tenant("acme")
    async with gw.client(key) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="gpt-9", messages=HI)
    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")
    assert gw.local.count == gw.hosted.count == 0
    assert await _records(gw.store, "acme") == []


async def test_all_backends_failing_is_502_then_503_with_open_circuits(gw: Gw) -> None:
    key = await gw.tenant("acme")
    gw.local.script("fail")
    gw.hosted.script("close")
    async with gw.client(key) as client:
        with pytest.raises(openai.InternalServerError) as failed:
            await client.chat.completions.create(model="smollm2", messages=HI)
        assert failed.value.status_code == 502
        assert failed.value.code == "backends_failed"
        # The circuits opened (threshold 1): nothing is tried any more.
        with pytest.raises(openai.InternalServerError) as skipped:
            await client.chat.completions.create(model="smollm2", messages=HI, stream=True)
    assert skipped.value.status_code == 503
    assert skipped.value.code == "backends_unavailable"
    assert await _records(gw.store, "acme") == []
    tenant = await gw.store.get_tenant("acme")
    assert tenant is not None and tenant.balance_nano == 10**9  # every hold given back


@pytest.mark.parametrize("body", [
    b"{not json", b"[1, 2]", b'{"model": "smollm2"}', b'{"messages": []}',
    b'{"model": "smollm2", "messages": "hi"}', b'{"model": 5, "messages": [{"role": "u"}]}',
    b'{"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}',
    b'{"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "stream": "y"}',
    b'{"model": "smollm2", "messages": [{"role": "user", "content": NaN}]}',
    b'{"model": "smollm2", "messages": [{"role": "user"}], "temperature": 9}',
    b"\xff\xfe"])
async def test_a_bad_body_is_400_never_a_traceback(gw: Gw, body: bytes) -> None:
    key = await gw.tenant("acme")
    async with httpx.AsyncClient(base_url=gw.url) as http:
        r = await http.post("/v1/chat/completions", content=body, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert _error(r)["type"] == "invalid_request_error"
    assert gw.local.count == 0


async def test_unknown_paths_methods_and_oversized_bodies(gw: Gw) -> None:
    key = await gw.tenant("acme")
    h = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=gw.url) as http:
        unknown = await http.post("/v1/embeddings", json={}, headers=h)
        method = await http.get("/v1/chat/completions", headers=h)
        big = await http.post("/v1/chat/completions", headers=h, json={
            "model": "smollm2", "messages": [{"role": "user", "content": "x" * (17 << 20)}]})
        api = await http.get("/api/v1/executions", headers=h)  # the REST API is untouched
    assert unknown.status_code == 404 and _error(unknown)["code"] == "unknown_url"
    assert method.status_code == 405
    assert big.status_code == 413 and _error(big)["code"] == "request_too_large"
    assert api.status_code == 200


def _tampered(token: str, **changes: Any) -> str:
    """The token with its payload changed, keeping the signature."""
    prefix, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    raw = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{prefix}.{raw}.{signature}"


def test_a_verified_token_is_cached_but_still_expires_and_altered_ones_are_refused() -> None:
    now = [1000.0]
    signer = TokenSigner(b"k" * 32, clock=lambda: now[0])
    token = signer.mint("acme", "exec-1", "kyc", 1, ttl_s=60)
    first = signer.verify(token)
    assert signer.verify(token) == first  # the second use is served by the cache
    for bad in (_tampered(token, e="exec-2"), token[:-3], token + "x"):
        with pytest.raises(TokenError):
            signer.verify(bad)
    now[0] += 61  # a cached grant expires like any other
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token)
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token)
    # Bounded: many tokens keep at most VERIFIED_CACHE grants, the newest, all still valid.
    many = [signer.mint("acme", f"e{i}", "a", 1, ttl_s=60) for i in range(VERIFIED_CACHE + 5)]
    for t in many:
        signer.verify(t)
    assert len(signer._verified) == VERIFIED_CACHE and many[-1] in signer._verified
    assert signer.verify(many[0]).execution_id == "e0"  # evicted: checked afresh


async def test_an_execution_token_bills_its_execution_and_agent_and_nothing_else(
        gw: Gw) -> None:
    await gw.tenant("acme")
    signer: TokenSigner = gw.app.state.gateway_signer
    token = signer.mint("acme", "exec-1", "kyc", 2, ttl_s=60)
    async with gw.client(token) as client:
        await client.chat.completions.create(
            model="gpt-3.5-turbo", messages=[{"role": "user", "content": "x #usage=11/22"}])
    [record] = await gw.store.usage_records(execution_id="exec-1")
    assert (record.tenant_id, record.agent_id, record.prompt_tokens,
            record.completion_tokens, record.cost_nano) == (
        "acme", "kyc", 11, 22, hosted_nano(11, 22))
    assert record.idempotency_key.startswith("exec-1:kyc:2:gw-")
    refused = {
        "another execution": _tampered(token, e="exec-2"),
        "another agent": _tampered(token, a="fraud"),
        "another tenant": _tampered(token, t="other"),
        "a later expiry": _tampered(token, x=4e9),
        "another deployment's secret": TokenSigner(new_secret()).mint(
            "acme", "exec-1", "kyc", 2, 60),
        "expired": TokenSigner(b"s" * 32, clock=lambda: 0.0).mint("acme", "exec-1", "kyc",
                                                                  2, 60),
        "cut short": token[:-3],
    }
    for why, bad in refused.items():
        async with gw.client(bad) as client:
            with pytest.raises(openai.AuthenticationError) as caught:
                await client.chat.completions.create(model="smollm2", messages=HI)
        assert caught.value.status_code == 401, why
        if why == "expired":
            assert "expired" in str(caught.value)
    assert len(await gw.store.usage_records(tenant_id="acme")) == 1

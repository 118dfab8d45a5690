"""The clients ``bench/router.py`` compares ("variants"), the chat request they all send and
the answer expected from the fake server."""

from __future__ import annotations

import logging
import os
from typing import Any

import aiohttp

from omium.llm import BackendConfig, LLMRouter
from omium.llm.backend import Backend

PROMPT = "Summarise the quarterly report in one line please"
MESSAGES = [{"role": "user", "content": PROMPT}]
EXPECTED = f"echo: {PROMPT}"
LOCAL_MODEL = "fake-model"
HOSTED_MODEL = "gpt-3.5-turbo"  # priced by Omium's default price table
CONCURRENCY = 64


def check(text: str, who: str) -> None:
    if text != EXPECTED:
        raise RuntimeError(f"{who}: unexpected answer {text!r}")


# -- the clients --------------------------------------------------------------------------


class Variant:
    name = "?"

    async def open(self) -> None: ...

    async def call(self) -> str:
        raise NotImplementedError

    async def close(self) -> None: ...


class Direct(Variant):
    """The baseline: a pooled aiohttp session, same connector and timeouts as Omium's."""

    def __init__(self, base_url: str, model: str = LOCAL_MODEL, name: str = "direct") -> None:
        self.url, self.model, self.name = f"{base_url}/chat/completions", model, name
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONCURRENCY, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=60.0),
            headers={"Content-Type": "application/json"})

    async def call(self) -> str:
        assert self.session is not None
        body = {"messages": MESSAGES, "model": self.model}
        async with self.session.post(self.url, json=body) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
            data = await resp.json(content_type=None)
        return data["choices"][0]["message"]["content"]

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class Omium(Variant):
    name = "omium"

    def __init__(self, base_url: str) -> None:
        self.router = LLMRouter([BackendConfig(name="local", base_url=base_url,
                                               model=LOCAL_MODEL, kind="local")])

    async def call(self) -> str:
        return (await self.router.chat(MESSAGES)).text

    async def close(self) -> None:
        await self.router.aclose()


class OmiumBackend(Variant):
    """Omium's ``Backend.request`` alone (no router): splits the router's added cost."""

    name = "omium.backend"

    def __init__(self, base_url: str) -> None:
        self.backend = Backend(BackendConfig(name="local", base_url=base_url, model=LOCAL_MODEL,
                                             kind="local"))

    async def call(self) -> str:
        body = {"messages": MESSAGES, "model": LOCAL_MODEL}
        return (await self.backend.request("/chat/completions", body)).text

    async def close(self) -> None:
        await self.backend.close()


class Httpx(Variant):
    name = "httpx"

    def __init__(self, base_url: str) -> None:
        self.url = f"{base_url}/chat/completions"
        self.client: Any = None

    async def open(self) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=CONCURRENCY,
                                max_keepalive_connections=CONCURRENCY),
            timeout=httpx.Timeout(60.0, connect=2.0))

    async def call(self) -> str:
        resp = await self.client.post(self.url, json={"messages": MESSAGES, "model": LOCAL_MODEL})
        resp.raise_for_status()
        return resp.json()["choices"][0]["message"]["content"]

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


def import_litellm() -> tuple[Any, str]:
    """(module, version) or (None, reason)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    try:
        import litellm
    except ImportError as err:
        return None, f"not installed ({err})"
    except Exception as err:  # a broken install: say why, go on without it
        return None, f"import failed ({type(err).__name__}: {err})"
    litellm.telemetry = False
    litellm.suppress_debug_info = True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from importlib.metadata import version

        return litellm, version("litellm")
    except Exception:
        return litellm, "?"


class LiteLLM(Variant):
    name = "litellm"

    def __init__(self, litellm: Any, base_url: str, model: str) -> None:
        self.litellm = litellm
        self.router = litellm.Router(model_list=[{"model_name": "m", "litellm_params": {
            "model": model, "api_base": base_url, "api_key": "x"}}])

    async def call(self) -> str:
        resp = await self.router.acompletion(model="m", messages=MESSAGES)
        return resp.choices[0].message.content

    async def close(self) -> None:
        closer = getattr(self.litellm, "close_litellm_async_clients", None)
        if closer is not None:
            try:
                await closer()
            except Exception:
                pass

"""The dashboard (issue 12) in a real browser: Playwright drives Debian's ``chromium`` (apt;
Playwright's own browser download is not reachable) against a real ``omium serve`` on SQLite
with in-process workers, one for the whole session. Every test signs in as a tenant of its
own, so none sees another's executions. The tests save screenshots of the pages they check
into $OMIUM_SCREENSHOTS (or a temporary folder), printed once when the first is taken."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests._processes import free_port, wait_http
from tests._serve_process import ADMIN, start_serve, stop_serve
from tests.conftest import PG_ENV, _drop_pg_database, _make_pg_database, _pg_url

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
V1 = "/api/v1"
ECHO = "tests.agents_for_tests:echo"
AGENTS = "tests.browser.dashboard_agents"
# scripts/test.sh writes it once chromium is installed: from then on a missing chromium fails.
MARKER = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
          / "omium" / "chromium-installed")
VIEWPORT = {"width": 1280, "height": 800}
# Auto-waiting assertions: live updates poll every 2 s, workers share 2 cores with the browser.
expect.set_options(timeout=20_000)


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if MARKER.exists():
        pytest.fail(f"chromium is not installed, although it was on this machine before "
                    f"({MARKER} says so): apt-get install chromium, or delete the marker")
    pytest.skip("the dashboard's browser tests need Debian's chromium: apt-get install "
                "chromium (scripts/test.sh does, as root)")


def in_thread(work: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(work)`` in a thread of its own: once Playwright's sync API has started,
    it holds this thread's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


# -- the server and its tenants

@contextmanager
def dashboard_serve(url: str, *args: str, **env: str) -> Iterator[str]:
    """A real ``omium serve`` on ``url``; yields its base URL."""
    port = free_port()
    proc = start_serve(url, port, *args, **env)
    try:
        base = f"http://127.0.0.1:{port}"
        in_thread(wait_http(f"{base}/health"))
        yield base
    finally:
        stop_serve(proc)


@pytest.fixture(scope="session")
def gates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where a test opens the ``gate`` agent of an execution (dashboard_agents.gate)."""
    return tmp_path_factory.mktemp("gates")


@pytest.fixture(scope="session")
def llm_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The serve's LLM backends: fake OpenAI servers (omium.testing.fake_server, real
    processes) for smollm2 (local) and gpt-3.5-turbo (hosted), and before the local one an
    "edge" backend nobody listens on, whose circuit the first call opens (the call falls back
    to "local")."""
    ports = {"smollm2": free_port(), "gpt-3.5-turbo": free_port()}
    fakes = [subprocess.Popen([sys.executable, "-m", "omium.testing.fake_server",
                               "--port", str(port), "--model", model],
                              stdout=subprocess.DEVNULL) for model, port in ports.items()]
    try:
        for port in ports.values():
            in_thread(wait_http(f"http://127.0.0.1:{port}/health"))
        path = tmp_path_factory.mktemp("llm") / "omium-llm.yaml"
        path.write_text(yaml.safe_dump({"backends": [
            {"name": "edge", "base_url": f"http://127.0.0.1:{free_port()}/v1",
             "model": "smollm2"},
            {"name": "local", "base_url": f"http://127.0.0.1:{ports['smollm2']}/v1",
             "model": "smollm2"},
            {"name": "openai", "base_url": f"http://127.0.0.1:{ports['gpt-3.5-turbo']}/v1",
             "model": "gpt-3.5-turbo", "kind": "hosted"}],
            "circuit": {"failure_threshold": 1, "cooldown_s": 600}}))
        yield path
    finally:
        for fake in fakes:
            stop_serve(fake)


@pytest.fixture(scope="session")
def server_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'omium.db'}"


@pytest.fixture(scope="session")
def server(server_db: str, gates: Path, llm_config: Path) -> Iterator[str]:
    with dashboard_serve(server_db, "--worker-concurrency", "8", OMIUM_TEST_GATES=str(gates),
                         OMIUM_LLM_CONFIG=str(llm_config)) as base:
        yield base


@pytest.fixture
def pg_url() -> Iterator[str]:
    """tests/conftest.py's ``postgres_url`` (a fresh database cloned from a migrated
    template; skipped, saying why, without $OMIUM_TEST_POSTGRES_URL), made in a thread."""
    if _pg_url() is None:
        pytest.skip(f"PostgreSQL not configured: set {PG_ENV} (scripts/test.sh does)")
    url = in_thread(_make_pg_database())
    yield url
    in_thread(_drop_pg_database(url))


@dataclass
class Tenant:
    id: str
    key: str
    http: httpx.Client  # the API as this tenant

    def register(self, workflow: dict[str, Any]) -> str:
        r = self.http.post(f"{V1}/workflows", json=workflow)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def submit(self, workflow: dict[str, Any], inputs: Any = None) -> str:
        r = self.http.post(f"{V1}/executions", json={"workflow": workflow, "inputs": inputs})
        assert r.status_code == 202, r.text
        return str(r.json()["execution_id"])

    def wait(self, execution_id: str, status: str | None = None) -> str:
        """Follow the execution's event stream until it reaches ``status`` (None: until it
        finishes, that is completed, failed, cancelled or awaiting review); its status then."""
        kind = ""
        with self.http.stream("GET", f"{V1}/executions/{execution_id}/events") as r:
            assert r.status_code == 200, r.read()
            for line in r.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind in ("status", "finished"):
                    now = json.loads(line.split(":", 1)[1])["status"]
                    if now == status or (status is None and kind == "finished"):
                        return str(now)
        raise AssertionError(f"{execution_id}'s stream ended before it was {status}")

    def run(self, workflow: dict[str, Any], inputs: Any = None) -> str:
        """Submit and wait until it finishes; its id."""
        execution_id = self.submit(workflow, inputs)
        self.wait(execution_id)
        return execution_id


def make_tenant(server: str, name: str) -> Tenant:
    name = f"{re.sub(r'[^a-z0-9]+', '-', name.lower())[:40]}-{uuid.uuid4().hex[:6]}"
    r = httpx.post(f"{server}{V1}/tenants", json={"name": name},
                   headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201, r.text
    body = r.json()
    http = httpx.Client(base_url=server, timeout=30,
                        headers={"Authorization": f"Bearer {body['api_key']}"})
    return Tenant(body["tenant_id"], body["api_key"], http)


@pytest.fixture
def tenant(server: str) -> Iterator[Tenant]:
    t = make_tenant(server, "acme")  # and a random suffix: a tenant of this test's own
    yield t
    t.http.close()


def agent(agent_id: str, fn: str = ECHO, **extra: Any) -> dict[str, Any]:
    return {"id": agent_id, "framework": "python", "definition": {"callable": fn}, **extra}


def sequential(name: str, n: int = 3, fn: str = ECHO) -> dict[str, Any]:
    return {"name": name, "agents": [agent(f"a{i}", fn) for i in range(n)]}


FAILS = {"name": "fails", "agents": [agent("a", "tests.agents_for_tests:boom",
                                        retry={"max_attempts": 1})]}
# Two voters who disagree under a unanimous rule: the execution waits for a reviewer.
SPLIT_VOTE = {"name": "vote", "execution_order": "parallel",
              "agents": [agent("yes", "tests.agents_for_tests:approve"),
                         agent("no", "tests.agents_for_tests:reject")],
              "consensus": {"strategy": "unanimous", "field": "decision"}}
SLEEPS = {"name": "sleeps", "agents": [agent("sleeper", f"{AGENTS}:sleepy")]}
# The same split vote in a DAG, then an agent that waits for its gate: once reviewed, the
# execution runs until the test opens the gate.
VOTE_THEN_GATE = {"name": "vote_then_gate", "execution_order": "dag", "agents": [
    agent("yes", "tests.agents_for_tests:approve"), agent("no", "tests.agents_for_tests:reject"),
    {"id": "vote", "framework": "consensus", "depends_on": ["yes", "no"],
     "consensus": {"strategy": "unanimous", "field": "decision"}},
    agent("gate", f"{AGENTS}:gate", depends_on=["vote"])]}


# -- the browser

class _Chromium:
    """Playwright and its chromium, started for the first test here and stopped once the run
    leaves this folder (``pytest_runtest_teardown``), not at the session's end: Playwright's
    sync API holds the thread's event loop while it runs, and the async tests after these
    need it."""

    def __init__(self) -> None:
        self.playwright: Playwright | None = None
        self.browser: Browser | None = None

    def get(self) -> Browser:
        if self.browser is None:
            executable = chromium_path()
            self.playwright = sync_playwright().start()
            self.browser = self.playwright.chromium.launch(executable_path=executable,
                                                           headless=True)
        return self.browser

    def stop(self) -> None:
        if self.browser is not None:
            self.browser.close()
        if self.playwright is not None:
            self.playwright.stop()
        self.playwright = self.browser = None


_chromium = _Chromium()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield  # the test's own fixtures (its page) first
    if nextitem is None or HERE not in Path(nextitem.path).parents:
        _chromium.stop()


@pytest.fixture
def browser() -> Browser:
    return _chromium.get()


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    """A fresh browser context (no cookies) on the session's server. The test fails on any
    script error in the page or a violation of its Content-Security-Policy."""
    context = browser.new_context(base_url=server, viewport=VIEWPORT)  # type: ignore[arg-type]
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda err: problems.append(f"script error: {err}"))
    pg.on("console", lambda msg: problems.append(f"console: {msg.text}")
          if msg.type == "error" and "Content Security Policy" in msg.text else None)
    yield pg
    context.close()
    assert problems == [], problems


def sign_in(page: Page, key: str, base: str = "") -> None:
    """Through the login form; ``base``: another server than the session's."""
    page.goto(f"{base}/login")
    page.fill('#login-form input[name="api_key"]', key)
    page.click('#login-form button[type="submit"]')
    expect(page).to_have_url(re.compile(r"/executions$"))


@pytest.fixture
def signed_in(page: Page, tenant: Tenant) -> Page:
    """The page, signed in as ``tenant``."""
    sign_in(page, tenant.key)
    return page


@pytest.fixture(scope="session")
def screenshot_dir(request: pytest.FixtureRequest) -> Path:
    folder = Path(os.environ.get("OMIUM_SCREENSHOTS")
                  or tempfile.mkdtemp(prefix="omium-screenshots-"))
    folder.mkdir(parents=True, exist_ok=True)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # past pytest's capture, so it is seen
        print(f"\ndashboard screenshots: {folder}", flush=True)
    return folder


@pytest.fixture
def shot(page: Page, screenshot_dir: Path) -> Callable[[str], Path]:
    """``shot(name)``: the page's viewport as ``<name>.png`` in the screenshots folder."""

    def take(name: str) -> Path:
        path = screenshot_dir / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return take

"""The plan's load test, in locust: 3 of every 4 requests ``POST /api/v1/executions``, 1 in 4
``GET /api/v1/executions/{id}`` of an execution this user submitted.

Run it headless against a server (``pip install -e '.[bench]'`` brings locust)::

    OMIUM_ALLOWED_MODULES=bench,examples omium serve --db sqlite:///load.db &
    OMIUM_API_KEY=$(cat .omium-local-key) \\
        locust -f bench/locustfile.py --headless -u 64 -r 16 -t 30s --host http://127.0.0.1:8000

Environment:
    OMIUM_API_KEY       a tenant's key (``omium serve`` prints tenant "local"'s and keeps it in
                        ``.omium-local-key`` next to a SQLite database); without it the key
                        is read from ``$OMIUM_KEY_FILE`` (default ``./.omium-local-key``).
    OMIUM_WORKFLOW_ID   a registered workflow to submit; without it a workflow of three
                        ``bench.agents:noop`` Python agents (a JSON Schema on the first, so
                        every submission's inputs are validated) is registered once at the
                        start, so the server needs ``bench`` in ``OMIUM_ALLOWED_MODULES``.

Each request's inputs are unique. Locust's summary gives requests/s and percentiles per
request name (``POST /executions``, ``GET /executions/{id}``) and aggregated. Locust is a
gevent generator in one process by default (add ``--processes N`` to spread it): on a small
machine the generator and the server share the cores, so read the figures as a floor, and
compare with ``python -m bench.api_load`` run on the same machine.
"""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, events, task

_WORKFLOW: dict[str, Any] = {
    "name": "locust_noop",
    "execution_order": "sequential",
    "agents": [{"id": f"agent_{i}", "framework": "python",
                "definition": {"callable": "bench.agents:noop"},
                **({"input_schema": {"type": "object", "required": ["applicant_id", "step"],
                                     "properties": {"applicant_id": {"type": "string"},
                                                    "step": {"type": "integer"}}}}
                   if i == 0 else {})} for i in range(3)],
}
_state: dict[str, str] = {}
_serial = itertools.count()


def _api_key() -> str:
    if key := os.environ.get("OMIUM_API_KEY"):
        return key
    path = Path(os.environ.get("OMIUM_KEY_FILE", ".omium-local-key"))
    try:
        return path.read_text().strip()
    except OSError:
        raise SystemExit(f"set OMIUM_API_KEY (or OMIUM_KEY_FILE; {path} is unreadable)"
                         ) from None


@events.test_start.add_listener
def _register(environment: Any, **_: Any) -> None:
    """The key, and the workflow (``OMIUM_WORKFLOW_ID`` or one registered now), once."""
    import requests

    _state["auth"] = f"Bearer {_api_key()}"
    if wf_id := os.environ.get("OMIUM_WORKFLOW_ID"):
        _state["workflow_id"] = wf_id
        return
    r = requests.post(f"{environment.host}/api/v1/workflows", json=_WORKFLOW,
                      headers={"Authorization": _state["auth"]}, timeout=30)
    if r.status_code != 201:
        raise SystemExit(f"registering the workflow: {r.status_code} {r.text}")
    _state["workflow_id"] = r.json()["id"]


class OmiumUser(FastHttpUser):
    wait_time = between(0, 0)  # a closed loop: the next request when the last is answered

    def on_start(self) -> None:
        self.headers = {"Authorization": _state["auth"]}
        self.submitted: list[str] = []

    @task(3)
    def submit(self) -> None:
        body = {"workflow_id": _state["workflow_id"],
                "inputs": {"applicant_id": f"L-{os.getpid()}-{next(_serial)}", "step": 0}}
        with self.client.post("/api/v1/executions", json=body, headers=self.headers,
                              name="POST /executions", catch_response=True) as r:
            if r.status_code != 202:
                r.failure(f"{r.status_code}: {r.text[:200]}")
                return
            self.submitted.append(r.json()["execution_id"])
            del self.submitted[:-1000]  # a bounded sample to read back

    @task(1)
    def read(self) -> None:
        if not self.submitted:
            return self.submit()
        eid = random.choice(self.submitted)
        self.client.get(f"/api/v1/executions/{eid}", headers=self.headers,
                        name="GET /executions/{id}")
        return None

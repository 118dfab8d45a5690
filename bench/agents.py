"""Agents, schemas and payloads shared by the benchmarks in ``bench/``.

Referenced from workflow definitions as ``"bench.agents:noop"`` etc. (the repository root
must be importable: the benchmarks pass it as the workflow's ``base_dir``).
"""

from __future__ import annotations

import random
from typing import Any

from bench._common import ROOT

SCHEMA_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# -- step_overhead.py, workers.py, api_load.py: chains of no-ops -------------------------

# What every no-op agent receives and returns; small on purpose (the engine is measured).
STEP_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_2020_12,
    "type": "object",
    "required": ["applicant_id", "step"],
    "properties": {
        "applicant_id": {"type": "string", "minLength": 1},
        "step": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}


def noop(inputs: dict[str, Any]) -> dict[str, Any]:
    """A no-op agent: passes the id on and counts the step (a LangGraph node as well)."""
    return {"applicant_id": inputs["applicant_id"], "step": inputs["step"] + 1}


async def anoop(inputs: dict[str, Any]) -> dict[str, Any]:
    """``noop`` as a coroutine: what an agent that awaits its LLM call costs the engine (no
    worker thread)."""
    return {"applicant_id": inputs["applicant_id"], "step": inputs["step"] + 1}


# What a chain of no-ops starts from (step_overhead.py, workers.py).
NOOP_INPUTS: dict[str, Any] = {"applicant_id": "APP-2025-0142", "step": 0}


def noop_chain(n_agents: int, input_schema: dict[str, Any] | None = None,
               callable_ref: str = "bench.agents:noop") -> list[dict[str, Any]]:
    """The agents of a workflow: ``agent_0`` ... ``agent_{n-1}``, each a Python agent calling
    ``noop`` (or ``callable_ref``), each with ``input_schema`` (the same object) when one is
    given."""
    extra = {} if input_schema is None else {"input_schema": input_schema}
    return [{"id": f"agent_{i}", "framework": "python",
             "definition": {"callable": callable_ref}, **extra}
            for i in range(n_agents)]


def noop_workflow(name: str, n_agents: int, input_schema: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """A sequential workflow of ``noop_chain(n_agents, input_schema)`` starting from
    ``NOOP_INPUTS``, run in-process (``base_dir`` is the repository root, so that
    ``bench.agents:noop`` imports from any working directory)."""
    return {
        "name": name,
        "execution_order": "sequential",
        "base_dir": str(ROOT),
        "inputs": NOOP_INPUTS,
        "agents": noop_chain(n_agents, input_schema),
    }


# -- handoff_latency.py: a ~10 KB applicant record ---------------------------------------

def score(inputs: dict[str, Any]) -> dict[str, Any]:
    """The receiving agent's work (never run by the handoff benchmark, only resolved)."""
    return {"applicant_id": inputs["applicant"]["applicant_id"], "decision": "approve"}


def accept_applicant(data: dict[str, Any], ctx: Any) -> tuple[bool, str | None]:
    """Accept hook: refuse an application the scorer cannot handle (a realistic cheap check)."""
    applicant = data["applicant"]
    if applicant["requested_amount"] > 10 * applicant["employment"]["annual_income"]:
        return False, "requested amount above 10x income"
    if not applicant["transactions"]:
        return False, "no transaction history"
    return True, None


_MONEY = {"type": "number", "minimum": 0, "maximum": 1e9}
_COUNTRY = {"type": "string", "pattern": "^[A-Z]{2}$"}

APPLICANT_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_2020_12,
    "$id": "https://omium.example/schemas/applicant.json",
    "type": "object",
    "required": ["applicant", "requested_at"],
    "additionalProperties": False,
    "properties": {
        "requested_at": {"type": "string", "format": "date-time"},
        "applicant": {"$ref": "#/$defs/applicant"},
    },
    "$defs": {
        "money": _MONEY,
        "country": _COUNTRY,
        "address": {
            "type": "object",
            "required": ["street", "city", "postal_code", "country"],
            "additionalProperties": False,
            "properties": {
                "street": {"type": "string", "minLength": 1, "maxLength": 200},
                "city": {"type": "string", "minLength": 1, "maxLength": 100},
                "region": {"type": "string", "maxLength": 100},
                "postal_code": {"type": "string", "pattern": "^[0-9A-Z -]{3,10}$"},
                "country": {"$ref": "#/$defs/country"},
                "since": {"type": "string", "format": "date"},
            },
        },
        "transaction": {
            "type": "object",
            "required": ["id", "amount", "currency", "country", "timestamp", "merchant",
                         "channel"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "pattern": "^TX-[0-9]{8}$"},
                "amount": {"$ref": "#/$defs/money"},
                "currency": {"enum": ["USD", "CAD", "EUR", "GBP", "MXN"]},
                "country": {"$ref": "#/$defs/country"},
                "timestamp": {"type": "string", "format": "date-time"},
                "channel": {"enum": ["card_present", "online", "atm", "transfer"]},
                "merchant": {
                    "type": "object",
                    "required": ["name", "mcc"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 120},
                        "mcc": {"type": "string", "pattern": "^[0-9]{4}$"},
                        "city": {"type": "string"},
                    },
                },
                "flags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            },
        },
        "applicant": {
            "type": "object",
            "required": ["applicant_id", "name", "date_of_birth", "national_id", "email",
                         "address", "employment", "credit", "requested_amount",
                         "transactions"],
            "additionalProperties": False,
            "properties": {
                "applicant_id": {"type": "string", "pattern": "^APP-[0-9]{4}-[0-9]{4}$"},
                "name": {
                    "type": "object",
                    "required": ["given", "family"],
                    "properties": {"given": {"type": "string", "minLength": 1},
                                   "family": {"type": "string", "minLength": 1}},
                },
                "date_of_birth": {"type": "string", "format": "date"},
                "national_id": {"type": "string", "pattern": "^[0-9]{3}-[0-9]{3}-[0-9]{3}$"},
                "email": {"type": "string", "format": "email"},
                "phone": {"type": "string"},
                "address": {"$ref": "#/$defs/address"},
                "previous_addresses": {"type": "array", "items": {"$ref": "#/$defs/address"},
                                       "maxItems": 10},
                "employment": {
                    "type": "object",
                    "required": ["status", "annual_income"],
                    "properties": {
                        "status": {"enum": ["employed", "self_employed", "retired",
                                            "unemployed"]},
                        "employer": {"type": "string"},
                        "annual_income": {"$ref": "#/$defs/money"},
                        "years": {"type": "integer", "minimum": 0, "maximum": 80},
                    },
                },
                "credit": {
                    "type": "object",
                    "required": ["history_years", "missed_payments_12m", "monthly_debt"],
                    "properties": {
                        "history_years": {"type": "integer", "minimum": 0},
                        "missed_payments_12m": {"type": "integer", "minimum": 0},
                        "monthly_debt": {"$ref": "#/$defs/money"},
                        "open_accounts": {"type": "integer", "minimum": 0},
                    },
                },
                "requested_amount": {"$ref": "#/$defs/money"},
                "purpose": {"enum": ["home", "car", "education", "consolidation", "other"]},
                "transactions": {"type": "array", "items": {"$ref": "#/$defs/transaction"},
                                 "maxItems": 1000},
            },
        },
    },
}

_MERCHANTS = [("Fresh Market Grocery", "5411", "Portland"), ("Shell Fuel", "5541", "Portland"),
              ("Powell's Books", "5942", "Portland"), ("Lardo Restaurant", "5812", "Portland"),
              ("PGE Utilities", "4900", "Portland"), ("Target", "5310", "Beaverton"),
              ("Granville Island Cafe", "5814", "Vancouver"), ("Amazon Marketplace", "5999", "")]


def applicant_payload(n_transactions: int = 48, seed: int = 7) -> dict[str, Any]:
    """A deterministic loan application that matches ``APPLICANT_SCHEMA`` (~10 KB as JSON)."""
    rnd = random.Random(seed)
    transactions = []
    for i in range(n_transactions):
        name, mcc, city = _MERCHANTS[rnd.randrange(len(_MERCHANTS))]
        tx: dict[str, Any] = {
            "id": f"TX-{20250000 + i:08d}",
            "amount": round(rnd.uniform(3, 400), 2),
            "currency": "CAD" if city == "Vancouver" else "USD",
            "country": "CA" if city == "Vancouver" else "US",
            "timestamp": f"2025-{10 + i % 2:02d}-{1 + i % 28:02d}T{8 + i % 12:02d}:"
                         f"{rnd.randrange(60):02d}:00Z",
            "channel": rnd.choice(["card_present", "online", "atm", "transfer"]),
            "merchant": {"name": name, "mcc": mcc, "city": city},
        }
        if i % 7 == 0:
            tx["flags"] = ["recurring"]
        transactions.append(tx)
    return {
        "requested_at": "2025-12-01T09:30:00Z",
        "applicant": {
            "applicant_id": "APP-2025-0142",
            "name": {"given": "Amelia", "family": "Hart"},
            "date_of_birth": "1986-04-12",
            "national_id": "482-109-378",
            "email": "amelia.hart@example.com",
            "phone": "+1-503-555-0142",
            "address": {"street": "14 Larch Street", "city": "Portland", "region": "OR",
                        "postal_code": "97205", "country": "US", "since": "2019-06-01"},
            "previous_addresses": [
                {"street": "881 Alder Ave, Apt 3", "city": "Seattle", "region": "WA",
                 "postal_code": "98101", "country": "US", "since": "2014-02-01"},
            ],
            "employment": {"status": "employed", "employer": "Cascade Analytics LLC",
                           "annual_income": 95000, "years": 6},
            "credit": {"history_years": 9, "missed_payments_12m": 0, "monthly_debt": 1400,
                       "open_accounts": 4},
            "requested_amount": 35000,
            "purpose": "car",
            "transactions": transactions,
        },
    }


# -- io_bound.py: agents that wait, as a real agent waits on an LLM call -------------------

async def sleep1(inputs: dict[str, Any]) -> dict[str, Any]:
    """An async agent that waits one second (``await asyncio.sleep(1)``)."""
    import asyncio

    await asyncio.sleep(1)
    return {"n": inputs["n"], "done": True}


def sync_sleep1(inputs: dict[str, Any]) -> dict[str, Any]:
    """A sync agent that blocks one second (``time.sleep(1)``: run in the agent thread pool)."""
    import time

    time.sleep(1)
    return {"n": inputs["n"], "done": True}


async def sleep_s(inputs: dict[str, Any]) -> dict[str, Any]:
    """``sleep1`` for ``inputs["s"]`` seconds (io_bound.py holds executions in flight)."""
    import asyncio

    await asyncio.sleep(inputs["s"])
    return {"n": inputs["n"], "done": True}


def sync_sleep_s(inputs: dict[str, Any]) -> dict[str, Any]:
    """``sync_sleep1`` for ``inputs["s"]`` seconds."""
    import time

    time.sleep(inputs["s"])
    return {"n": inputs["n"], "done": True}

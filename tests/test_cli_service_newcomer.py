"""The service and billing commands as a newcomer meets them, through the real ``omium``
command: `omium serve` and `omium llm serve` on their own ports (and one line, exit 2, on a
busy one), admin keys for a tenant, debits, unlimited tenants said so, `omium tenants list`,
and the local-LLM install hint printed literally."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import sqlite3
from collections.abc import Coroutine, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from omium.api.auth import Authenticator, Principal
from omium.billing.ledger import Ledger
from omium.billing.money import nano_to_credits
from omium.engine.tenants import hash_key
from omium.store import open_store
from omium.store.records import ApiKeyRecord
from tests._cli_process import ROOT, Ran, omium_cli

T = TypeVar("T")
TIMEOUT = 60  # a bound on a command that must return at once, not a wait


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'omium.db'}"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another server listens on (as a running `omium serve` would)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _one_error_line(ran: Ran) -> str:
    lines = ran.err.strip().splitlines()
    assert len(lines) == 1, ran.text
    assert lines[0].startswith("error: "), ran.text
    return lines[0]


def _json(ran: Ran) -> Any:
    assert ran.code == 0, ran.text
    return json.loads(ran.out)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# --- ports ------------------------------------------------------------------------------------


def test_serve_on_a_busy_port_says_so_and_exits_2(tmp_path: Path, db: str,
                                                  busy_port: int) -> None:
    ran = omium_cli("serve", "--port", busy_port, "--db", db, cwd=tmp_path, timeout=TIMEOUT)
    assert ran.code == 2, ran.text  # not uvicorn's 3, which this CLI means "awaiting review"
    line = _one_error_line(ran)
    assert line.startswith(f"error: port {busy_port} on 127.0.0.1 is in use ("), line
    assert "--port" in line and ran.out == ""
    # Refused before anything was written: no database, no key file for tenant "local".
    assert not (tmp_path / "omium.db").exists()
    assert not (tmp_path / ".omium-local-key").exists()


def test_llm_serve_on_a_busy_port_says_so_and_exits_2(tmp_path: Path, busy_port: int) -> None:
    for extra in ([], ["--json"]):
        ran = omium_cli("llm", "serve", "--port", busy_port, *extra, cwd=tmp_path,
                        timeout=TIMEOUT)
        assert ran.code == 2, ran.text
        line = _one_error_line(ran)
        assert line.startswith(f"error: port {busy_port} on 127.0.0.1 is in use ("), line
        assert f"http://127.0.0.1:{busy_port}/v1" in line and ran.out == ""


def test_a_port_out_of_range_is_bad_input(db: str) -> None:
    for cmd in (["serve", "--db", db], ["llm", "serve"]):
        ran = omium_cli(*cmd, "--port", 70000, timeout=TIMEOUT)
        assert ran.code == 2 and "Invalid value for '--port'" in ran.err, ran.text


def test_llm_serve_and_the_api_default_to_different_ports_and_the_example_follows() -> None:
    llm_help = omium_cli("llm", "serve", "--help", timeout=TIMEOUT)
    api_help = omium_cli("serve", "--help", timeout=TIMEOUT)
    assert llm_help.code == 0 and api_help.code == 0
    assert "[default: 8080]" in llm_help.out and "[default: 8000]" in api_help.out
    cfg = yaml.safe_load((ROOT / "examples/loan_approval/omium-llm.yaml").read_text())
    [local] = [b for b in cfg["backends"] if b["kind"] == "local"]
    assert local["base_url"] == "http://127.0.0.1:8080/v1"
    readme = (ROOT / "README.md").read_text()
    assert "omium llm serve &                       # SmolLM2 on http://127.0.0.1:8080/v1" in readme


@pytest.mark.skipif(any(importlib.util.find_spec(m) for m in ("vllm", "llama_cpp")),
                    reason="an inference engine is installed: `omium llm serve` would start it")
def test_llm_serve_without_an_engine_prints_the_install_hint_literally(tmp_path: Path) -> None:
    port = _free_port()
    ran = omium_cli("llm", "serve", "--port", port, cwd=tmp_path, timeout=TIMEOUT)
    assert ran.code == 1, ran.text  # the machine lacks an engine: not a bad argument
    assert ran.err.startswith("error: cannot start a local LLM server:"), ran.text
    assert "llama-cpp-python[server] is not installed" in ran.err
    # Printed literally: "[local-llm]" is text, not a markup tag to swallow.
    assert "`pip install 'omium[local-llm]'`" in ran.err
    assert "pip install 'omium'" not in ran.err
    assert "llama-server -m model.gguf --port 8080" in ran.err and ran.out == ""
    with socket.socket() as sock:  # and nothing listens there
        assert sock.connect_ex(("127.0.0.1", port)) != 0


# --- keys -------------------------------------------------------------------------------------


def _key_rows(db: str) -> list[tuple[str | None, int]]:
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        return conn.execute("SELECT tenant_id, admin FROM api_keys ORDER BY created_at").fetchall()


async def _stored_key(db: str, key: str) -> ApiKeyRecord | None:
    async with open_store(db) as store:
        return await store.find_api_key(hash_key(key))


async def _principal(db: str, key: str) -> Principal | None:
    async with open_store(db) as store:
        return await Authenticator().principal(store, key)


def test_keys_create_tenant_admin_makes_an_admin_key_for_that_tenant(db: str) -> None:
    assert _json(omium_cli("tenants", "create", "acme", "--db", db, "--json"))
    made = _json(omium_cli("keys", "create", "acme", "--admin", "--db", db, "--json"))
    assert isinstance(made, dict)
    assert (made["tenant_id"], made["admin"]) == ("acme", True)
    record = _run(_stored_key(db, made["api_key"]))
    assert record is not None and (record.tenant_id, record.admin) == ("acme", True)
    # The API sees a key that manages tenants and acts as acme.
    assert _run(_principal(db, made["api_key"])) == Principal("acme", True)

    ran = omium_cli("keys", "create", "acme", "--admin", "--db", db)
    assert ran.code == 0, ran.text
    assert ran.out.startswith("admin key for tenant acme (shown once): om_"), ran.out
    ran = omium_cli("keys", "create", "--admin", "--db", db, "--json")
    alone = _json(ran)
    assert isinstance(alone, dict) and alone["tenant_id"] is None and alone["admin"] is True
    assert _run(_principal(db, alone["api_key"])) == Principal(None, True)
    before = _key_rows(db)
    assert before.count(("acme", 1)) == 2 and before.count((None, 1)) == 1

    ran = omium_cli("keys", "create", "nobody", "--admin", "--db", db)
    assert ran.code == 2
    assert "TENANT: no tenant 'nobody'" in _one_error_line(ran)
    ran = omium_cli("keys", "create", "--db", db)
    assert ran.code == 2
    line = _one_error_line(ran)
    assert "TENANT: give a tenant id" in line and "--admin" in line
    assert _key_rows(db) == before  # no key was made by either


# --- credits ----------------------------------------------------------------------------------


def _balance(db: str, tenant: str) -> dict[str, object]:
    got = _json(omium_cli("credits", "balance", tenant, "--db", db, "--json"))
    assert isinstance(got, dict)
    return got


def test_credits_add_a_negative_amount_debits_down_to_the_floor(db: str) -> None:
    assert omium_cli("credits", "add", "acme", "10", "--db", db).code == 0
    debit = _json(omium_cli("credits", "add", "acme", "-4", "--db", db, "--json"))
    assert debit == {"tenant_id": "acme", "amount_credits": "-4", "balance_credits": "6",
                     "limited": True}
    ran = omium_cli("credits", "add", "acme", "-0.5", "--db", db)
    assert ran.code == 0 and ran.out.strip() == (
        "acme: debited 0.5 credits; balance 5.5 credits ($0.055)"), ran.text
    assert _balance(db, "acme")["balance_credits"] == "5.5"

    # Below zero (the floor of a tenant without an overdraft): refused, nothing debited.
    ran = omium_cli("credits", "add", "acme", "-7", "--db", db)
    assert ran.code == 2
    line = _one_error_line(ran)
    assert "AMOUNT: -7 would take acme from 5.5 to -1.5 credits, below its floor of 0" in line
    assert "nothing was debited" in line
    assert _balance(db, "acme")["balance_credits"] == "5.5"
    # An overdraft lowers the floor: then the same debit goes through.
    assert omium_cli("credits", "overdraft", "acme", "2", "--db", db).code == 0
    debit = _json(omium_cli("credits", "add", "acme", "-7", "--db", db, "--json"))
    assert debit["balance_credits"] == "-1.5"

    # A debit never creates a tenant.
    ran = omium_cli("credits", "add", "ghost", "-1", "--db", db)
    assert ran.code == 2 and "TENANT: no tenant 'ghost'" in _one_error_line(ran)
    tenants = _json(omium_cli("tenants", "list", "--db", db, "--json"))
    assert "ghost" not in [t["id"] for t in tenants]
    # An unlimited tenant has no floor.
    local = _json(omium_cli("credits", "add", "local", "-3", "--db", db, "--json"))
    assert local == {"tenant_id": "local", "amount_credits": "-3", "balance_credits": "-3",
                     "limited": False}
    # Not a number, or finer than a nano-dollar: one line naming AMOUNT.
    for bad, why in (("-x", "not a number: '-x'"), ("-1e-9", "finer than one nano-dollar")):
        ran = omium_cli("credits", "add", "acme", bad, "--db", db)
        assert ran.code == 2, ran.text
        line = _one_error_line(ran)
        assert line.startswith("error: AMOUNT: ") and why in line, line
    assert _balance(db, "acme")["balance_credits"] == "-1.5"
    # A negative overdraft now reaches the check that names it.
    ran = omium_cli("credits", "overdraft", "acme", "-1", "--db", db)
    assert ran.code == 2 and "overdraft: -1 is negative" in _one_error_line(ran)


async def _debit_after_a_hold(db: str) -> tuple[str, Decimal]:
    from omium._cli_llm import _debit

    async with open_store(db) as store:
        ledger = Ledger(store)
        await ledger.add_credits("acme", "10")
        assert await ledger.reserve("acme", Decimal("0.08"), ttl_s=60)  # 8 credits held
        with pytest.raises(ValueError) as refused:
            await _debit(store, "acme", "-5", -5 * 10**7)
        tenant = await store.get_tenant("acme")  # not Ledger.balance, patched here
        assert tenant is not None
        return str(refused.value), nano_to_credits(tenant.balance_nano)


def test_a_debit_racing_a_hold_is_undone(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The debit's read of the balance comes before a call's hold (10 credits, then 2 left):
    # the update finds -3 below the floor, gives the 5 back, and refuses.
    async def read_before_the_hold(self: Ledger, tenant_id: str) -> Decimal:
        return Decimal(10)

    monkeypatch.setattr(Ledger, "balance", read_before_the_hold)
    message, balance = _run(_debit_after_a_hold(db))
    assert "AMOUNT: -5 would take acme from 2 to -3 credits" in message
    assert balance == 2


def test_credits_balance_says_when_a_tenant_is_unlimited(db: str) -> None:
    ran = omium_cli("credits", "balance", "local", "--db", db)
    assert ran.code == 0
    assert ran.out.strip().startswith("local: unlimited (no credit limit"), ran.out
    assert "balance 0 credits" in ran.out
    assert _balance(db, "local") == {"tenant_id": "local", "balance_credits": "0",
                                     "limited": False, "overdraft_credits": "0"}
    omium_cli("credits", "add", "acme", "2.5", "--db", db)
    ran = omium_cli("credits", "balance", "acme", "--db", db)
    assert ran.code == 0 and ran.out.strip() == "acme: 2.5 credits ($0.025)", ran.out
    assert _balance(db, "acme")["limited"] is True
    ran = omium_cli("credits", "balance", "nobody", "--db", db)
    assert ran.code == 2 and "no tenant 'nobody'" in _one_error_line(ran)


# --- tenants list -----------------------------------------------------------------------------


async def _expired_hold(db: str) -> None:
    async with open_store(db) as store:
        assert await Ledger(store).reserve("acme-corp", Decimal("0.01"), ttl_s=-1)


def test_tenants_list(db: str) -> None:
    created = _json(omium_cli("tenants", "create", "Acme Corp", "--db", db, "--json"))
    assert isinstance(created, dict) and created["tenant_id"] == "acme-corp"
    omium_cli("credits", "add", "acme-corp", "2.5", "--db", db)
    omium_cli("credits", "overdraft", "acme-corp", "1", "--db", db)
    _run(_expired_hold(db))  # a dead process's hold: given back when balances are read
    rows = _json(omium_cli("tenants", "list", "--db", db, "--json"))
    assert isinstance(rows, list)
    assert [(r["id"], r["name"], r["limited"], r["balance_credits"], r["overdraft_credits"])
            for r in rows] == [("acme-corp", "Acme Corp", True, "2.5", "1"),
                               ("local", "local", False, "0", "0")]
    ran = omium_cli("tenants", "list", "--db", db)
    assert ran.code == 0, ran.text
    acme = next(x for x in ran.out.splitlines() if "acme-corp" in x)
    assert "Acme Corp" in acme and "limited, floor -1" in acme and "2.5" in acme
    local = next(x for x in ran.out.splitlines() if "local" in x and "acme" not in x)
    assert "unlimited" in local

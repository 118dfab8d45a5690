"""What every CLI module shares: options, consoles, and turning errors into exit code 2."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from omium.errors import DatabaseUnavailableError, OmiumError

BAD_INPUT = 2
NO_DATABASE = 5  # the database could not be opened or reached
INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal, as shells do
# No markup and no highlighting: what is printed is data (errors, ids, inputs, outputs) and
# must come out literally ("[/etc/app.conf]" is not a closing tag). Styles are applied to
# Text parts explicitly (``styled``).
out = Console(markup=False, highlight=False)
err = Console(stderr=True, markup=False, highlight=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Plain strings, and ``(text, style)`` pairs, as one Text: the text is never parsed."""
    return Text.assemble(*parts)

DbOption = Annotated[str | None, typer.Option("--db", envvar="OMIUM_DATABASE_URL",
                                              help="Database URL (default sqlite:///omium.db)")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    err.print(styled(("error:", "red"), " ", message), soft_wrap=True)
    raise typer.Exit(code)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (it comes with uvicorn[standard], and
    ``omium serve`` runs on it through uvicorn's ``loop="auto"``), so ``omium worker`` and
    ``omium run`` drive executions on the same loop as the service: measured under bench.e2e
    on PostgreSQL, a worker's time went to asyncio's own loop and socket transports (a third
    of its samples in ``_SelectorSocketTransport.write``). asyncio's loop otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a platform without uvloop (Windows)
        return None
    return uvloop.new_event_loop


def run_async(coro: Any, *, interrupted: Callable[[], str | None] | None = None) -> Any:
    """Run a coroutine. Omium's errors and bad values (e.g. a database URL) exit with 2; a
    database that cannot be opened or reached with 5. SIGINT (Ctrl-C) and SIGTERM cancel the
    coroutine (which records what it must) and exit 130 / 143, printing ``interrupted``
    and what ``interrupted()`` says to do next."""
    got: list[int] = []

    async def main() -> Any:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: (got.append(signal.SIGTERM),
                                                         task.cancel()))
        return await coro

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        sig = got[0] if got else signal.SIGINT
        hint = interrupted() if interrupted is not None else None
        err.print("interrupted" + (f": {hint}" if hint else ""), soft_wrap=True)
        raise typer.Exit(INTERRUPTED[sig]) from None
    except DatabaseUnavailableError as e:
        fail(str(e), NO_DATABASE)
    except (OmiumError, ValueError) as e:
        fail(str(e))


def port_option(what: str) -> Any:
    """A ``--port`` option (1-65535) for the server ``what`` names."""
    return typer.Option(min=1, max=65535, help=f"TCP port {what} listens on.")


def check_port(host: str, port: int, hint: str) -> None:
    """Exit 2 with one line unless a server can listen on ``host``:``port`` now: bind each of
    its addresses as uvicorn's server does (SO_REUSEADDR, so a closed connection's TIME_WAIT
    is no clash, and IPv6 sockets IPv6-only), then close them. ``hint`` ends the in-use line."""
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        fail(f"--host: cannot resolve {host!r} ({e.strerror})")
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    fail(f"port {port} on {host} is in use ({hint})")
                fail(f"--host/--port: cannot listen on {host} port {port} ({e.strerror})")


def plain(value: Decimal) -> str:
    """An exact decimal as plain digits: "0.0000001", never "1E-7"; 0 as "0"."""
    return format(value.normalize(), "f") if value else "0"

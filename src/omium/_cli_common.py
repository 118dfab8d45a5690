"""What every CLI module shares: options, consoles, and turning errors into exit code 2."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from omium.errors import OmiumError

BAD_INPUT = 2
out = Console()
err = Console(stderr=True)

DbOption = Annotated[str | None, typer.Option("--db", envvar="OMIUM_DATABASE_URL",
                                              help="Database URL (default sqlite:///omium.db)")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def run_async(coro: Any) -> Any:
    """Run a coroutine; Omium's errors and bad values (e.g. a database URL) exit with 2."""
    try:
        return asyncio.run(coro)
    except (OmiumError, ValueError) as e:
        fail(str(e))

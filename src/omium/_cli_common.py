"""What every CLI module shares: options, consoles, and turning errors into exit code 2."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from omium.errors import OmiumError

BAD_INPUT = 2
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


def run_async(coro: Any) -> Any:
    """Run a coroutine; Omium's errors and bad values (e.g. a database URL) exit with 2."""
    try:
        return asyncio.run(coro)
    except (OmiumError, ValueError) as e:
        fail(str(e))

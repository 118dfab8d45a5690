"""The web dashboard at ``/`` (the API stays under ``/api/v1``): server-rendered Jinja2 pages,
htmx for live parts and uPlot for charts, both vendored under ``static/vendor`` (no build step,
no CDN). Pages read through the store queries the API uses and act through the same
functions (``omium.engine.commands``, ``start_execution``)."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from omium.api.dashboard import execution_page, executions_list, llm_page, signin, workflows_page
from omium.api.dashboard.session import SessionSigner
from omium.api.dashboard.web import HERE, CsrfRefused, SignInRequired, redirect, render
from omium.llm.gateway_token import new_secret


def _secret(gateway_secret: str | None) -> bytes:
    """Shared by the processes of one ``omium serve`` (it hands them one gateway secret);
    an app built by hand without one signs sessions for its own process only."""
    if not gateway_secret:
        return new_secret()
    return hmac.new(gateway_secret.encode(), b"omium dashboard", hashlib.sha256).digest()


async def _sign_in(request: Request, exc: Exception) -> Response:
    if request.headers.get("hx-request"):  # a live refresh: send the whole page to /login
        return Response(status_code=401, headers={"HX-Redirect": "/login"})
    return redirect(request, "/login")


async def _csrf(request: Request, exc: Exception) -> Response:
    return render(request, "error.html", {
        "title": "forbidden", "message": "csrf_token: missing or not this session's; reload "
        "the page and try again"}, status_code=403)


def install(app: FastAPI) -> None:
    app.state.dashboard_signer = SessionSigner(_secret(app.state.settings.gateway_secret))
    app.add_exception_handler(SignInRequired, _sign_in)
    app.add_exception_handler(CsrfRefused, _csrf)
    # /executions/rows before /executions/{id}: the first route that matches wins.
    for module in (signin, executions_list, execution_page, workflows_page, llm_page):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

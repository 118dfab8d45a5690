"""What every dashboard page shares: templates, the signed-in viewer, CSRF-checked forms, the
security headers, and ``Server-Timing``.

Templates autoescape everything: agent outputs, LLM text and ids are data, rendered as text.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from omium.api.dashboard.session import COOKIE, Session, SessionSigner, same_origin
from omium.engine.tenants import hash_key
from omium.store.base import Store

HERE = Path(__file__).parent
# No inline script or style, no eval; forms post only here; never framed.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class SignInRequired(Exception):
    """No valid session: the page answers 303 to /login."""


class CsrfRefused(Exception):
    """A form action without this session's token (or from another origin): 403."""


def _fmt_ts(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _fmt_dur(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      auto_reload=False)
    env.filters.update(ts=_fmt_ts, dur=_fmt_dur, pretty=_pretty,
                       tojson_attr=lambda v: json.dumps(v, separators=(",", ":"), default=str))
    return env


TEMPLATES = _environment()


@dataclass
class Viewer:
    """Who is signed in, and which tenant's data the pages show."""

    session: Session
    tenant_id: str
    admin: bool
    csrf: str
    tenants: list[str] = field(default_factory=list)  # an admin's switcher


def signer(request: Request) -> SessionSigner:
    return request.app.state.dashboard_signer  # type: ignore[no-any-return]


def store_of(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


async def stamp(request: Request) -> None:
    """The start of the page's server time (``Server-Timing: render``)."""
    request.state.t0 = time.perf_counter()


async def key_principal(request: Request, key_hash: str) -> tuple[str | None, bool] | None:
    """(tenant, admin) of a live key, by its hash; None if unknown or revoked. Read from the
    store on every request, so revoking a key signs its sessions out at once."""
    admin_key = request.app.state.settings.admin_key
    if admin_key and hmac.compare_digest(key_hash, hash_key(admin_key)):
        return None, True
    rec = await store_of(request).find_api_key(key_hash)
    if rec is None or rec.revoked_at is not None:
        return None
    return rec.tenant_id, rec.admin


async def viewer(request: Request) -> Viewer:
    session = signer(request).read(request.cookies.get(COOKIE))
    if session is None or await store_of(request).session_ended(session.nonce):
        raise SignInRequired  # no session, or one signed out (a copy of its cookie too)
    found = await key_principal(request, session.key_hash)
    if found is None:
        raise SignInRequired
    own_tenant, admin = found
    tenants: list[str] = []
    tenant = own_tenant
    if admin:
        tenants = [t.id for t in await store_of(request).list_tenants()]
        if session.tenant_id in tenants:
            tenant = session.tenant_id
        elif tenant is None:
            tenant = tenants[0] if tenants else ""
    assert tenant is not None  # a tenant's key always names its tenant
    return Viewer(session, tenant, admin, signer(request).csrf_token(session.nonce), tenants)


ViewerDep = Annotated[Viewer, Depends(viewer)]


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the size is capped by the app's body limit)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def check_csrf(request: Request, form: dict[str, str], nonce: str | None,
               purpose: str = "csrf") -> None:
    token = form.get("csrf_token") or request.headers.get("x-csrf-token")
    if not same_origin(request.headers.get("origin"), request.headers.get("host")):
        raise CsrfRefused
    if not signer(request).csrf_ok(nonce, token, purpose):
        raise CsrfRefused


async def action_form(request: Request, who: ViewerDep) -> dict[str, str]:
    """The posted form of a signed-in action, refused (403) without this session's token."""
    form = await read_form(request)
    check_csrf(request, form, who.session.nonce)
    return form


ActionForm = Annotated[dict[str, str], Depends(action_form)]


def _timed(request: Request, response: Response) -> Response:
    t0 = getattr(request.state, "t0", None)
    if t0 is not None:
        response.headers["Server-Timing"] = f"render;dur={(time.perf_counter() - t0) * 1000:.2f}"
    response.headers.update(SECURITY_HEADERS)
    return response


def render(request: Request, template: str, context: dict[str, Any], *,
           status_code: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    context.setdefault("request_path", request.url.path)
    context.setdefault("who", None)
    html = TEMPLATES.get_template(template).render(context)
    return _timed(request, HTMLResponse(html, status_code=status_code, headers=headers))  # type: ignore[return-value]


def redirect(request: Request, to: str) -> Response:
    return _timed(request, RedirectResponse(to, status_code=303))


def not_found(request: Request, who: Viewer | None, what: str) -> HTMLResponse:
    return render(request, "error.html", {"who": who, "title": f"{what} not found",
                                          "message": f"{what} not found"}, status_code=404)

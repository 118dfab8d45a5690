"""Signing in with an API key, signing out, and an admin's tenant switch."""

from __future__ import annotations

import secrets
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from omium.api.dashboard.session import COOKIE, LOGIN_COOKIE, LOGIN_TTL_S, SESSION_TTL_S
from omium.api.dashboard.web import (
    ActionForm,
    SignInRequired,
    ViewerDep,
    check_csrf,
    read_form,
    redirect,
    render,
    signer,
    stamp,
    store_of,
    viewer,
)
from omium.engine.tenants import hash_key

router = APIRouter(dependencies=[Depends(stamp)], include_in_schema=False)


def _cookie(request: Request, response: Response, name: str, value: str, max_age: float,
            path: str = "/") -> None:
    # Secure only over https: `omium serve` on loopback is plain http.
    response.set_cookie(name, value, max_age=int(max_age), path=path, httponly=True,
                        samesite="strict" if name == LOGIN_COOKIE else "lax",
                        secure=request.url.scheme == "https")


def _login_page(request: Request, error: str | None, status_code: int) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)
    response = render(request, "login.html", {
        "csrf": signer(request).csrf_token(nonce, "login"), "error": error},
        status_code=status_code)
    _cookie(request, response, LOGIN_COOKIE, nonce, LOGIN_TTL_S, path="/login")
    return response


@router.get("/")
async def home(request: Request) -> Response:
    try:
        await viewer(request)
    except SignInRequired:  # signed out (or a stale cookie): the sign-in page
        return redirect(request, "/login")
    return redirect(request, "/executions")


@router.get("/login")
async def login_form(request: Request) -> Response:
    return _login_page(request, None, 200)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    check_csrf(request, form, request.cookies.get(LOGIN_COOKIE), "login")
    key = form.get("api_key", "").strip()
    state = request.app.state
    who = await state.auth.principal(store_of(request), key) if key else None
    if who is None:
        return _login_page(request, "api_key: that key is not valid (unknown or revoked)",
                           401)
    value, _ = signer(request).issue(who.tenant_id, hash_key(key), who.admin)
    response = redirect(request, "/executions")
    _cookie(request, response, COOKIE, value, SESSION_TTL_S)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, who: ViewerDep, _: ActionForm) -> Response:
    # Ended in the store too, not only cleared from this browser: a copy of the cookie made
    # before signing out is refused from now on, in every process of the serve.
    await store_of(request).end_session(who.session.nonce, who.session.expires_at)
    response = redirect(request, "/login")
    response.delete_cookie(COOKIE, path="/")
    return response


@router.post("/tenant")
async def switch_tenant(request: Request, who: ViewerDep, form: ActionForm) -> Response:
    """An admin's tenant switcher: the same session, another tenant's pages."""
    wanted = form.get("tenant", "")
    if not who.admin:
        return render(request, "error.html", {
            "who": who, "title": "forbidden",
            "message": "tenant: only an admin key may switch tenants"}, status_code=403)
    if wanted not in who.tenants:
        return render(request, "error.html", {
            "who": who, "title": "tenant not found",
            "message": f"tenant: no tenant {wanted!r}"}, status_code=404)
    s = who.session
    value, _ = signer(request).issue(wanted, s.key_hash, s.admin, nonce=s.nonce,
                                     ttl_s=max(60.0, s.expires_at - time.time()))
    back = form.get("next", "")
    # Only a path of this site: never an open redirect to another host.
    response = redirect(request, back if back.startswith("/") and not back.startswith("//")
                        else "/executions")
    _cookie(request, response, COOKIE, value, SESSION_TTL_S)
    return response


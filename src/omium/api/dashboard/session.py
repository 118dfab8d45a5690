"""Dashboard sessions and CSRF tokens: a signed cookie, no server-side session table (only the
nonces of sessions signed out, until their cookies would expire: ``TenantStore.end_session``).

The cookie holds the acting tenant, the API key's sha256 (never the key), an admin flag, a
random nonce and an expiry, signed with HMAC-SHA256. The key is derived from
``OMIUM_GATEWAY_SECRET``, which every process of one ``omium serve`` shares, so a session
made by one process is accepted by the others (``--processes 2``). Every request re-reads the
key's row: a revoked key ends its sessions at once.

CSRF: each form carries ``HMAC(secret, "csrf|" + nonce)`` (the nonce is the session's), so a
page of another origin, which cannot read the cookie or the page, cannot forge it. The login
form, before any session, is protected the same way with a pre-session nonce in its own
short-lived cookie (a signed double-submit token), and by the Origin check below.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "omium_session"
LOGIN_COOKIE = "omium_login"
SESSION_TTL_S = 12 * 3600.0
LOGIN_TTL_S = 3600.0


@dataclass(frozen=True)
class Session:
    tenant_id: str | None  # the tenant the pages show (an admin may switch it)
    key_hash: str
    admin: bool
    nonce: str
    expires_at: float


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    def __init__(self, secret: bytes) -> None:
        # A key of its own: a gateway token can never pass as a session, nor the reverse.
        self._key = hmac.new(secret, b"omium dashboard session v1", hashlib.sha256).digest()

    def _mac(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())

    def issue(self, tenant_id: str | None, key_hash: str, admin: bool, *,
              nonce: str | None = None, ttl_s: float = SESSION_TTL_S) -> tuple[str, Session]:
        session = Session(tenant_id, key_hash, admin, nonce or secrets.token_urlsafe(16),
                          time.time() + ttl_s)
        body = _b64(json.dumps([session.tenant_id, session.key_hash, session.admin,
                                session.nonce, session.expires_at],
                               separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}", session

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie holds, or None (missing, tampered with, or expired)."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            tenant_id, key_hash, admin, nonce, expires_at = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return None
        if not isinstance(expires_at, int | float) or expires_at < time.time():
            return None
        return Session(tenant_id, str(key_hash), bool(admin), str(nonce), float(expires_at))

    def csrf_token(self, nonce: str, purpose: str = "csrf") -> str:
        return self._mac(f"{purpose}|{nonce}")

    def csrf_ok(self, nonce: str | None, token: str | None, purpose: str = "csrf") -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(token, self.csrf_token(nonce, purpose))


def same_origin(origin: str | None, host: str | None) -> bool:
    """An ``Origin`` header, when the browser sends one, must be this server's own."""
    if origin is None:
        return True  # older browsers omit it on same-origin posts: the token decides
    if host is None or origin == "null":
        return False
    return origin.split("://", 1)[-1] == host

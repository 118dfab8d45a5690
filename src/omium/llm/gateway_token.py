"""Execution-scoped gateway tokens: HMAC-signed (tenant, execution, agent, attempt, expiry).

An agent's ``ctx.llm_api_key`` is one of these. The gateway that verifies it needs no
database read and no shared state beyond the signing secret: the token itself says whom to
bill, and nothing in it can be changed without the secret. The secret is the deployment's
``OMIUM_GATEWAY_SECRET`` (``omium serve`` makes one per start and hands it to all its
processes when none is set); a CLI run signs with a random secret of its own process.

Format: ``omx1.<payload>.<signature>``, both base64url without padding; the payload is compact
JSON ``{"t": tenant, "e": execution, "a": agent, "n": attempt, "x": expiry}``, the signature
HMAC-SHA256 over ``omx1.<payload>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

PREFIX = "omx1."
MIN_SECRET_BYTES = 32
# Tokens verified lately, kept by their whole text: an agent presents the same one on every
# call, and its signature and payload need checking once. A token cannot be revoked, only
# expire, and the expiry is checked on every use, so the cache answers as verify would.
VERIFIED_CACHE = 1024


@dataclass(frozen=True)
class Grant:
    """Who a verified token bills: the execution's tenant, the execution and the agent."""

    tenant_id: str
    execution_id: str
    agent_id: str
    attempt: int
    expires_at: float


class TokenError(ValueError):
    """A token that is not valid (forged, altered, another deployment's, or expired)."""


def new_secret() -> bytes:
    return secrets.token_bytes(MIN_SECRET_BYTES)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"a gateway secret needs at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self.clock = clock  # wall time: tokens minted by a worker are checked by the API
        self._verified: dict[str, Grant] = {}  # insertion-ordered: the oldest goes first

    def _sign(self, signed: str) -> str:
        return _b64(hmac.new(self._secret, signed.encode(), hashlib.sha256).digest())

    def mint(self, tenant_id: str, execution_id: str, agent_id: str, attempt: int,
             ttl_s: float) -> str:
        payload = json.dumps({"t": tenant_id, "e": execution_id, "a": agent_id, "n": attempt,
                              "x": round(self.clock() + ttl_s, 3)}, separators=(",", ":"))
        signed = PREFIX + _b64(payload.encode())
        return f"{signed}.{self._sign(signed)}"

    def verify(self, token: str) -> Grant:
        """The grant a token carries; ``TokenError`` saying why when it is not valid."""
        grant = self._verified.get(token)
        if grant is None:
            grant = self._check(token)
            if len(self._verified) >= VERIFIED_CACHE:
                try:
                    self._verified.pop(next(iter(self._verified)), None)
                except (RuntimeError, StopIteration):  # another thread changed it meanwhile
                    pass
            self._verified[token] = grant
        if grant.expires_at <= self.clock():
            self._verified.pop(token, None)
            raise TokenError("this execution token has expired (it is valid while its agent "
                             "runs; a new attempt gets a new one)")
        return grant

    def _check(self, token: str) -> Grant:
        """The signature and payload (not the expiry)."""
        signed, _, signature = token.rpartition(".")
        if not signed.startswith(PREFIX) or not hmac.compare_digest(
                self._sign(signed).encode(), signature.encode()):
            raise TokenError("invalid execution token")
        try:
            data = json.loads(_unb64(signed[len(PREFIX):]))
            grant = Grant(str(data["t"]), str(data["e"]), str(data["a"]), int(data["n"]),
                          float(data["x"]))
        except (ValueError, KeyError, TypeError) as err:  # signed by us: only a bug lands here
            raise TokenError(f"invalid execution token ({err})") from None
        return grant


def is_execution_token(token: str) -> bool:
    return token.startswith(PREFIX)

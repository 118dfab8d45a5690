"""Opaque keyset cursors: urlsafe base64 of ``"created_at|id"`` of the last row returned."""

from __future__ import annotations

import base64
import binascii

from fastapi import HTTPException


def encode_cursor(created_at: float, row_id: str) -> str:
    raw = f"{created_at!r}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    """The ``before`` keyset for the store; a malformed cursor is a 422."""
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, row_id = raw.split("|", 1)
        return float(created), row_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise HTTPException(422, detail=[{"loc": ["query", "cursor"],
                                          "msg": "not a cursor this API returned",
                                          "type": "value_error"}]) from None

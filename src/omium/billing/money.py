"""Exact money: Decimal dollars in, integer nano-dollars stored, Decimal credits shown.

1 credit = $0.01 = 10,000,000 nano-dollars. Prices with at most 6 decimals per 1K tokens give
whole nano-dollars per call, so no rounding happens at all; a finer price is rounded half-even
to the nano-dollar *once per call*, and the record stores exactly what was charged, so a
tenant's records always sum to the drop in its balance.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

NANO_PER_DOLLAR = 10**9
NANO_PER_CREDIT = 10**7


def dollars_to_nano(dollars: Decimal) -> int:
    return int((dollars * NANO_PER_DOLLAR).to_integral_value(rounding=ROUND_HALF_EVEN))


def nano_to_dollars(nano: int) -> Decimal:
    return Decimal(nano) / NANO_PER_DOLLAR


def nano_to_credits(nano: int) -> Decimal:
    return Decimal(nano) / NANO_PER_CREDIT


def credits_to_nano(credits: str | int | Decimal) -> int:
    """Parse a credit amount exactly; more precision than a nano-dollar is refused."""
    try:
        value = Decimal(str(credits))
    except InvalidOperation:
        raise ValueError(f"not a number: {credits!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {credits!r}")
    nano = value * NANO_PER_CREDIT
    if nano != nano.to_integral_value():
        raise ValueError(f"{credits} credits is finer than one nano-dollar (7 decimals max)")
    return int(nano)

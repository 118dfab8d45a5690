"""Billing: exact money, tenant balances, the usage ledger and budgets."""

from omium.billing.ledger import Ledger
from omium.billing.money import credits_to_nano, dollars_to_nano, nano_to_credits

__all__ = ["Ledger", "credits_to_nano", "dollars_to_nano", "nano_to_credits"]

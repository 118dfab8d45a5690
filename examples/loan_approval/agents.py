"""Deterministic, offline agents for the loan-approval example.

Every agent is a plain function ``(inputs: dict, ctx) -> dict``. ``ctx`` is the engine's
context (``execution_id``, ``agent_id``, ``attempt``, ``idempotency_key``); these agents are
pure functions of their inputs, so they ignore it and are safe to retry or replay.
Nothing here reads the clock, the network or random state: same input, same output.
"""

from __future__ import annotations

import re
import statistics
from datetime import date, datetime, timedelta
from typing import Any

REQUIRED_FIELDS = ("name", "date_of_birth", "national_id", "address", "email")
DEFAULT_AS_OF = "2026-01-01"  # fixed reference date: age must not depend on when we run
MIN_AGE = 18
# Fictitious watch-list; compared after case-folding and collapsing whitespace.
SANCTIONS_LIST = frozenset({"viktor krall", "mara delacroix-ruiz", "osman tepliy"})
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")

VELOCITY_WINDOW = timedelta(hours=1)
VELOCITY_MAX = 5  # more than this many transactions inside one window is suspicious
SPIKE_FACTOR = 5.0  # a transaction above 5x the median amount is a spike
HIGH_RISK_MERCHANTS = ("casino", "crypto", "gift card", "wire transfer", "betting")
# Risk weights sum to 1.0, so risk_score stays in [0, 1]. Foreign activity is scaled by the
# share of foreign transactions because one trip abroad is normal, a pattern is not.
RISK_WEIGHTS = {"velocity": 0.35, "amount_spike": 0.25, "high_risk_merchant": 0.25,
                "foreign_country": 0.15}
REJECT_RISK = 0.7

APPROVE_SCORE = 650
MAX_DTI = 0.43  # the usual "qualified mortgage" debt-to-income ceiling


def _luhn_ok(national_id: str) -> bool:
    """Luhn mod-10 over the digits of ``national_id``; '-' and ' ' separators are ignored."""
    digits = national_id.replace("-", "").replace(" ", "")
    if len(digits) < 8 or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)  # double every second digit from the right
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _age(dob: date, as_of: date) -> int:
    """Whole years between ``dob`` and ``as_of``."""
    return as_of.year - dob.year - ((as_of.month, as_of.day) < (dob.month, dob.day))


def kyc(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Identity checks; never raises on bad data, it reports failed checks instead."""
    applicant = inputs["applicant"]
    reasons: list[str] = []
    missing = [f for f in REQUIRED_FIELDS if not str(applicant.get(f) or "").strip()]
    try:
        dob: date | None = date.fromisoformat(str(applicant.get("date_of_birth")))
    except ValueError:
        dob = None
    as_of = date.fromisoformat(applicant.get("as_of") or inputs.get("as_of", DEFAULT_AS_OF))
    name_key = " ".join(str(applicant.get("name", "")).split()).casefold()
    checks = {
        "required_fields": not missing,
        "date_of_birth_valid": dob is not None,
        "adult": dob is not None and _age(dob, as_of) >= MIN_AGE,
        "national_id_checksum": _luhn_ok(str(applicant.get("national_id", ""))),
        "email_format": bool(EMAIL_RE.match(str(applicant.get("email", "")))),
        "not_sanctioned": name_key not in SANCTIONS_LIST,
    }
    if missing:
        reasons.append(f"missing fields: {', '.join(missing)}")
    messages = {
        "date_of_birth_valid": "date_of_birth is not an ISO date (YYYY-MM-DD)",
        "adult": f"applicant is under {MIN_AGE} as of {as_of.isoformat()}",
        "national_id_checksum": "national_id fails the Luhn checksum",
        "email_format": "email address is malformed",
        "not_sanctioned": "name matches the sanctions list",
    }
    if dob is None:  # "under 18" would be misleading when the date is simply unreadable
        messages.pop("adult")
    reasons += [msg for check, msg in messages.items() if not checks[check]]
    verified = all(checks.values())
    return {"applicant": applicant, "kyc": {"verified": verified, "checks": checks,
                                            "reasons": reasons}}


def _max_in_window(times: list[datetime]) -> int:
    """Largest number of timestamps inside any VELOCITY_WINDOW (two-pointer sweep)."""
    times, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > VELOCITY_WINDOW:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def fraud(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Rule-based transaction screening; risk_score is the weighted sum of fired rules."""
    applicant = inputs["applicant"]
    txs = applicant.get("transactions", [])
    home = applicant.get("country")
    flags: list[str] = []
    score = 0.0
    if txs:
        burst = _max_in_window([datetime.fromisoformat(t["timestamp"]) for t in txs])
        if burst > VELOCITY_MAX:
            flags.append(f"velocity: {burst} transactions within 1h")
            score += RISK_WEIGHTS["velocity"]
        median = statistics.median(t["amount"] for t in txs)
        spikes = [t["amount"] for t in txs if t["amount"] > SPIKE_FACTOR * median]
        if spikes:
            flags.append(f"amount_spike: {max(spikes):g} > {SPIKE_FACTOR:g}x median {median:g}")
            score += RISK_WEIGHTS["amount_spike"]
        risky = sorted({t["merchant"] for t in txs
                        if any(k in t["merchant"].casefold() for k in HIGH_RISK_MERCHANTS)})
        if risky:
            flags.append(f"high_risk_merchant: {', '.join(risky)}")
            score += RISK_WEIGHTS["high_risk_merchant"]
        abroad = [t for t in txs if t["country"] != home]
        if abroad:
            countries = ", ".join(sorted({t["country"] for t in abroad}))
            flags.append(f"foreign_country: {len(abroad)}/{len(txs)} in {countries}")
            score += RISK_WEIGHTS["foreign_country"] * len(abroad) / len(txs)
    return {**inputs, "fraud": {"risk_score": round(min(score, 1.0), 3), "flags": flags}}


def _features(applicant: dict[str, Any]) -> dict[str, float]:
    """Credit features shared by the scorecard and the reviewers."""
    income = float(applicant["annual_income"])
    return {
        "annual_income": income,
        # Existing monthly debt over gross monthly income (the new loan is not included).
        "dti": float(applicant["monthly_debt"]) / (income / 12) if income > 0 else 9.99,
        "history_years": float(applicant["credit_history_years"]),
        "missed_payments": float(applicant["missed_payments_12m"]),
        "loan_to_income": float(applicant["requested_amount"]) / income if income else 9.99,
    }


# Points scorecard: (feature, [(upper_or_lower_bound, points), ...], fallback points).
# "ge" bins reward higher values, "le" bins reward lower ones. Base 500; the bins span
# exactly 300..850, so the score needs no clamping but we clamp anyway for safety.
SCORECARD = [
    ("annual_income", "ge", [(100_000, 80), (60_000, 50), (35_000, 20)], 0),
    ("dti", "le", [(0.20, 100), (0.36, 60), (0.43, 25), (0.50, -20)], -60),
    ("history_years", "ge", [(10, 70), (5, 45), (2, 20)], 0),
    ("missed_payments", "le", [(0, 50), (1, 0), (2, -40)], -90),
    ("loan_to_income", "le", [(0.25, 50), (0.5, 25), (1.0, 0)], -50),
]


def _scorecard(feats: dict[str, float]) -> tuple[int, list[str]]:
    """Return the 300..850 score and one 'feature value -> points' line per feature."""
    total, lines = 500, []
    for name, op, bins, fallback in SCORECARD:
        value = feats[name]
        pts = next((p for bound, p in bins
                    if (value >= bound if op == "ge" else value <= bound)), fallback)
        total += pts
        lines.append(f"{name} {round(value, 2):g} -> {pts:+d}")
    return max(300, min(850, total)), lines


def credit(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Scorecard credit decision that also enforces the KYC and fraud gates."""
    applicant, kyc_out, fraud_out = inputs["applicant"], inputs["kyc"], inputs["fraud"]
    feats = _features(applicant)
    score, reasons = _scorecard(feats)
    risk = float(fraud_out["risk_score"])
    gates = []
    if not kyc_out["verified"]:
        gates.append("KYC not verified: " + "; ".join(kyc_out["reasons"]))
    if risk >= REJECT_RISK:
        gates.append(f"fraud risk {risk:.2f} >= {REJECT_RISK}")
    if score < APPROVE_SCORE:
        gates.append(f"credit score {score} < {APPROVE_SCORE}")
    if feats["dti"] > MAX_DTI:
        gates.append(f"debt-to-income {feats['dti']:.2f} > {MAX_DTI}")
    return {
        "applicant_id": applicant["applicant_id"],
        "decision": "reject" if gates else "approve",
        "credit_score": score,
        "reasons": gates + reasons,
        "kyc_verified": bool(kyc_out["verified"]),
        "risk_score": risk,
    }


def _review(applicant: dict[str, Any], reviewer: str, weights: dict[str, float],
            cutoff: float, max_dti: float, max_missed: int) -> dict[str, Any]:
    """Weighted 0..100 score over normalised features plus hard limits on DTI and misses."""
    f = _features(applicant)
    # Each feature is mapped to [0, 1] where 1 is best, so weights are comparable.
    norm = {
        "annual_income": min(f["annual_income"] / 150_000, 1.0),
        "dti": 1 - min(f["dti"] / 0.6, 1.0),
        "history_years": min(f["history_years"] / 15, 1.0),
        "missed_payments": 1 - min(f["missed_payments"] / 4, 1.0),
        "loan_to_income": 1 - min(f["loan_to_income"] / 1.5, 1.0),
    }
    score = round(100 * sum(w * norm[k] for k, w in weights.items()), 1)
    reasons = []
    if score < cutoff:
        reasons.append(f"score {score} < cutoff {cutoff}")
    if f["dti"] > max_dti:
        reasons.append(f"debt-to-income {f['dti']:.2f} > {max_dti}")
    if f["missed_payments"] > max_missed:
        reasons.append(f"missed payments {f['missed_payments']:g} > {max_missed}")
    decision = "reject" if reasons else "approve"
    if not reasons:
        reasons.append(f"score {score} >= cutoff {cutoff}, within DTI and payment limits")
    return {"decision": decision, "score": score, "reviewer": reviewer, "reasons": reasons}


def conservative_reviewer(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Weighs repayment behaviour heavily; no missed payments, DTI <= 0.36, cutoff 70."""
    weights = {"annual_income": 0.15, "dti": 0.30, "history_years": 0.20,
               "missed_payments": 0.25, "loan_to_income": 0.10}
    return _review(inputs["applicant"], "conservative", weights, 70, 0.36, 0)


def balanced_reviewer(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Even weights; DTI <= 0.43, at most 1 missed payment, cutoff 50."""
    weights = {"annual_income": 0.20, "dti": 0.25, "history_years": 0.20,
               "missed_payments": 0.20, "loan_to_income": 0.15}
    return _review(inputs["applicant"], "balanced", weights, 50, 0.43, 1)


def growth_reviewer(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Favours income and affordability of the loan; DTI <= 0.50, cutoff 45."""
    weights = {"annual_income": 0.35, "dti": 0.15, "history_years": 0.10,
               "missed_payments": 0.15, "loan_to_income": 0.25}
    return _review(inputs["applicant"], "growth", weights, 45, 0.50, 2)

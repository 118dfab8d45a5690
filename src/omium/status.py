"""Execution statuses: one spelling of each for the store, the engine, the API and the CLI.

A ``StrEnum``: each member is the string that is stored and answered, so it compares equal to
(and serialises as) the plain text read back from a database or a JSON body.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    AWAITING_REVIEW = "awaiting_review"
    CANCELLED = "cancelled"
    # Never stored: the answer to a cancel request for a running execution, flagged for its
    # worker to stop at its next lease renewal.
    CANCELLING = "cancelling"


# What an execution can be stored as, in lifecycle order (the API's status filter lists these).
STATUSES = (Status.QUEUED, Status.RUNNING, Status.COMPLETED, Status.FAILED,
            Status.AWAITING_REVIEW, Status.CANCELLED)
# Where a drive ends: nothing but a review, a resume or a cancel changes them again.
TERMINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.AWAITING_REVIEW)

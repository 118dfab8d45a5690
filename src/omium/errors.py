"""One exception hierarchy for Omium (as httpx does): catch ``OmiumError`` for all of them."""

from __future__ import annotations

from dataclasses import dataclass

import jsonschema


class OmiumError(Exception):
    """Base class of every error Omium raises on purpose."""


@dataclass(frozen=True)
class FieldProblem:
    """One problem in user input: where it is (``agents[1].framework``) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class WorkflowValidationError(OmiumError):
    """A workflow definition is malformed; ``problems`` names every field and reason."""

    def __init__(self, problems: list[FieldProblem], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid workflow{where} ({len(problems)} problem(s)):\n{lines}")


class InputValidationError(OmiumError):
    """Execution inputs do not match the input schema of the agents that receive them."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("invalid inputs:\n" + "\n".join(f"  - {p}" for p in problems))


class HandoffValidationError(jsonschema.ValidationError, OmiumError):
    """Handoff data violates the receiver's input schema.

    Subclasses ``jsonschema.ValidationError`` so ``pytest.raises(ValidationError)`` (the plan's
    test) and callers that already handle jsonschema errors keep working.
    """

    receiver: str | None = None

    @classmethod
    def from_error(cls, err: jsonschema.ValidationError,
                   receiver: str | None = None) -> HandoffValidationError:
        """Wrap the error ``omium.schemas.first_error`` gives (jsonschema-rs's verdict in a
        ``jsonschema.ValidationError``), keeping its path so ``json_path`` names the field."""
        new = cls(err.message, validator=err.validator, path=err.path, cause=err.cause,
                  context=err.context, validator_value=err.validator_value,
                  instance=err.instance, schema=err.schema, schema_path=err.schema_path)
        new.receiver = receiver
        return new

    def __str__(self) -> str:
        to = f" for {self.receiver}" if self.receiver else ""
        return f"handoff data invalid{to} at {self.json_path}: {self.message}"


class SchemaCompileError(OmiumError, ValueError):
    """jsonschema-rs refuses a schema (meta-schema violation, a pattern its linear-time regex
    engine cannot compile, a reference outside the schema); ``path`` is where inside the
    schema, ``/``-joined (``properties/x/pattern``)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"invalid JSON Schema at {path or '(root)'}: {reason}")


class ExecutionNotFoundError(OmiumError):
    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(f"no execution with id {execution_id!r}")


class ExecutionStateError(OmiumError):
    """An operation is not valid in the execution's current status (e.g. review a completed run)."""


class ReviewDecisionError(OmiumError, ValueError):
    """A review's decision does not fit what the execution waits on (a split vote or a paused
    failure takes approve or reject; an agent's own request takes any text)."""

    def __init__(self, reason: str) -> None:
        self.problems = [FieldProblem("decision", reason)]
        super().__init__(f"decision: {reason}")


class IdempotencyKeyReusedError(OmiumError):
    """An idempotency key was used again with a different workflow or inputs (Stripe's rule:
    a key names one request; replaying it with another body is a client error)."""

    def __init__(self, key: str, execution_id: str) -> None:
        self.key = key
        self.execution_id = execution_id
        super().__init__(f"idempotency_key {key!r} was already used for execution "
                         f"{execution_id} with a different workflow or inputs")


class DatabaseUnavailableError(OmiumError):
    """The database could not be opened or reached (a path that cannot be written, a file
    that is not a database, a server refusing connections)."""

    def __init__(self, url: str, cause: BaseException) -> None:
        self.url = _without_password(url)
        reason = str(cause) or type(cause).__name__
        super().__init__(f"cannot open the database {self.url}: {reason}")


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class StaleLeaseError(OmiumError):
    """A write carried an old lease epoch: another worker owns the execution now."""


class AgentError(OmiumError):
    """Raised by agents to signal a failure with an explicit failure type."""

    failure_type = "exception"


class AgentCrashedError(AgentError):
    """An agent raised what would end the process or confuse the event loop (SystemExit,
    KeyboardInterrupt, GeneratorExit, a CancelledError nobody asked for, StopIteration from a
    thread): it is the agent's failure, carried as an ordinary exception. ``original`` is it."""

    def __init__(self, original: BaseException) -> None:
        self.original = original
        text = str(original)
        super().__init__(f"{type(original).__name__}: {text}" if text
                         else type(original).__name__)


class AgentTimeoutError(AgentError):
    failure_type = "timeout"


class OutputValidationError(AgentError):
    failure_type = "validation_error"


class LLMError(AgentError):
    """Base class for LLM-call failures; classified as ``llm_error``."""

    failure_type = "llm_error"


class LLMRequestError(LLMError):
    """The request itself was refused (400, 401, 404, 422): no fallback, not the backend's
    fault. ``status`` and ``body`` are the server's."""

    def __init__(self, message: str, *, backend: str, status: int, body: object = None) -> None:
        super().__init__(f"{backend} refused the request ({status}): {message}")
        self.backend, self.status, self.body = backend, status, body


class AllBackendsFailedError(LLMError):
    """Every backend failed or was skipped; ``errors`` maps backend name to its error."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        lines = "; ".join(f"{name}: {error}" for name, error in errors.items())
        super().__init__(f"all LLM backends failed: {lines or 'no backend configured'}")


class NoLLMBackendError(LLMError):
    """An LLM call with no backend configured at all: nothing was sent (the config, not the
    backends, is at fault; validation refuses such workflows before they run)."""


class LLMConfigError(OmiumError):
    """The LLM backend or price configuration is invalid (names the field)."""


class InsufficientCreditsError(OmiumError):
    """The tenant's balance cannot cover the call's estimated cost; nothing was sent."""

    def __init__(self, tenant_id: str, balance: object, needed: object) -> None:
        self.tenant_id, self.balance, self.needed = tenant_id, balance, needed
        super().__init__(f"tenant {tenant_id!r} has {balance} credits; this call may cost up "
                         f"to {needed} credits")


class UnknownTenantError(OmiumError):
    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        super().__init__(f"no tenant {tenant_id!r} (create it, or add credits to it)")

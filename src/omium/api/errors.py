"""Every error is JSON: ``{"detail": str}`` or, for field problems, ``{"detail": [{loc, msg}]}``.

Workflow and input problems name the field as Omium does elsewhere
(``agents[0] (a).framework``, ``inputs.applicant``) in ``loc``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from omium.api.auth import TenantExistsError
from omium.errors import (
    ExecutionNotFoundError,
    ExecutionStateError,
    FieldProblem,
    InputValidationError,
    WorkflowValidationError,
)

log = logging.getLogger("omium.api")


def problems_response(problems: list[FieldProblem], kind: str) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": [
        {"loc": p.path, "msg": p.reason, "type": kind} for p in problems]})


async def _workflow_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WorkflowValidationError)
    return problems_response(exc.problems, "workflow_invalid")


async def _inputs_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InputValidationError)
    return problems_response(exc.problems, "inputs_invalid")


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(exc)})


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(exc)})


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(status_code=500, content={"detail": "internal server error"})


def install(app: FastAPI) -> None:
    app.add_exception_handler(WorkflowValidationError, _workflow_invalid)
    app.add_exception_handler(InputValidationError, _inputs_invalid)
    app.add_exception_handler(ExecutionNotFoundError, _not_found)
    app.add_exception_handler(ExecutionStateError, _conflict)
    app.add_exception_handler(TenantExistsError, _conflict)
    app.add_exception_handler(Exception, _internal)

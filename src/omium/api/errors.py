"""Every error is JSON: ``{"detail": str}`` or, for field problems, ``{"detail": [{loc, msg}]}``.

Workflow and input problems name the field as Omium does elsewhere
(``agents[0] (a).framework``, ``inputs.applicant``) in ``loc``. ``API_ERRORS`` and
``document_errors`` put these shapes in the OpenAPI spec for every status a route can answer.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from omium.api.models import ErrorOut, ValidationErrorOut
from omium.engine.tenants import TenantExistsError
from omium.errors import (
    ExecutionNotFoundError,
    ExecutionStateError,
    FieldProblem,
    InputValidationError,
    ReviewDecisionError,
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


async def _decision_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ReviewDecisionError)
    return problems_response(exc.problems, "decision_invalid")


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
    app.add_exception_handler(ReviewDecisionError, _decision_invalid)
    app.add_exception_handler(ExecutionNotFoundError, _not_found)
    app.add_exception_handler(ExecutionStateError, _conflict)
    app.add_exception_handler(TenantExistsError, _conflict)
    app.add_exception_handler(Exception, _internal)


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


# What any /api/v1 route may answer besides its own outcomes (each route adds 404/409).
API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("malformed request (e.g. an invalid Content-Length or body)"),
    401: _error("missing, invalid or revoked API key"),
    403: _error("this key may not do this (a tenant's key on an admin route, or an admin "
                "key bound to no tenant on a tenant's route)"),
    408: _error("the request body did not arrive within OMIUM_BODY_TIMEOUT_S"),
    413: _error("request body over OMIUM_MAX_BODY_BYTES"),
    422: {"model": ValidationErrorOut, "description": "invalid fields, each named in loc"},
}
# Routes without a path parameter that still look something up by a client's id.
_NOT_FOUND_ALSO = {("post", "/api/v1/executions"): "no workflow with that workflow_id"}
_REF = "#/components/schemas/"


def document_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` true to what the API answers: every 4xx has its body's model
    (routes that list a status without one get ``ErrorOut``), and a route with a path
    parameter documents its 404."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, summary=app.summary,
                               description=app.description, routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in (ErrorOut, ValidationErrorOut):
                for name, schema in model.model_json_schema(
                        ref_template=_REF + "{model}").get("$defs", {}).items():
                    schemas.setdefault(name, schema)
                schemas.setdefault(model.__name__, {k: v for k, v in model.model_json_schema(
                    ref_template=_REF + "{model}").items() if k != "$defs"})
            for path, operations in spec.get("paths", {}).items():
                for method, op in operations.items():
                    _fill(op["responses"], path, method)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _fill(responses: dict[str, Any], path: str, method: str) -> None:
    also = _NOT_FOUND_ALSO.get((method, path))
    if "{" in path or also:
        responses.setdefault("404", {"description": also or "no such resource (another "
                                     "tenant's is not found either)"})
    for code, response in responses.items():
        if code.startswith("4") and "content" not in response:
            model = ValidationErrorOut if code == "422" else ErrorOut
            response["content"] = {"application/json": {
                "schema": {"$ref": _REF + model.__name__}}}

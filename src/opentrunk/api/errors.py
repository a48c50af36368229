"""The Zentrunk error body `{"api_id", "error"}` for every failure, and the mapping of
service, validation and routing errors to status codes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from opentrunk.api.middleware import api_id_of
from opentrunk.services.errors import Conflict, InvalidParameter, MissingParameter, NotFound

log = logging.getLogger("opentrunk.api")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    api_id = api_id_of(request.scope.get("state", {}))
    return JSONResponse({"api_id": api_id, "error": message}, status_code=status, headers=headers)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path") else []
    return ".".join(parts)


def validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """422 when a required parameter is missing, 400 for everything else."""
    errors = list(exc.errors())
    for err in errors:
        if err.get("type") == "json_invalid":
            return 400, "request body is not valid JSON"
    for err in errors:
        loc = tuple(err.get("loc", ()))
        if loc == ("body",):
            if err.get("type") == "missing":
                return 422, "a JSON object request body is required"
            return 400, "request body must be a JSON object (Content-Type: application/json)"
    missing = [_field_name(tuple(e.get("loc", ()))) for e in errors if e.get("type") == "missing"]
    if missing:
        return 422, f"missing required parameter: {', '.join(sorted(set(missing)))}"
    parts = []
    for err in errors[:5]:
        field = _field_name(tuple(err.get("loc", ()))) or "request"
        parts.append(f"{field}: {err.get('msg', 'invalid value')}")
    return 400, "invalid parameter: " + "; ".join(parts)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method some route accepts at this path. Starlette reports only the first
    matching route's methods, and GET, POST and DELETE on one path are separate routes,
    so ask the router about each method in turn."""
    allowed = []
    for method in _METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(request, exc.status, exc.message, exc.headers)

    async def on_invalid(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, 400, str(exc))

    async def on_missing(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, 422, str(exc))

    async def on_not_found(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, 404, str(exc.args[0]) if exc.args else "not found")

    async def on_conflict(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, 409, str(exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        status, message = validation_message(exc)
        return error_response(request, status, message)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            message = f"not found: no resource at {request.url.path}"
        elif exc.status_code == 405:
            allow = allowed_methods(request)
            message = f"method {request.method} not allowed here; allowed: {allow}"
            return error_response(request, 405, message, {"Allow": allow})
        else:
            message = str(exc.detail)
        return error_response(request, exc.status_code, message, dict(exc.headers or {}))

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        api_id = api_id_of(request.scope.get("state", {}))
        log.error("internal error api_id=%s: %s", api_id, type(exc).__name__, exc_info=exc)
        return JSONResponse(
            {"api_id": api_id, "error": f"internal server error (api_id {api_id})"},
            status_code=500,
            headers={"X-Api-Id": api_id},
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(InvalidParameter, on_invalid)
    app.add_exception_handler(MissingParameter, on_missing)
    app.add_exception_handler(NotFound, on_not_found)
    app.add_exception_handler(Conflict, on_conflict)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)

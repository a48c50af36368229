"""Helpers every route uses: api_id, paging parameters, list envelopes, error docs, and
the prebuilt JSON answer of the customer routes.

Customer routes are `async def` and return `answer(...)`, a JSONResponse of a dict the
service layer shaped, instead of letting FastAPI validate it against a `response_model`:
for a `def` route that validation ran in a second threadpool hop, and together they cost
more than the database read. The response models stay in the OpenAPI document through
`documented(...)` (`responses=`), and tests/api check every answer against its model.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from opentrunk.api.schemas import ErrorBody
from opentrunk.services.paging import MAX_LIMIT, Page

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size, 1 to 20")]
Offset = Annotated[int, Query(ge=0, le=10**9, description="objects to skip")]

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "invalid parameter"),
        (401, "authentication failed"),
        (404, "not found"),
        (405, "method not allowed"),
        (413, "request body too large"),
        (422, "required parameter missing"),
        (429, "rate limit exceeded"),
    )
}
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"model": ErrorBody, "description": "admin API disabled"},
    409: {"model": ErrorBody, "description": "conflict"},
}


def documented(model: type[BaseModel], status: int = 200) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route answering `model` with `status`, plus the error bodies."""
    return {status: {"model": model, "description": "Successful Response"}, **ERRORS}


def answer(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def api_id(request: Request) -> str:
    return str(request.state.api_id)


def _page_link(request: Request, limit: int, offset: int) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("limit", "offset")]
    params += [("limit", str(limit)), ("offset", str(offset))]
    return f"{request.url.path}?{urlencode(params)}"


def list_body(request: Request, page: Page) -> dict[str, Any]:
    nxt = (
        _page_link(request, page.limit, page.offset + page.limit)
        if page.offset + page.limit < page.total_count
        else None
    )
    prev = (
        _page_link(request, page.limit, max(0, page.offset - page.limit))
        if page.offset > 0
        else None
    )
    return {
        "api_id": api_id(request),
        "meta": {
            "limit": page.limit,
            "offset": page.offset,
            "total_count": page.total_count,
            "previous": prev,
            "next": nxt,
        },
        "objects": page.objects,
    }

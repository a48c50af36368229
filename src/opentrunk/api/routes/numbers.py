"""Number routes (the subset of the Number API that SIP trunking needs); async, see
opentrunk.api.common."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from opentrunk.api.auth import Caller, customer
from opentrunk.api.common import ERRORS, Limit, Offset, answer, api_id, documented, list_body
from opentrunk.api.routes.writes import Writes, deleted
from opentrunk.api.schemas import NumberList, NumberOne, NumberUpdate, NumberWritten
from opentrunk.domain.validation import InvalidParameter
from opentrunk.services import numbers as svc

router = APIRouter(prefix="/v1/Account/{auth_id}/Number", tags=["Number"])
Auth = Annotated[Caller, Depends(customer)]
WRITES = Writes("number", updated="changed")


@router.get("/", response_model=None, responses=documented(NumberList))
async def list_numbers(
    request: Request,
    caller: Auth,
    limit: Limit = 20,
    offset: Offset = 0,
    number_startswith: Annotated[str | None, Query(max_length=15)] = None,
    type: Literal["local", "mobile", "tollfree", "premium", "other"] | None = None,
    alias: Annotated[str | None, Query(max_length=100)] = None,
) -> JSONResponse:
    prefix = None
    if number_startswith:
        prefix = number_startswith.lstrip("+")
        if not prefix.isdigit():
            raise InvalidParameter("number_startswith must be digits")
    page = await run_in_threadpool(
        svc.list_numbers,
        caller.store,
        caller.account_id,
        caller.auth_id,
        limit=limit,
        offset=offset,
        number_startswith=prefix,
        number_type_filter=type,
        alias=alias,
    )
    return answer(list_body(request, page))


@router.get("/{number}/", response_model=None, responses=documented(NumberOne))
async def get_number(request: Request, caller: Auth, number: str) -> JSONResponse:
    found = await run_in_threadpool(
        svc.get_number, caller.store, caller.account_id, caller.auth_id, number
    )
    return answer({"api_id": api_id(request), **found})


@router.post(
    "/{number}/", status_code=202, response_model=None, responses=documented(NumberWritten, 202)
)
async def update_number(
    request: Request, caller: Auth, number: str, body: NumberUpdate
) -> JSONResponse:
    changes: dict[str, Any] = body.model_dump(include=body.model_fields_set)
    return await WRITES.update(request, caller, svc.update_number, number, **changes)


@router.delete("/{number}/", status_code=204, response_class=Response, responses=ERRORS)
async def delete_number(caller: Auth, number: str) -> Response:
    return await deleted(caller, svc.release_number, number)

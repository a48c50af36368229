"""Zentrunk origination URI routes (async; see opentrunk.api.common)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from opentrunk.api.auth import Caller, customer
from opentrunk.api.common import ERRORS, Limit, Offset, answer, api_id, documented, list_body
from opentrunk.api.schemas import URICreate, URIList, URIOne, URIUpdate, URIWritten
from opentrunk.services import uris as svc

router = APIRouter(prefix="/v1/Account/{auth_id}/Zentrunk/URI", tags=["URI"])
Auth = Annotated[Caller, Depends(customer)]


@router.get("/", response_model=None, responses=documented(URIList))
async def list_uris(
    request: Request, caller: Auth, limit: Limit = 20, offset: Offset = 0
) -> JSONResponse:
    page = await run_in_threadpool(svc.list_uris, caller.store, caller.account_id, limit, offset)
    return answer(list_body(request, page))


@router.post("/", status_code=201, response_model=None, responses=documented(URIWritten, 201))
async def create_uri(request: Request, caller: Auth, body: URICreate) -> JSONResponse:
    values = body.model_dump()
    uri_uuid = await run_in_threadpool(svc.create_uri, caller.store, caller.account_id, values)
    return answer(
        {"api_id": api_id(request), "message": "URI created successfully.", "uri_uuid": uri_uuid},
        201,
    )


@router.get("/{uri_uuid}/", response_model=None, responses=documented(URIOne))
async def get_uri(request: Request, caller: Auth, uri_uuid: str) -> JSONResponse:
    found = await svc.read_uri(caller.store, caller.account_id, uri_uuid)
    return answer({"api_id": api_id(request), **found})


@router.post(
    "/{uri_uuid}/", status_code=202, response_model=None, responses=documented(URIWritten, 202)
)
async def update_uri(
    request: Request, caller: Auth, uri_uuid: str, body: URIUpdate
) -> JSONResponse:
    changes = body.model_dump(include=body.model_fields_set)
    await run_in_threadpool(svc.update_uri, caller.store, caller.account_id, uri_uuid, changes)
    return answer(
        {"api_id": api_id(request), "message": "URI updated successfully.", "uri_uuid": uri_uuid},
        202,
    )


@router.delete("/{uri_uuid}/", status_code=204, response_class=Response, responses=ERRORS)
async def delete_uri(caller: Auth, uri_uuid: str) -> Response:
    await run_in_threadpool(svc.delete_uri, caller.store, caller.account_id, uri_uuid)
    return Response(status_code=204)

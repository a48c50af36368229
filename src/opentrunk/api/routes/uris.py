"""Zentrunk origination URI routes (async; see opentrunk.api.common)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from opentrunk.api.auth import Caller, customer
from opentrunk.api.common import ERRORS, Limit, Offset, answer, api_id, documented, list_body
from opentrunk.api.routes.writes import Writes, deleted
from opentrunk.api.schemas import URICreate, URIList, URIOne, URIUpdate, URIWritten
from opentrunk.services import uris as svc

router = APIRouter(prefix="/v1/Account/{auth_id}/Zentrunk/URI", tags=["URI"])
Auth = Annotated[Caller, Depends(customer)]
WRITES = Writes(
    "uri_uuid", created="URI created successfully.", updated="URI updated successfully."
)


@router.get("/", response_model=None, responses=documented(URIList))
async def list_uris(
    request: Request, caller: Auth, limit: Limit = 20, offset: Offset = 0
) -> JSONResponse:
    page = await run_in_threadpool(svc.list_uris, caller.store, caller.account_id, limit, offset)
    return answer(list_body(request, page))


@router.post("/", status_code=201, response_model=None, responses=documented(URIWritten, 201))
async def create_uri(request: Request, caller: Auth, body: URICreate) -> JSONResponse:
    return await WRITES.create(request, caller, svc.create_uri, body.model_dump())


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
    return await WRITES.update(
        request, caller, svc.update_uri, uri_uuid, body.model_dump(include=body.model_fields_set)
    )


@router.delete("/{uri_uuid}/", status_code=204, response_class=Response, responses=ERRORS)
async def delete_uri(caller: Auth, uri_uuid: str) -> Response:
    return await deleted(caller, svc.delete_uri, uri_uuid)

"""Zentrunk IPAccessControlList routes (async; see opentrunk.api.common)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from opentrunk.api.auth import Caller, customer
from opentrunk.api.common import ERRORS, Limit, Offset, answer, api_id, documented, list_body
from opentrunk.api.routes.writes import Writes, deleted
from opentrunk.api.schemas import IPACLCreate, IPACLList, IPACLOne, IPACLUpdate, IPACLWritten
from opentrunk.services import ipacls as svc

router = APIRouter(
    prefix="/v1/Account/{auth_id}/Zentrunk/IPAccessControlList", tags=["IPAccessControlList"]
)
Auth = Annotated[Caller, Depends(customer)]
WRITES = Writes(
    "ipacl_uuid",
    created="IP access control list created successfully.",
    updated="IP access control list updated successfully.",
)


@router.get("/", response_model=None, responses=documented(IPACLList))
async def list_ipacls(
    request: Request, caller: Auth, limit: Limit = 20, offset: Offset = 0
) -> JSONResponse:
    page = await run_in_threadpool(svc.list_ipacls, caller.store, caller.account_id, limit, offset)
    return answer(list_body(request, page))


@router.post("/", status_code=201, response_model=None, responses=documented(IPACLWritten, 201))
async def create_ipacl(request: Request, caller: Auth, body: IPACLCreate) -> JSONResponse:
    return await WRITES.create(request, caller, svc.create_ipacl, body.ip_addresses, body.name)


@router.get("/{ipacl_uuid}/", response_model=None, responses=documented(IPACLOne))
async def get_ipacl(request: Request, caller: Auth, ipacl_uuid: str) -> JSONResponse:
    found = await svc.read_ipacl(caller.store, caller.account_id, ipacl_uuid)
    return answer({"api_id": api_id(request), **found})


@router.post(
    "/{ipacl_uuid}/", status_code=202, response_model=None, responses=documented(IPACLWritten, 202)
)
async def update_ipacl(
    request: Request, caller: Auth, ipacl_uuid: str, body: IPACLUpdate
) -> JSONResponse:
    return await WRITES.update(
        request,
        caller,
        svc.update_ipacl,
        ipacl_uuid,
        body.model_dump(include=body.model_fields_set),
    )


@router.delete("/{ipacl_uuid}/", status_code=204, response_class=Response, responses=ERRORS)
async def delete_ipacl(caller: Auth, ipacl_uuid: str) -> Response:
    return await deleted(caller, svc.delete_ipacl, ipacl_uuid)

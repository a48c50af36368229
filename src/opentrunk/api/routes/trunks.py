"""Zentrunk Trunk routes (async; see opentrunk.api.common for the response pattern)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from opentrunk.api.auth import Caller, customer
from opentrunk.api.common import ERRORS, Limit, Offset, answer, api_id, documented, list_body
from opentrunk.api.routes.writes import Writes, deleted
from opentrunk.api.schemas import TrunkCreate, TrunkList, TrunkOne, TrunkUpdate, TrunkWritten
from opentrunk.domain.validation import check_uuid
from opentrunk.services import trunks as svc

router = APIRouter(prefix="/v1/Account/{auth_id}/Zentrunk/Trunk", tags=["Trunk"])
Auth = Annotated[Caller, Depends(customer)]
WRITES = Writes(
    "trunk_id", created="Trunk created successfully.", updated="Trunk updated successfully."
)
UUIDFilter = Annotated[str | None, Query(max_length=64)]


@router.get("/", response_model=None, responses=documented(TrunkList))
async def list_trunks(
    request: Request,
    caller: Auth,
    limit: Limit = 20,
    offset: Offset = 0,
    trunk_status: Literal["enabled", "disabled"] | None = None,
    trunk_direction: Literal["inbound", "outbound"] | None = None,
    secure: bool | None = None,
    ipacl_uuid: UUIDFilter = None,
    credential_uuid: UUIDFilter = None,
    primary_uri_uuid: UUIDFilter = None,
    fallback_uri_uuid: UUIDFilter = None,
) -> JSONResponse:
    filters: dict[str, Any] = {
        "trunk_status": trunk_status,
        "trunk_direction": trunk_direction,
        "secure": secure,
    }
    for name, value in (
        ("ipacl_uuid", ipacl_uuid),
        ("credential_uuid", credential_uuid),
        ("primary_uri_uuid", primary_uri_uuid),
        ("fallback_uri_uuid", fallback_uri_uuid),
    ):
        filters[name] = None if value is None else check_uuid(value, name)
    page = await run_in_threadpool(
        svc.list_trunks, caller.store, caller.account_id, filters, limit, offset
    )
    return answer(list_body(request, page))


@router.post("/", status_code=201, response_model=None, responses=documented(TrunkWritten, 201))
async def create_trunk(request: Request, caller: Auth, body: TrunkCreate) -> JSONResponse:
    return await WRITES.create(request, caller, svc.create_trunk, body.model_dump())


@router.get("/{trunk_id}/", response_model=None, responses=documented(TrunkOne))
async def get_trunk(request: Request, caller: Auth, trunk_id: str) -> JSONResponse:
    # The hot path: auth from the cache and this one-row read, both on the event loop
    # with SQLite (opentrunk.store.reader), no threadpool hop, no response validation.
    found = await svc.read_trunk(caller.store, caller.account_id, trunk_id)
    return answer({"api_id": api_id(request), **found})


@router.post(
    "/{trunk_id}/", status_code=202, response_model=None, responses=documented(TrunkWritten, 202)
)
async def update_trunk(
    request: Request, caller: Auth, trunk_id: str, body: TrunkUpdate
) -> JSONResponse:
    return await WRITES.update(
        request, caller, svc.update_trunk, trunk_id, body.model_dump(include=body.model_fields_set)
    )


@router.delete("/{trunk_id}/", status_code=204, response_class=Response, responses=ERRORS)
async def delete_trunk(caller: Auth, trunk_id: str) -> Response:
    return await deleted(caller, svc.delete_trunk, trunk_id)

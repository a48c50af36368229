"""Zentrunk Trunk routes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from opentrunk.api.auth import Caller, customer
from opentrunk.api.common import ERRORS, Limit, Offset, api_id, list_body
from opentrunk.api.schemas import TrunkCreate, TrunkList, TrunkOne, TrunkUpdate, TrunkWritten
from opentrunk.domain.validation import check_uuid
from opentrunk.services import trunks as svc

router = APIRouter(prefix="/v1/Account/{auth_id}/Zentrunk/Trunk", tags=["Trunk"])
Auth = Annotated[Caller, Depends(customer)]
UUIDFilter = Annotated[str | None, Query(max_length=64)]


@router.get("/", response_model=TrunkList, responses=ERRORS)
def list_trunks(
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
) -> dict[str, Any]:
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
    page = svc.list_trunks(caller.store, caller.account_id, filters, limit, offset)
    return list_body(request, page)


@router.post("/", status_code=201, response_model=TrunkWritten, responses=ERRORS)
def create_trunk(request: Request, caller: Auth, body: TrunkCreate) -> dict[str, Any]:
    trunk_id = svc.create_trunk(caller.store, caller.account_id, body.model_dump())
    return {
        "api_id": api_id(request),
        "message": "Trunk created successfully.",
        "trunk_id": trunk_id,
    }


@router.get("/{trunk_id}/", response_model=TrunkOne, responses=ERRORS)
def get_trunk(request: Request, caller: Auth, trunk_id: str) -> dict[str, Any]:
    return {"api_id": api_id(request), **svc.get_trunk(caller.store, caller.account_id, trunk_id)}


@router.post("/{trunk_id}/", status_code=202, response_model=TrunkWritten, responses=ERRORS)
def update_trunk(
    request: Request, caller: Auth, trunk_id: str, body: TrunkUpdate
) -> dict[str, Any]:
    changes = body.model_dump(include=body.model_fields_set)
    svc.update_trunk(caller.store, caller.account_id, trunk_id, changes)
    return {
        "api_id": api_id(request),
        "message": "Trunk updated successfully.",
        "trunk_id": trunk_id,
    }


@router.delete("/{trunk_id}/", status_code=204, response_class=Response, responses=ERRORS)
def delete_trunk(caller: Auth, trunk_id: str) -> Response:
    svc.delete_trunk(caller.store, caller.account_id, trunk_id)
    return Response(status_code=204)

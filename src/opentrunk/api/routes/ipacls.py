"""Zentrunk IPAccessControlList routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from opentrunk.api.auth import Caller, customer
from opentrunk.api.common import ERRORS, Limit, Offset, api_id, list_body
from opentrunk.api.schemas import IPACLCreate, IPACLList, IPACLOne, IPACLUpdate, IPACLWritten
from opentrunk.services import ipacls as svc

router = APIRouter(
    prefix="/v1/Account/{auth_id}/Zentrunk/IPAccessControlList", tags=["IPAccessControlList"]
)
Auth = Annotated[Caller, Depends(customer)]


@router.get("/", response_model=IPACLList, responses=ERRORS)
def list_ipacls(
    request: Request, caller: Auth, limit: Limit = 20, offset: Offset = 0
) -> dict[str, Any]:
    return list_body(request, svc.list_ipacls(caller.store, caller.account_id, limit, offset))


@router.post("/", status_code=201, response_model=IPACLWritten, responses=ERRORS)
def create_ipacl(request: Request, caller: Auth, body: IPACLCreate) -> dict[str, Any]:
    ipacl_uuid = svc.create_ipacl(caller.store, caller.account_id, body.ip_addresses, body.name)
    return {
        "api_id": api_id(request),
        "message": "IP access control list created successfully.",
        "ipacl_uuid": ipacl_uuid,
    }


@router.get("/{ipacl_uuid}/", response_model=IPACLOne, responses=ERRORS)
def get_ipacl(request: Request, caller: Auth, ipacl_uuid: str) -> dict[str, Any]:
    return {"api_id": api_id(request), **svc.get_ipacl(caller.store, caller.account_id, ipacl_uuid)}


@router.post("/{ipacl_uuid}/", status_code=202, response_model=IPACLWritten, responses=ERRORS)
def update_ipacl(
    request: Request, caller: Auth, ipacl_uuid: str, body: IPACLUpdate
) -> dict[str, Any]:
    changes = body.model_dump(include=body.model_fields_set)
    svc.update_ipacl(caller.store, caller.account_id, ipacl_uuid, changes)
    return {
        "api_id": api_id(request),
        "message": "IP access control list updated successfully.",
        "ipacl_uuid": ipacl_uuid,
    }


@router.delete("/{ipacl_uuid}/", status_code=204, response_class=Response, responses=ERRORS)
def delete_ipacl(caller: Auth, ipacl_uuid: str) -> Response:
    svc.delete_ipacl(caller.store, caller.account_id, ipacl_uuid)
    return Response(status_code=204)

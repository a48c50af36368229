"""Zentrunk origination URI routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from opentrunk.api.auth import Caller, customer
from opentrunk.api.common import ERRORS, Limit, Offset, api_id, list_body
from opentrunk.api.schemas import URICreate, URIList, URIOne, URIUpdate, URIWritten
from opentrunk.services import uris as svc

router = APIRouter(prefix="/v1/Account/{auth_id}/Zentrunk/URI", tags=["URI"])
Auth = Annotated[Caller, Depends(customer)]


@router.get("/", response_model=URIList, responses=ERRORS)
def list_uris(
    request: Request, caller: Auth, limit: Limit = 20, offset: Offset = 0
) -> dict[str, Any]:
    return list_body(request, svc.list_uris(caller.store, caller.account_id, limit, offset))


@router.post("/", status_code=201, response_model=URIWritten, responses=ERRORS)
def create_uri(request: Request, caller: Auth, body: URICreate) -> dict[str, Any]:
    uri_uuid = svc.create_uri(caller.store, caller.account_id, body.model_dump())
    return {"api_id": api_id(request), "message": "URI created successfully.", "uri_uuid": uri_uuid}


@router.get("/{uri_uuid}/", response_model=URIOne, responses=ERRORS)
def get_uri(request: Request, caller: Auth, uri_uuid: str) -> dict[str, Any]:
    return {"api_id": api_id(request), **svc.get_uri(caller.store, caller.account_id, uri_uuid)}


@router.post("/{uri_uuid}/", status_code=202, response_model=URIWritten, responses=ERRORS)
def update_uri(request: Request, caller: Auth, uri_uuid: str, body: URIUpdate) -> dict[str, Any]:
    changes = body.model_dump(include=body.model_fields_set)
    svc.update_uri(caller.store, caller.account_id, uri_uuid, changes)
    return {"api_id": api_id(request), "message": "URI updated successfully.", "uri_uuid": uri_uuid}


@router.delete("/{uri_uuid}/", status_code=204, response_class=Response, responses=ERRORS)
def delete_uri(caller: Auth, uri_uuid: str) -> Response:
    svc.delete_uri(caller.store, caller.account_id, uri_uuid)
    return Response(status_code=204)

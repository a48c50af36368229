"""Zentrunk Credential routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from opentrunk.api.auth import Caller, customer
from opentrunk.api.common import ERRORS, Limit, Offset, api_id, list_body
from opentrunk.api.schemas import (
    CredentialCreate,
    CredentialList,
    CredentialOne,
    CredentialUpdate,
    CredentialWritten,
)
from opentrunk.services import credentials as svc

router = APIRouter(prefix="/v1/Account/{auth_id}/Zentrunk/Credential", tags=["Credential"])
Auth = Annotated[Caller, Depends(customer)]


@router.get("/", response_model=CredentialList, responses=ERRORS)
def list_credentials(
    request: Request, caller: Auth, limit: Limit = 20, offset: Offset = 0
) -> dict[str, Any]:
    return list_body(request, svc.list_credentials(caller.store, caller.account_id, limit, offset))


@router.post("/", status_code=201, response_model=CredentialWritten, responses=ERRORS)
def create_credential(request: Request, caller: Auth, body: CredentialCreate) -> dict[str, Any]:
    credential_uuid = svc.create_credential(
        caller.store, caller.account_id, body.username, body.password, body.name
    )
    return {
        "api_id": api_id(request),
        "message": "Credential created successfully.",
        "credential_uuid": credential_uuid,
    }


@router.get("/{credential_uuid}/", response_model=CredentialOne, responses=ERRORS)
def get_credential(request: Request, caller: Auth, credential_uuid: str) -> dict[str, Any]:
    found = svc.get_credential(caller.store, caller.account_id, credential_uuid)
    return {"api_id": api_id(request), **found}


@router.post(
    "/{credential_uuid}/", status_code=202, response_model=CredentialWritten, responses=ERRORS
)
def update_credential(
    request: Request, caller: Auth, credential_uuid: str, body: CredentialUpdate
) -> dict[str, Any]:
    changes = body.model_dump(include=body.model_fields_set)
    svc.update_credential(caller.store, caller.account_id, credential_uuid, changes)
    return {
        "api_id": api_id(request),
        "message": "Credential updated successfully.",
        "credential_uuid": credential_uuid,
    }


@router.delete("/{credential_uuid}/", status_code=204, response_class=Response, responses=ERRORS)
def delete_credential(caller: Auth, credential_uuid: str) -> Response:
    svc.delete_credential(caller.store, caller.account_id, credential_uuid)
    return Response(status_code=204)

"""Zentrunk Credential routes (async; see opentrunk.api.common)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from opentrunk.api.auth import Caller, customer
from opentrunk.api.common import ERRORS, Limit, Offset, answer, api_id, documented, list_body
from opentrunk.api.routes.writes import Writes, deleted
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
WRITES = Writes(
    "credential_uuid",
    created="Credential created successfully.",
    updated="Credential updated successfully.",
)


@router.get("/", response_model=None, responses=documented(CredentialList))
async def list_credentials(
    request: Request, caller: Auth, limit: Limit = 20, offset: Offset = 0
) -> JSONResponse:
    page = await run_in_threadpool(
        svc.list_credentials, caller.store, caller.account_id, limit, offset
    )
    return answer(list_body(request, page))


@router.post(
    "/", status_code=201, response_model=None, responses=documented(CredentialWritten, 201)
)
async def create_credential(request: Request, caller: Auth, body: CredentialCreate) -> JSONResponse:
    return await WRITES.create(
        request, caller, svc.create_credential, body.username, body.password, body.name
    )


@router.get("/{credential_uuid}/", response_model=None, responses=documented(CredentialOne))
async def get_credential(request: Request, caller: Auth, credential_uuid: str) -> JSONResponse:
    found = await svc.read_credential(caller.store, caller.account_id, credential_uuid)
    return answer({"api_id": api_id(request), **found})


@router.post(
    "/{credential_uuid}/",
    status_code=202,
    response_model=None,
    responses=documented(CredentialWritten, 202),
)
async def update_credential(
    request: Request, caller: Auth, credential_uuid: str, body: CredentialUpdate
) -> JSONResponse:
    return await WRITES.update(
        request,
        caller,
        svc.update_credential,
        credential_uuid,
        body.model_dump(include=body.model_fields_set),
    )


@router.delete("/{credential_uuid}/", status_code=204, response_class=Response, responses=ERRORS)
async def delete_credential(caller: Auth, credential_uuid: str) -> Response:
    return await deleted(caller, svc.delete_credential, credential_uuid)

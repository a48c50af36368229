"""Operator API under /admin/v1/ (bearer operator token): accounts, limits, numbers,
carriers. Same service layer as the `opentrunk` command."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from opentrunk.api.auth import operator
from opentrunk.api.common import ADMIN_ERRORS, api_id
from opentrunk.api.schemas import RequestModel
from opentrunk.services import accounts, carriers, numbers
from opentrunk.store.store import Store

router = APIRouter(prefix="/admin/v1", tags=["Admin"])
Operator = Annotated[Store, Depends(operator)]


class AccountCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    # Set: a subaccount (SA...) of this main account.
    parent_auth_id: str | None = Field(default=None, min_length=1, max_length=20)


class LimitsUpdate(RequestModel):
    cps: float | int | None = Field(default=None, gt=0, le=10_000)
    max_calls: int | None = Field(default=None, ge=0, le=1_000_000)
    countries: str | list[str] | None = None
    caller_id_policy: bool | None = None
    billing_increment: int | None = Field(default=None, ge=1, le=3600)
    barred_prefixes: list[str] | None = Field(default=None, max_length=1000)


class NumberAdd(RequestModel):
    number: str = Field(max_length=32)
    auth_id: str = Field(max_length=20)


class CarrierAdd(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    address: str = Field(max_length=255)
    transport: Literal["udp", "tcp", "tls"] = "udp"
    prefix: str = Field(default="", max_length=15)
    priority: int = Field(default=10, ge=0, le=1000)
    weight: int = Field(default=100, ge=0, le=1000)
    username: str | None = Field(default=None, max_length=255)
    password: str | None = Field(default=None, max_length=255)
    rate: str = Field(default="0", max_length=20)
    inbound_sources: list[str] = Field(default_factory=list, max_length=100)


class Envelope(BaseModel):
    model_config = {"extra": "allow"}
    api_id: str


def _wrap(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    return {"api_id": api_id(request), **body}


@router.post("/accounts/", status_code=201, response_model=Envelope, responses=ADMIN_ERRORS)
def create_account(request: Request, store: Operator, body: AccountCreate) -> dict[str, Any]:
    return _wrap(request, accounts.create_account(store, body.name, body.parent_auth_id))


@router.get("/accounts/", response_model=Envelope, responses=ADMIN_ERRORS)
def list_accounts(
    request: Request, store: Operator, parent_auth_id: str | None = None
) -> dict[str, Any]:
    return _wrap(request, {"objects": accounts.list_accounts(store, parent_auth_id)})


@router.get("/accounts/{auth_id}/", response_model=Envelope, responses=ADMIN_ERRORS)
def get_account(request: Request, store: Operator, auth_id: str) -> dict[str, Any]:
    return _wrap(request, accounts.get_account(store, auth_id))


@router.post("/accounts/{auth_id}/disable/", response_model=Envelope, responses=ADMIN_ERRORS)
def disable_account(request: Request, store: Operator, auth_id: str) -> dict[str, Any]:
    return _wrap(request, accounts.disable_account(store, auth_id))


@router.post("/accounts/{auth_id}/enable/", response_model=Envelope, responses=ADMIN_ERRORS)
def enable_account(request: Request, store: Operator, auth_id: str) -> dict[str, Any]:
    return _wrap(request, accounts.enable_account(store, auth_id))


@router.post("/accounts/{auth_id}/rotate-token/", response_model=Envelope, responses=ADMIN_ERRORS)
def rotate_token(request: Request, store: Operator, auth_id: str) -> dict[str, Any]:
    return _wrap(request, accounts.rotate_token(store, auth_id))


@router.post("/accounts/{auth_id}/limits/", response_model=Envelope, responses=ADMIN_ERRORS)
def set_limits(
    request: Request, store: Operator, auth_id: str, body: LimitsUpdate
) -> dict[str, Any]:
    fields = body.model_fields_set
    countries = body.countries
    if isinstance(countries, list):
        countries = ",".join(countries)
    result = accounts.set_limits(
        store,
        auth_id,
        cps=float(body.cps) if body.cps is not None else None,
        max_calls=body.max_calls,
        unlimited_calls="max_calls" in fields and body.max_calls is None,
        countries=countries,
        caller_id_policy=body.caller_id_policy,
        billing_increment=body.billing_increment,
        barred_prefixes=body.barred_prefixes,
    )
    return _wrap(request, result)


@router.post("/numbers/", status_code=201, response_model=Envelope, responses=ADMIN_ERRORS)
def add_number(request: Request, store: Operator, body: NumberAdd) -> dict[str, Any]:
    return _wrap(request, numbers.add_number(store, body.number, body.auth_id))


@router.get("/numbers/", response_model=Envelope, responses=ADMIN_ERRORS)
def list_numbers(request: Request, store: Operator, auth_id: str | None = None) -> dict[str, Any]:
    return _wrap(request, {"objects": numbers.list_all_numbers(store, auth_id)})


@router.delete(
    "/numbers/{number}/", status_code=204, response_class=Response, responses=ADMIN_ERRORS
)
def remove_number(store: Operator, number: str) -> Response:
    numbers.remove_number(store, number)
    return Response(status_code=204)


@router.post("/carriers/", status_code=201, response_model=Envelope, responses=ADMIN_ERRORS)
def add_carrier(request: Request, store: Operator, body: CarrierAdd) -> dict[str, Any]:
    return _wrap(request, carriers.add_carrier(store, **body.model_dump()))


@router.get("/carriers/", response_model=Envelope, responses=ADMIN_ERRORS)
def list_carriers(request: Request, store: Operator) -> dict[str, Any]:
    return _wrap(request, {"objects": carriers.list_carriers(store)})


@router.delete(
    "/carriers/{carrier_id}/", status_code=204, response_class=Response, responses=ADMIN_ERRORS
)
def remove_carrier(store: Operator, carrier_id: str) -> Response:
    carriers.remove_carrier(store, carrier_id)
    return Response(status_code=204)

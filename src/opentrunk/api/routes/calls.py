"""Zentrunk Call routes: read-only views of the call records the SIP edge writes (async;
see opentrunk.api.common)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from opentrunk.api.auth import Caller, customer
from opentrunk.api.common import Limit, Offset, answer, api_id, documented, list_body
from opentrunk.api.schemas import CallInsights, CallList, CallOne
from opentrunk.services import calls as svc

router = APIRouter(prefix="/v1/Account/{auth_id}/Zentrunk/Call", tags=["Call"])
Auth = Annotated[Caller, Depends(customer)]
Digits = Annotated[str | None, Query(max_length=32, pattern=r"^\+?[0-9]+$")]
Seconds = Annotated[str | None, Query(max_length=9, pattern=r"^[0-9]+$")]
Time = Annotated[
    str | None,
    Query(
        max_length=19,
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}(:[0-9]{2})?$",
        description="UTC, YYYY-MM-DD HH:MM[:SS]",
    ),
]


@router.get("/", response_model=None, responses=documented(CallList))
async def list_calls(
    request: Request,
    caller: Auth,
    limit: Limit = 20,
    offset: Offset = 0,
    from_number: Digits = None,
    to_number: Digits = None,
    call_direction: Literal["inbound", "outbound"] | None = None,
    hangup_cause_code: Annotated[str | None, Query(pattern=r"^[0-9]{4}$")] = None,
    hangup_source: Literal["customer", "carrier", "zentrunk"] | None = None,
    stir_verification: Annotated[str | None, Query(max_length=32)] = None,
    bill_duration: Seconds = None,
    bill_duration__gt: Seconds = None,
    bill_duration__gte: Seconds = None,
    bill_duration__lt: Seconds = None,
    bill_duration__lte: Seconds = None,
    end_time: Time = None,
    end_time__gt: Time = None,
    end_time__gte: Time = None,
    end_time__lt: Time = None,
    end_time__lte: Time = None,
) -> JSONResponse:
    filters = {
        "from_number": from_number,
        "to_number": to_number,
        "call_direction": call_direction,
        "hangup_cause_code": hangup_cause_code,
        "hangup_source": hangup_source,
        "stir_verification": stir_verification,
        "bill_duration": bill_duration,
        "bill_duration__gt": bill_duration__gt,
        "bill_duration__gte": bill_duration__gte,
        "bill_duration__lt": bill_duration__lt,
        "bill_duration__lte": bill_duration__lte,
        "end_time": end_time,
        "end_time__gt": end_time__gt,
        "end_time__gte": end_time__gte,
        "end_time__lt": end_time__lt,
        "end_time__lte": end_time__lte,
    }
    page = await run_in_threadpool(
        svc.list_calls, caller.store, caller.account_id, filters, limit, offset
    )
    return answer(list_body(request, page))


@router.get("/{call_uuid}/", response_model=None, responses=documented(CallOne))
async def get_call(request: Request, caller: Auth, call_uuid: str) -> JSONResponse:
    found = await run_in_threadpool(svc.get_call, caller.store, caller.account_id, call_uuid)
    return answer({"api_id": api_id(request), **found})


@router.get("/{call_uuid}/Insights/", response_model=None, responses=documented(CallInsights))
async def call_insights(request: Request, caller: Auth, call_uuid: str) -> JSONResponse:
    found = await run_in_threadpool(svc.call_insights, caller.store, caller.account_id, call_uuid)
    return answer({"api_id": api_id(request), **found})

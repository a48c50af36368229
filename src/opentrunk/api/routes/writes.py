"""The answers of the customer write routes (create, update, delete), which all take one
shape: a single threadpool hop for the service's SQLAlchemy work, called with the
caller's store and account, then a prebuilt response (see opentrunk.api.common).
GET routes do not come through here: they call the service and `answer` directly, so
the read path gains no layer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from opentrunk.api.auth import Caller
from opentrunk.api.common import answer, api_id


@dataclass(frozen=True)
class Writes:
    """How one resource's create and update answer: `{api_id, message, <key>: id}`,
    where the id is what the service returns."""

    key: str
    created: str = ""
    updated: str = ""

    async def create(
        self, request: Request, caller: Caller, service: Callable[..., str], /, *args: Any
    ) -> JSONResponse:
        """201 with the `created` message."""
        return await self._answer(request, 201, self.created, service, caller, args, {})

    async def update(
        self,
        request: Request,
        caller: Caller,
        service: Callable[..., str],
        /,
        *args: Any,
        **kwargs: Any,
    ) -> JSONResponse:
        """202 with the `updated` message."""
        return await self._answer(request, 202, self.updated, service, caller, args, kwargs)

    async def _answer(
        self,
        request: Request,
        status: int,
        message: str,
        service: Callable[..., str],
        caller: Caller,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> JSONResponse:
        ident = await run_in_threadpool(service, caller.store, caller.account_id, *args, **kwargs)
        return answer({"api_id": api_id(request), "message": message, self.key: ident}, status)


async def deleted(caller: Caller, service: Callable[..., None], /, *args: Any) -> Response:
    """Run a delete `service` for the caller's account and answer 204 with no body."""
    await run_in_threadpool(service, caller.store, caller.account_id, *args)
    return Response(status_code=204)

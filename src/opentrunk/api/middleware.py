"""Pure ASGI middleware (cheaper per request than BaseHTTPMiddleware): a fresh api_id per
request (scope state + `X-Api-Id` header), trailing-slash tolerance, and a request body cap.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_ID_HEADER = b"x-api-id"
MAX_BODY_BYTES = 64 * 1024
# Only the API namespaces get a slash appended; /docs and /openapi.json stay as they are.
_SLASHED_PREFIXES = ("/v1/", "/admin/")


class BodyTooLarge(Exception):
    pass


def error_body(api_id: str, message: str) -> bytes:
    return json.dumps({"api_id": api_id, "error": message}).encode()


class ApiMiddleware:
    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api_id = str(uuid.uuid4())
        # Set on the outer scope's state dict so the 500 handler (outside us) sees it too.
        state = scope.setdefault("state", {})
        state["api_id"] = api_id
        path: str = scope["path"]
        if path.startswith(_SLASHED_PREFIXES) and not path.endswith("/"):
            scope = dict(scope)
            scope["path"] = path + "/"
            raw = scope.get("raw_path")
            if raw:
                scope["raw_path"] = raw + b"/"
        header_value = api_id.encode()

        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_body
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send, api_id, 413, self._too_large_message())
                    return
                break

        started = False
        over_limit = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if over_limit:
                # The framework turned our BodyTooLarge into its own error response
                # (FastAPI answers 400 "error parsing the body"); answer 413 instead.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._reject(send, api_id, 413, self._too_large_message())
                return
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((API_ID_HEADER, header_value))
                message = {**message, "headers": headers}
            await send(message)

        received = 0

        async def capped_receive() -> Message:
            nonlocal received, over_limit
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    over_limit = True
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, capped_receive, send_with_id)
        except BodyTooLarge:
            if not started:
                await self._reject(send, api_id, 413, self._too_large_message())

    def _too_large_message(self) -> str:
        return f"request body too large: the limit is {self.max_body} bytes"

    @staticmethod
    async def _reject(send: Send, api_id: str, status: int, message: str) -> None:
        body = error_body(api_id, message)
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (API_ID_HEADER, api_id.encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def api_id_of(scope_state: dict[str, Any]) -> str:
    return str(scope_state.get("api_id") or uuid.uuid4())

"""The published OpenAPI document: FastAPI's own, plus the security schemes.

Customer routes authenticate with HTTP Basic (auth_id, auth_token) and the operator API
with a bearer token. Both checks are plain functions on the request path (opentrunk.api.auth)
rather than FastAPI security dependencies, which would add a dependency to solve on every
request, so the schemes are declared here, once, when the document is built.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

CUSTOMER_SCHEME = "zentrunkBasic"
OPERATOR_SCHEME = "operatorBearer"
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    CUSTOMER_SCHEME: {
        "type": "http",
        "scheme": "basic",
        "description": "HTTP Basic with the account's auth_id and auth_token.",
    },
    OPERATOR_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "The operator's admin token (OPENTRUNK_ADMIN_TOKEN).",
    },
}
_SCHEME_BY_PREFIX = (("/v1/", CUSTOMER_SCHEME), ("/admin/", OPERATOR_SCHEME))


def add_security(document: dict[str, Any]) -> dict[str, Any]:
    """Declare the schemes and attach the right one to every operation of each API."""
    document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, item in document.get("paths", {}).items():
        scheme = next((s for prefix, s in _SCHEME_BY_PREFIX if path.startswith(prefix)), None)
        if scheme is None:
            continue
        for operation in item.values():
            if isinstance(operation, dict):
                operation["security"] = [{scheme: []}]
    return document


def install_openapi(app: FastAPI) -> None:
    fastapi_document = app.openapi  # FastAPI's builder, which caches its document

    def build() -> dict[str, Any]:
        return add_security(fastapi_document())  # idempotent, so cheap on every call

    app.openapi = build  # type: ignore[method-assign]

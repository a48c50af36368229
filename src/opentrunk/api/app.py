"""Builds the FastAPI application: routers, error handlers, middleware, shared state."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse

from opentrunk import __version__
from opentrunk.api.auth import metrics_reader
from opentrunk.api.errors import install_error_handlers
from opentrunk.api.middleware import ApiMiddleware
from opentrunk.api.openapi import install_openapi
from opentrunk.api.ratelimit import RateLimiter
from opentrunk.api.routes import admin, calls, credentials, ipacls, numbers, trunks, uris
from opentrunk.config import Settings
from opentrunk.edge.metrics import CONTENT_TYPE, render_current
from opentrunk.store.store import Store


def create_app(settings: Settings, store: Store) -> FastAPI:
    """The API for `store`; the caller owns the store (opens, migrates and closes it)."""
    app = FastAPI(
        title="opentrunk API",
        version=__version__,
        description="Zentrunk-compatible SIP trunking API and the operator API.",
        redirect_slashes=False,
    )
    app.state.store = store
    app.state.limiter = RateLimiter.for_settings(
        settings.api_rate_limit, settings.api_rate_burst, settings.redis_url
    )
    app.state.admin_token = settings.admin_token
    for module in (trunks, credentials, ipacls, uris, calls, numbers, admin):
        app.include_router(module.router)
    install_error_handlers(app)
    install_openapi(app)

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_reader)])
    async def metrics() -> PlainTextResponse:
        # The SIP edge's figures in Prometheus format (opentrunk.edge.metrics).
        figures = render_current(getattr(app.state, "edge_metrics", None))
        return PlainTextResponse(figures, media_type=CONTENT_TYPE)

    app.add_middleware(ApiMiddleware)
    return app

"""`opentrunk serve`: one asyncio process (uvloop) running the HTTP API through uvicorn's
Server alongside any other long-running services (the SIP edge joins as one more task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

import uvicorn

from opentrunk.api.app import create_app
from opentrunk.config import Settings, node_id_of
from opentrunk.edge.gc_policy import apply_serving_policy
from opentrunk.services.calls import close_abandoned_records
from opentrunk.store.store import Store

log = logging.getLogger("opentrunk")

# A service is started with the settings and the open store and runs until cancelled.
Service = Callable[[Settings, Store], Coroutine[Any, Any, None]]


def announce(line: str) -> None:
    print(f"opentrunk: {line}", flush=True)


class _Server(uvicorn.Server):
    """uvicorn's Server without its own signal capture: uvicorn re-raises SIGINT/SIGTERM
    with the default action once its loop ends, which killed the process before the
    other services (the SIP edge: BYE to live calls, records flushed) could stop. `run`
    handles those signals on the event loop instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _on_signals(server: uvicorn.Server) -> list[signal.Signals]:
    """Make SIGINT/SIGTERM stop the API server (then `run` stops the services)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, server.handle_exit, sig, None)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread: whoever runs us handles signals
        installed.append(sig)
    return installed


def _bound_port(server: uvicorn.Server, default: int) -> int:
    for srv in getattr(server, "servers", []) or []:
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    return default


async def run(settings: Settings, store: Store, services: Sequence[Service] = ()) -> None:
    """Run the API and `services` until the API server stops (SIGINT/SIGTERM)."""
    # Records left open by a crash are closed by the SIP edge's recorder at its start,
    # its own node's only (5250 internal_error, opentrunk.edge.records). An API-only
    # worker has no node: it closes only records that name none (written before
    # migration 0004); a gone node's are for `opentrunk calls recover --node`.
    if not services:
        closed = await asyncio.to_thread(close_abandoned_records, store.engine)
        if closed:
            log.warning("closed %d call records left open by a previous run", closed)
    host, port = settings.http_host_port
    config = uvicorn.Config(
        create_app(settings, store),
        host=host,
        port=port,
        loop="none",  # the loop is ours (uvloop, set up by main)
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level=settings.log_level,
        server_header=False,
    )
    server = _Server(config)
    signals = _on_signals(server)
    api_task = asyncio.create_task(server.serve(), name="http-api")
    others = [asyncio.create_task(svc(settings, store)) for svc in services]
    while not server.started and not api_task.done():
        await asyncio.sleep(0.01)
    if server.started:
        if not services:
            # Startup is done: freeze its heap and space out young collections. The SIP
            # edge does this once it has started; an API-only worker (serve --no-edge)
            # needs it as much (a full collection of the startup heap: ~100 ms of CPU,
            # docs/perf-api.md).
            apply_serving_policy()
        shown = f"[{host}]" if ":" in host else host
        announce(f"HTTP API on http://{shown}:{_bound_port(server, port)}")
    try:
        await api_task
    finally:
        for task in others:
            task.cancel()
        for task in others:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sig in signals:
            asyncio.get_running_loop().remove_signal_handler(sig)


def serve(settings: Settings, services: Sequence[Service] = ()) -> None:
    """Open the store (migrating it), then run everything on uvloop."""
    import uvloop

    from opentrunk.edge.logs import configure_logging

    # Structured lines (logfmt) with the call_uuid of the call being handled, if any.
    configure_logging(settings.log_level)
    store = Store.open(settings)
    try:
        if services:
            # The id `calls recover --node` takes once this node is gone (docs/edge.md).
            announce(f"edge node {node_id_of(settings)}")
        uvloop.run(run(settings, store, services))
    finally:
        store.close()

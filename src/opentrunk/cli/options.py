"""The options every store command shares (--database-url, --data-dir, --config), declared
once: `store_command` adds them to a command and hands it the open store, and
`settings_command` hands it the settings they select (for commands that open no store,
or more than one thing)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from opentrunk.config import Settings, load_settings
from opentrunk.services.errors import Conflict, InvalidParameter, MissingParameter, NotFound
from opentrunk.store.store import Store

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite under data dir)"),
]
DataDir = Annotated[str | None, typer.Option("--data-dir", help="Directory for state (./data)")]
ConfigFile = Annotated[str | None, typer.Option("--config", help="TOML settings file")]

_SHARED: tuple[tuple[str, Any], ...] = (
    ("database_url", DatabaseUrl),
    ("data_dir", DataDir),
    ("config", ConfigFile),
)


def load_cli_settings(
    config: str | None, data_dir: str | None, database_url: str | None, **more: Any
) -> Settings:
    """Settings from the file and environment, with the command line's values on top."""
    return load_settings(config_file=config).with_overrides(
        data_dir=data_dir, database_url=database_url, **more
    )


@contextmanager
def open_store(settings: Settings) -> Iterator[Store]:
    """The store for a command; a service error ends the command with its message."""
    store = Store.open(settings)
    try:
        yield store
    except (InvalidParameter, MissingParameter, NotFound, Conflict) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()


# Calls the command (its own arguments already bound) with what it was promised.
Injector = Callable[[Settings, Callable[..., None]], None]


def _with_shared_options(
    command: Callable[..., None], injected: str, inject: Injector
) -> Callable[..., None]:
    """`command` as Typer should read it: its own parameters less `injected`, plus the
    shared options (Typer reads a command's signature and type hints)."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != injected]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind)
        for name, kind in _SHARED
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        database_url, data_dir, config = (kwargs.pop(name) for name, _ in _SHARED)
        settings = load_cli_settings(config, data_dir, database_url)
        inject(settings, functools.partial(command, *args, **kwargs))

    parameters = [*own, *shared]
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__
    return wrapper


def _give_store(settings: Settings, call: Callable[..., None]) -> None:
    with open_store(settings) as store:
        call(store=store)


def _give_settings(settings: Settings, call: Callable[..., None]) -> None:
    call(settings=settings)


def store_command(command: Callable[..., None]) -> Callable[..., None]:
    """Give `command` the shared options and call it with `store=` the open store."""
    return _with_shared_options(command, "store", _give_store)


def settings_command(command: Callable[..., None]) -> Callable[..., None]:
    """Give `command` the shared options and call it with `settings=` what they select."""
    return _with_shared_options(command, "settings", _give_settings)

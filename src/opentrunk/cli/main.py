"""The `opentrunk` command: serve, db, accounts, numbers, carriers."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from opentrunk.cli.options import settings_command, store_command
from opentrunk.config import Settings
from opentrunk.services import accounts as accounts_svc
from opentrunk.services import carriers as carriers_svc
from opentrunk.services import numbers as numbers_svc
from opentrunk.store.store import Store

app = typer.Typer(
    help="opentrunk: SIP trunking with a Zentrunk-compatible API.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
accounts_app = typer.Typer(help="Customer accounts.", no_args_is_help=True)
numbers_app = typer.Typer(help="Phone numbers in accounts' inventories.", no_args_is_help=True)
carriers_app = typer.Typer(help="Upstream carriers.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(accounts_app, name="accounts")
app.add_typer(numbers_app, name="numbers")
app.add_typer(carriers_app, name="carriers")
calls_app = typer.Typer(help="Call records.", no_args_is_help=True)
app.add_typer(calls_app, name="calls")
tls_app = typer.Typer(help="TLS material for the SIP edge.", no_args_is_help=True)
app.add_typer(tls_app, name="tls")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _emit(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(data))
    elif text is not None:
        typer.echo(text)
    else:
        typer.echo(json.dumps(data, indent=2))


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    Console().print(table)


@app.command()
@settings_command
def serve(
    settings: Settings,
    http: Annotated[str | None, typer.Option("--http", help="HOST:PORT of the HTTP API")] = None,
    sip_domain: Annotated[str | None, typer.Option("--sip-domain", help="SIP domain")] = None,
    admin_token: Annotated[
        str | None, typer.Option("--admin-token", help="Operator token for /admin/v1/")
    ] = None,
    api_rate_limit: Annotated[
        float | None,
        typer.Option("--api-rate-limit", help="API requests/s per account (0: no limit)"),
    ] = None,
    api_rate_burst: Annotated[
        int | None, typer.Option("--api-rate-burst", help="API burst per account")
    ] = None,
    log_level: Annotated[str | None, typer.Option("--log-level")] = None,
    sip: Annotated[
        str | None, typer.Option("--sip", help="HOST:PORT of the SIP edge (UDP and TCP)")
    ] = None,
    advertised_address: Annotated[
        str | None,
        typer.Option("--advertised-address", help="HOST[:PORT] put in Via/Contact (NAT)"),
    ] = None,
    sip_tls: Annotated[
        str | None,
        typer.Option("--sip-tls", help="HOST:PORT of SIP over TLS (default: SIP host, 5061)"),
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option("--tls-cert", help="PEM certificate (chain) for SIP TLS")
    ] = None,
    tls_key: Annotated[
        str | None, typer.Option("--tls-key", help="PEM private key for SIP TLS")
    ] = None,
    node_id: Annotated[
        str | None,
        typer.Option(
            "--node-id",
            help="This edge node's id in call records (default: the id kept in the data"
            " dir, made once as HOSTNAME-RANDOM); the same across restarts, unique among"
            " the nodes on one database",
        ),
    ] = None,
    edge: Annotated[
        bool,
        typer.Option(
            "--edge/--no-edge",
            help="Run the SIP edge in this process (--no-edge: an API-only worker)",
        ),
    ] = True,
) -> None:
    """Run the API and the SIP edge (and, as it is added, the media relay)."""
    from opentrunk.cli.serve import serve as run_serve
    from opentrunk.edge.server import run_edge

    settings = settings.with_overrides(
        http=http,
        sip_domain=sip_domain,
        admin_token=admin_token,
        api_rate_limit=api_rate_limit,
        api_rate_burst=api_rate_burst,
        log_level=log_level,
        sip=sip,
        advertised_address=advertised_address,
        sip_tls=sip_tls,
        tls_cert=tls_cert,
        tls_key=tls_key,
        node_id=node_id,
    )
    run_serve(settings, services=[run_edge] if edge else [])


@tls_app.command("dev-cert")
def tls_dev_cert(
    out: Annotated[str, typer.Option("--out", help="Directory for cert.pem and key.pem")],
    host: Annotated[
        list[str], typer.Option("--host", help="Host name or address the cert names (repeat)")
    ],
    days: Annotated[int, typer.Option("--days", help="Validity in days")] = 365,
) -> None:
    """Make a self-signed certificate and key for SIP over TLS (development only)."""
    from opentrunk.edge.tls_cert import write_dev_cert

    written = write_dev_cert(out, host, days=days)
    typer.echo(f"certificate: {written.cert_path}")
    typer.echo(f"key:         {written.key_path}")
    typer.echo(f"serve with:  --tls-cert {written.cert_path} --tls-key {written.key_path}")


@db_app.command("upgrade")
@settings_command
def db_upgrade(settings: Settings) -> None:
    """Apply the database migrations."""
    from opentrunk.store.db import make_engine
    from opentrunk.store.migrate import current_revision, upgrade

    engine = make_engine(settings.effective_database_url)
    try:
        upgrade(engine)
        typer.echo(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()


# ---- accounts ------------------------------------------------------------------------


@accounts_app.command("create")
@store_command
def accounts_create(
    store: Store,
    name: Annotated[str, typer.Option("--name", help="Account name")],
    parent: Annotated[
        str | None,
        typer.Option("--parent", help="auth_id of a main account: create a subaccount of it"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an account (or a subaccount); prints its auth_id and auth_token (shown only
    this once)."""
    created = accounts_svc.create_account(store, name, parent)
    result = {"auth_id": created["auth_id"], "auth_token": created["auth_token"]}
    text = f"auth_id    {result['auth_id']}\nauth_token {result['auth_token']}"
    if parent is not None:
        result["parent_auth_id"] = parent
        text += f"\nparent     {parent}"
    _emit(result, as_json, text)


@accounts_app.command("list")
@store_command
def accounts_list(
    store: Store,
    parent: Annotated[
        str | None, typer.Option("--parent", help="only this main account's subaccounts")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List accounts."""
    rows = accounts_svc.list_accounts(store, parent)
    if as_json:
        _emit(rows, True)
        return
    _table(
        "accounts",
        ["auth_id", "name", "parent", "enabled", "created_at", "cps", "max_calls", "countries"],
        [
            [
                r["auth_id"],
                r["name"],
                r["parent_auth_id"],
                r["enabled"],
                r["created_at"],
                r["limits"]["cps"],
                r["limits"]["max_calls"] or "unlimited",
                r["limits"]["countries"]
                if isinstance(r["limits"]["countries"], str)
                else ",".join(r["limits"]["countries"]),
            ]
            for r in rows
        ],
    )


@accounts_app.command("disable")
@store_command
def accounts_disable(
    store: Store,
    auth_id: str,
) -> None:
    """Disable an account: its API credentials and trunks stop working (a main
    account's subaccounts' too)."""
    accounts_svc.disable_account(store, auth_id)
    typer.echo(f"account {auth_id} disabled")


@accounts_app.command("enable")
@store_command
def accounts_enable(
    store: Store,
    auth_id: str,
) -> None:
    """Enable a disabled account."""
    accounts_svc.enable_account(store, auth_id)
    typer.echo(f"account {auth_id} enabled")


@accounts_app.command("rotate-token")
@store_command
def accounts_rotate(
    store: Store,
    auth_id: str,
    as_json: JsonFlag = False,
) -> None:
    """Give an account a new auth_token (the old one stops working); prints it."""
    result = accounts_svc.rotate_token(store, auth_id)
    _emit(result, as_json, result["auth_token"])


@accounts_app.command("set-limits")
@store_command
def accounts_set_limits(
    store: Store,
    auth_id: str,
    cps: Annotated[float | None, typer.Option("--cps", help="calls per second")] = None,
    max_calls: Annotated[
        str | None, typer.Option("--max-calls", help="concurrent calls, or 'unlimited'")
    ] = None,
    countries: Annotated[str | None, typer.Option("--countries", help="US,GB or all")] = None,
    caller_id_policy: Annotated[
        str | None, typer.Option("--caller-id-policy", help="on or off")
    ] = None,
    billing_increment: Annotated[
        int | None, typer.Option("--billing-increment", help="seconds")
    ] = None,
    barred_prefixes: Annotated[
        str | None, typer.Option("--barred-prefixes", help="comma-separated digits ('' clears)")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Set an account's call limits and policy."""
    unlimited = max_calls is not None and max_calls.strip().lower() in ("unlimited", "none")
    max_calls_n: int | None = None
    if max_calls is not None and not unlimited:
        if not max_calls.isdigit():
            typer.echo("error: --max-calls must be a number or 'unlimited'", err=True)
            raise typer.Exit(2)
        max_calls_n = int(max_calls)
    policy: bool | None = None
    if caller_id_policy is not None:
        if caller_id_policy.lower() not in ("on", "off"):
            typer.echo("error: --caller-id-policy must be on or off", err=True)
            raise typer.Exit(2)
        policy = caller_id_policy.lower() == "on"
    prefixes = None
    if barred_prefixes is not None:
        prefixes = [p for p in barred_prefixes.split(",") if p.strip()]
    result = accounts_svc.set_limits(
        store,
        auth_id,
        cps=cps,
        max_calls=max_calls_n,
        unlimited_calls=unlimited,
        countries=countries,
        caller_id_policy=policy,
        billing_increment=billing_increment,
        barred_prefixes=prefixes,
    )
    _emit(result, as_json)


# ---- numbers -------------------------------------------------------------------------


@numbers_app.command("add")
@store_command
def numbers_add(
    store: Store,
    number: str,
    account: Annotated[str, typer.Option("--account", help="auth_id of the owner")],
    as_json: JsonFlag = False,
) -> None:
    """Put an E.164 number into an account's inventory."""
    result = numbers_svc.add_number(store, number, account)
    _emit(result, as_json, f"number {result['number']} added to {account}")


@numbers_app.command("list")
@store_command
def numbers_list(
    store: Store,
    account: Annotated[str | None, typer.Option("--account", help="only this auth_id")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List numbers (all, or one account's)."""
    rows = numbers_svc.list_all_numbers(store, account)
    if as_json:
        _emit(rows, True)
        return
    _table(
        "numbers",
        ["number", "account", "country", "type", "alias", "application"],
        [
            [
                r["number"],
                r["account"],
                r["country"],
                r["number_type"],
                r["alias"],
                r["application"],
            ]
            for r in rows
        ],
    )


@numbers_app.command("remove")
@store_command
def numbers_remove(
    store: Store,
    number: str,
) -> None:
    """Take a number out of its account."""
    numbers_svc.remove_number(store, number)
    typer.echo(f"number {number} removed")


# ---- carriers ------------------------------------------------------------------------


@carriers_app.command("add")
@store_command
def carriers_add(
    store: Store,
    name: Annotated[str, typer.Option("--name")],
    address: Annotated[str, typer.Option("--address", help="HOST[:PORT]")],
    transport: Annotated[str, typer.Option("--transport", help="udp, tcp or tls")] = "udp",
    prefix: Annotated[str, typer.Option("--prefix", help="digits this carrier takes")] = "",
    priority: Annotated[int, typer.Option("--priority", help="lower is tried first")] = 10,
    weight: Annotated[int, typer.Option("--weight", help="share among equal priority")] = 100,
    username: Annotated[str | None, typer.Option("--username")] = None,
    password: Annotated[str | None, typer.Option("--password")] = None,
    rate: Annotated[str, typer.Option("--rate", help="price per minute")] = "0",
    inbound_source: Annotated[
        list[str] | None, typer.Option("--inbound-source", help="CIDR the carrier sends from")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a carrier."""
    result = carriers_svc.add_carrier(
        store,
        name=name,
        address=address,
        transport=transport,
        prefix=prefix,
        priority=priority,
        weight=weight,
        username=username,
        password=password,
        rate=rate,
        inbound_sources=list(inbound_source or []),
    )
    _emit(result, as_json, f"carrier {result['carrier_id']} ({name}) added")


@carriers_app.command("list")
@store_command
def carriers_list(
    store: Store,
    as_json: JsonFlag = False,
) -> None:
    """List carriers."""
    rows = carriers_svc.list_carriers(store)
    if as_json:
        _emit(rows, True)
        return
    _table(
        "carriers",
        ["carrier_id", "name", "address", "transport", "prefix", "priority", "weight", "rate"],
        [
            [
                r["carrier_id"],
                r["name"],
                r["address"],
                r["transport"],
                r["prefix"],
                r["priority"],
                r["weight"],
                r["rate"],
            ]
            for r in rows
        ],
    )


@carriers_app.command("remove")
@store_command
def carriers_remove(
    store: Store,
    carrier_id: str,
) -> None:
    """Remove a carrier."""
    carriers_svc.remove_carrier(store, carrier_id)
    typer.echo(f"carrier {carrier_id} removed")


# ---- calls ---------------------------------------------------------------------------


@calls_app.command("tail")
@store_command
def calls_tail(
    store: Store,
    account: Annotated[str | None, typer.Option("--account", help="only this auth_id")] = None,
    last: Annotated[int, typer.Option("--last", "-n", help="first show the last N")] = 0,
    count: Annotated[int, typer.Option("--count", help="exit after N records (0: never)")] = 0,
    timeout: Annotated[
        float, typer.Option("--timeout", help="exit after S seconds (0: never)")
    ] = 0,
    interval: Annotated[float, typer.Option("--interval", help="poll every S seconds")] = 0.5,
    as_json: JsonFlag = False,
) -> None:
    """Follow call records as the edge writes them (one line, or JSON, per ended call)."""
    import time

    from opentrunk.edge.tail import follow_records, format_line

    deadline = time.monotonic() + timeout if timeout > 0 else None
    shown = 0

    def stop() -> bool:
        return (deadline is not None and time.monotonic() >= deadline) or (
            count > 0 and shown >= count
        )

    try:
        for view in follow_records(
            store.engine, auth_id=account, last=last, interval=interval, stop=stop
        ):
            typer.echo(json.dumps(view) if as_json else format_line(view))
            shown += 1
            if stop():
                break
    except KeyboardInterrupt:
        pass


@calls_app.command("open")
@store_command
def calls_open(store: Store, as_json: JsonFlag = False) -> None:
    """How many call records are open, per edge node ("-": written before records named
    their node): the ids `calls recover --node` takes."""
    from opentrunk.services.calls import open_records_by_node

    counts = open_records_by_node(store.engine)
    rows = [{"node": node, "open": count} for node, count in sorted(counts.items(), key=str)]
    if as_json:
        _emit(rows, True)
        return
    _table("open call records", ["node", "open"], [[r["node"] or "-", r["open"]] for r in rows])


@calls_app.command("recover")
@settings_command
def calls_recover(
    settings: Settings,
    node: Annotated[str, typer.Option("--node", help="id of the edge node that is gone")],
    as_json: JsonFlag = False,
) -> None:
    """Close the open call records of an edge node that is gone for good (5250
    internal_error, no length billed), and give back its concurrent-call slots in Redis
    when OPENTRUNK_REDIS_URL is set. ONLY for a node that is not running: its open
    records are the live calls of a running node. A node that restarts does this itself."""
    import asyncio

    from opentrunk.cli.options import open_store
    from opentrunk.services.calls import close_abandoned_records

    with open_store(settings) as store:
        closed = close_abandoned_records(store.engine, node=node, unnamed=False)
    slots = asyncio.run(_release_node_slots(settings, node)) if settings.redis_url else None
    result = {"node": node, "records_closed": closed, "slots_released": slots}
    text = f"node {node}: {closed} open call records closed"
    if slots is not None:
        text += f", {slots} concurrent-call slots released"
    _emit(result, as_json, text)


async def _release_node_slots(settings: Settings, node: str) -> int:
    from redis.asyncio import Redis

    from opentrunk.domain.limits import RedisLimitStore

    client = Redis.from_url(settings.redis_url)
    try:
        return await RedisLimitStore(client).release_node_slots(node)
    finally:
        await client.aclose()


def main() -> None:  # pragma: no cover - console entry for `python -m`
    app(prog_name="opentrunk")
    sys.exit(0)

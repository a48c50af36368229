"""The `opentrunk` command: accounts, numbers, carriers, db upgrade (CliRunner), and
`opentrunk serve` as a real process answering HTTP."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from opentrunk.cli.main import app

runner = CliRunner()


def run(data_dir: Path, *args: str) -> str:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_accounts_create_json_and_manage(tmp_path):
    created = json.loads(run(tmp_path, "accounts", "create", "--name", "acme", "--json"))
    assert set(created) == {"auth_id", "auth_token"}
    assert re.fullmatch(r"MA[A-Z0-9]{18}", created["auth_id"])
    assert re.fullmatch(r"[A-Za-z0-9]{40}", created["auth_token"])
    listed = json.loads(run(tmp_path, "accounts", "list", "--json"))
    assert [a["auth_id"] for a in listed] == [created["auth_id"]]
    assert created["auth_token"] not in json.dumps(listed)
    new_token = run(tmp_path, "accounts", "rotate-token", created["auth_id"]).strip()
    assert re.fullmatch(r"[A-Za-z0-9]{40}", new_token) and new_token != created["auth_token"]
    run(tmp_path, "accounts", "disable", created["auth_id"])
    assert json.loads(run(tmp_path, "accounts", "list", "--json"))[0]["enabled"] is False
    limits = json.loads(
        run(
            tmp_path,
            "accounts",
            "set-limits",
            created["auth_id"],
            "--cps",
            "5",
            "--max-calls",
            "20",
            "--countries",
            "US,GB",
            "--caller-id-policy",
            "off",
            "--billing-increment",
            "6",
            "--json",
        )
    )["limits"]
    assert limits["cps"] == 5.0 and limits["max_calls"] == 20
    assert limits["countries"] == ["GB", "US"] and limits["caller_id_policy"] is False
    assert limits["billing_increment"] == 6
    limits = json.loads(
        run(
            tmp_path,
            "accounts",
            "set-limits",
            created["auth_id"],
            "--countries",
            "all",
            "--max-calls",
            "unlimited",
            "--json",
        )
    )["limits"]
    assert limits["countries"] == "all" and limits["max_calls"] is None


def test_errors_exit_nonzero_with_message(tmp_path):
    result = runner.invoke(
        app, ["accounts", "disable", "MA" + "0" * 18, "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 1 and "not found" in result.output
    result = runner.invoke(app, ["accounts", "create", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0


def test_subaccounts_create_list_and_follow_their_parent(tmp_path):
    parent = json.loads(run(tmp_path, "accounts", "create", "--name", "main", "--json"))
    created = json.loads(
        run(tmp_path, "accounts", "create", "--name", "b", "--parent", parent["auth_id"], "--json")
    )
    assert set(created) == {"auth_id", "auth_token", "parent_auth_id"}
    assert re.fullmatch(r"SA[A-Z0-9]{18}", created["auth_id"])
    assert created["parent_auth_id"] == parent["auth_id"]
    subs = json.loads(run(tmp_path, "accounts", "list", "--parent", parent["auth_id"], "--json"))
    assert [a["auth_id"] for a in subs] == [created["auth_id"]]
    run(tmp_path, "accounts", "disable", parent["auth_id"])
    listed = {a["auth_id"]: a for a in json.loads(run(tmp_path, "accounts", "list", "--json"))}
    assert listed[created["auth_id"]]["enabled"] is False
    assert listed[created["auth_id"]]["disabled_by_parent"] is True
    nested = runner.invoke(
        app,
        [
            "accounts",
            "create",
            "--name",
            "c",
            "--parent",
            created["auth_id"],
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert nested.exit_code == 1 and "subaccount" in nested.output


def test_numbers_commands(tmp_path):
    auth_id = json.loads(run(tmp_path, "accounts", "create", "--name", "a", "--json"))["auth_id"]
    added = json.loads(
        run(tmp_path, "numbers", "add", "+1 415 555 0100", "--account", auth_id, "--json")
    )
    assert added["number"] == "14155550100" and added["country"] == "US"
    listed = json.loads(run(tmp_path, "numbers", "list", "--account", auth_id, "--json"))
    assert [n["number"] for n in listed] == ["14155550100"]
    bad = runner.invoke(
        app, ["numbers", "add", "12345", "--account", auth_id, "--data-dir", str(tmp_path)]
    )
    assert bad.exit_code == 1 and "E.164" in bad.output
    run(tmp_path, "numbers", "remove", "+14155550100")
    assert json.loads(run(tmp_path, "numbers", "list", "--json")) == []


def test_carriers_commands(tmp_path):
    added = json.loads(
        run(
            tmp_path,
            "carriers",
            "add",
            "--name",
            "c1",
            "--address",
            "198.51.100.5:5060",
            "--transport",
            "tcp",
            "--prefix",
            "44",
            "--priority",
            "2",
            "--weight",
            "30",
            "--username",
            "u",
            "--password",
            "Secret!1",
            "--rate",
            "0.01",
            "--inbound-source",
            "198.51.100.0/24",
            "--inbound-source",
            "2001:db8::/32",
            "--json",
        )
    )
    assert added["transport"] == "tcp" and added["prefix"] == "44" and added["rate"] == "0.01000"
    assert added["inbound_sources"] == ["198.51.100.0/24", "2001:db8::/32"]
    listed = run(tmp_path, "carriers", "list", "--json")
    assert "Secret!1" not in listed and json.loads(listed)[0]["name"] == "c1"
    run(tmp_path, "carriers", "remove", added["carrier_id"])
    assert json.loads(run(tmp_path, "carriers", "list", "--json")) == []


def test_db_upgrade(tmp_path):
    out = run(tmp_path, "db", "upgrade")
    assert "revision 0004" in out
    assert (tmp_path / "opentrunk.db").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("flags", [(), ("--no-edge",)], ids=["with-edge", "api-only"])
def test_serve_runs_a_real_http_api(tmp_path, flags):
    sip_port = _free_port()
    env = {
        **os.environ,
        "OPENTRUNK_DATA_DIR": str(tmp_path),
        "OPENTRUNK_SIP": f"127.0.0.1:{sip_port}",
    }
    exe = [sys.executable, "-m", "opentrunk.cli"]
    created = json.loads(
        subprocess.run(
            [*exe, "accounts", "create", "--name", "x", "--json"],
            env=env,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    )
    port = _free_port()
    proc = subprocess.Popen(
        [*exe, "serve", "--http", f"127.0.0.1:{port}", *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "HTTP API on" in line or not line:
                break
        assert f"opentrunk: HTTP API on http://127.0.0.1:{port}" in line
        url = f"http://127.0.0.1:{port}/v1/Account/{created['auth_id']}/Zentrunk/Trunk/"
        r = httpx.get(url, auth=(created["auth_id"], created["auth_token"]), timeout=5)
        assert r.status_code == 200 and r.json()["meta"]["total_count"] == 0
        assert httpx.get(url, timeout=5).status_code == 401
        if "--no-edge" in flags:
            # An API-only worker leaves the SIP port alone.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", sip_port))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

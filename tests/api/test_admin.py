"""Operator API: bearer token, accounts, limits, numbers, carriers; disabled without token."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.conftest import ADMIN_TOKEN, Account
from api.helpers import assert_error
from opentrunk.api.app import create_app
from opentrunk.config import Settings

H = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_admin_requires_token(client):
    assert_error(client.get("/admin/v1/accounts/"), 401, "operator")
    assert_error(client.get("/admin/v1/accounts/", headers={"Authorization": "Bearer nope"}), 401)
    assert_error(
        client.get("/admin/v1/accounts/", headers={"Authorization": f"Basic {ADMIN_TOKEN}"}), 401
    )


def test_admin_disabled_without_configured_token(store):
    with TestClient(create_app(Settings(admin_token=""), store)) as c:
        assert_error(
            c.get("/admin/v1/accounts/", headers={"Authorization": "Bearer "}), 403, "disabled"
        )


def test_customer_credentials_do_not_open_admin(account, client):
    assert_error(client.get("/admin/v1/accounts/", auth=account.auth), 401)


def test_account_lifecycle_through_admin(client):
    r = client.post("/admin/v1/accounts/", json={"name": "globex"}, headers=H)
    assert r.status_code == 201
    created = r.json()
    auth_id, token = created["auth_id"], created["auth_token"]
    assert len(auth_id) == 20 and auth_id.startswith("MA") and len(token) == 40
    acct = Account(auth_id, token, client)
    assert acct.get("Zentrunk/Trunk/").status_code == 200
    got = client.get(f"/admin/v1/accounts/{auth_id}/", headers=H).json()
    assert got["name"] == "globex" and got["enabled"] is True
    assert "token" not in str({k: v for k, v in got.items() if k != "api_id"})
    listed = client.get("/admin/v1/accounts/", headers=H).json()["objects"]
    assert auth_id in {a["auth_id"] for a in listed}
    rotated = client.post(f"/admin/v1/accounts/{auth_id}/rotate-token/", headers=H).json()
    assert rotated["auth_token"] != token
    assert_error(acct.get("Zentrunk/Trunk/"), 401)  # invalidated at once, same process
    acct.auth_token = rotated["auth_token"]
    assert acct.get("Zentrunk/Trunk/").status_code == 200
    assert client.post(f"/admin/v1/accounts/{auth_id}/disable/", headers=H).status_code == 200
    assert_error(acct.get("Zentrunk/Trunk/"), 401)
    assert client.post(f"/admin/v1/accounts/{auth_id}/enable/", headers=H).status_code == 200
    assert acct.get("Zentrunk/Trunk/").status_code == 200
    assert_error(client.get("/admin/v1/accounts/MANOPE00000000000000/", headers=H), 404)
    assert_error(client.post("/admin/v1/accounts/", json={}, headers=H), 422, "name")


def test_limits_defaults_and_updates(account, client):
    url = f"/admin/v1/accounts/{account.auth_id}/"
    limits = client.get(url, headers=H).json()["limits"]
    assert limits == {
        "cps": 2.0,
        "max_calls": None,
        "countries": "all",
        "caller_id_policy": True,
        "billing_increment": 60,
        "barred_prefixes": [],
    }
    r = client.post(
        url + "limits/",
        headers=H,
        json={
            "cps": 5,
            "max_calls": 10,
            "countries": ["us", "GB"],
            "caller_id_policy": False,
            "billing_increment": 6,
            "barred_prefixes": ["+1900", "44870"],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["limits"] == {
        "cps": 5.0,
        "max_calls": 10,
        "countries": ["GB", "US"],
        "caller_id_policy": False,
        "billing_increment": 6,
        "barred_prefixes": ["1900", "44870"],
    }
    r = client.post(url + "limits/", headers=H, json={"max_calls": None, "countries": "all"})
    assert r.json()["limits"]["max_calls"] is None and r.json()["limits"]["countries"] == "all"
    for bad in (
        {"cps": 0},
        {"cps": "fast"},
        {"billing_increment": 0},
        {"countries": "USA"},
        {"barred_prefixes": ["12a"]},
    ):
        assert_error(client.post(url + "limits/", headers=H, json=bad), 400)


def test_numbers_through_admin(account, client):
    r = client.post(
        "/admin/v1/numbers/",
        headers=H,
        json={"number": "+1 (415) 555-0177", "auth_id": account.auth_id},
    )
    assert r.status_code == 201 and r.json()["number"] == "14155550177"
    assert account.get("Number/14155550177/").status_code == 200
    assert_error(
        client.post(
            "/admin/v1/numbers/",
            headers=H,
            json={"number": "+14155550177", "auth_id": account.auth_id},
        ),
        409,
    )
    assert_error(
        client.post(
            "/admin/v1/numbers/", headers=H, json={"number": "555", "auth_id": account.auth_id}
        ),
        400,
    )
    assert_error(
        client.post(
            "/admin/v1/numbers/",
            headers=H,
            json={"number": "+14155550178", "auth_id": "MANOPE00000000000000"},
        ),
        404,
    )
    listed = client.get(f"/admin/v1/numbers/?auth_id={account.auth_id}", headers=H).json()
    assert [n["number"] for n in listed["objects"]] == ["14155550177"]
    assert client.delete("/admin/v1/numbers/14155550177/", headers=H).status_code == 204
    assert_error(account.get("Number/14155550177/"), 404)


def test_carriers_through_admin(client, store):
    r = client.post(
        "/admin/v1/carriers/",
        headers=H,
        json={
            "name": "carrier-a",
            "address": "sip.carrier.example:5060",
            "prefix": "1",
            "priority": 1,
            "weight": 50,
            "username": "trunkuser",
            "password": "Carrier$ecret",
            "rate": "0.0045",
            "inbound_sources": ["203.0.113.0/24"],
        },
    )
    assert r.status_code == 201, r.text
    carrier = r.json()
    assert carrier["rate"] == "0.00450" and carrier["has_password"] is True
    assert "Carrier$ecret" not in r.text
    from opentrunk.services.carriers import carrier_password

    assert carrier_password(store, carrier["carrier_id"]) == "Carrier$ecret"
    listed = client.get("/admin/v1/carriers/", headers=H)
    assert "Carrier$ecret" not in listed.text
    assert carrier["carrier_id"] in {c["carrier_id"] for c in listed.json()["objects"]}
    assert_error(
        client.post(
            "/admin/v1/carriers/", headers=H, json={"name": "carrier-a", "address": "10.0.0.1"}
        ),
        409,
    )
    assert_error(
        client.post("/admin/v1/carriers/", headers=H, json={"name": "b", "address": "bad host!"}),
        400,
    )
    assert_error(
        client.post(
            "/admin/v1/carriers/",
            headers=H,
            json={"name": "b", "address": "10.0.0.1", "transport": "sctp"},
        ),
        400,
    )
    assert (
        client.delete(f"/admin/v1/carriers/{carrier['carrier_id']}/", headers=H).status_code == 204
    )
    assert_error(client.delete(f"/admin/v1/carriers/{carrier['carrier_id']}/", headers=H), 404)

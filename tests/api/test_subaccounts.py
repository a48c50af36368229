"""Subaccounts (API.md: an `SA...` auth_id; "a subaccount may not act on its parent's
path"): created by the operator under a main account, they authenticate and manage their
own resources on their own path only, and follow their parent when it is disabled."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from api.conftest import ADMIN_TOKEN, Account
from api.helpers import assert_error, make_trunk

H = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NOBODY = "SA" + "0" * 18


def admin_create(client: TestClient, name: str, parent: str | None = None) -> Account:
    body: dict[str, str] = {"name": name}
    if parent is not None:
        body["parent_auth_id"] = parent
    r = client.post("/admin/v1/accounts/", json=body, headers=H)
    assert r.status_code == 201, r.text
    made = r.json()
    return Account(made["auth_id"], made["auth_token"], client)


@pytest.fixture
def family(client: TestClient) -> tuple[Account, Account]:
    parent = admin_create(client, "main")
    return parent, admin_create(client, "branch", parent.auth_id)


def test_subaccount_has_its_own_sa_id_token_and_resources(client, family):
    parent, sub = family
    assert re.fullmatch(r"SA[A-Z0-9]{18}", sub.auth_id)
    assert re.fullmatch(r"[A-Za-z0-9]{40}", sub.auth_token) and sub.auth_token != parent.auth_token
    trunk_id = make_trunk(sub)
    got = sub.get(f"Zentrunk/Trunk/{trunk_id}/")
    assert got.status_code == 200 and got.json()["trunk_id"] == trunk_id
    assert [t["trunk_id"] for t in sub.get("Zentrunk/Trunk/").json()["objects"]] == [trunk_id]
    # The parent's inventory is its own: the subaccount's trunk is not in it.
    assert parent.get("Zentrunk/Trunk/").json()["objects"] == []
    view = client.get(f"/admin/v1/accounts/{sub.auth_id}/", headers=H).json()
    assert view["parent_auth_id"] == parent.auth_id and view["enabled"] is True
    assert view["disabled_by_parent"] is False
    main_view = client.get(f"/admin/v1/accounts/{parent.auth_id}/", headers=H).json()
    assert main_view["parent_auth_id"] is None and "disabled_by_parent" not in main_view
    listed = client.get(
        "/admin/v1/accounts/", params={"parent_auth_id": parent.auth_id}, headers=H
    ).json()["objects"]
    assert [a["auth_id"] for a in listed] == [sub.auth_id]


def test_neither_may_act_on_the_others_path(client, family):
    parent, sub = family
    parent_trunk, sub_trunk = make_trunk(parent), make_trunk(sub)
    # Each one's own credentials on the other's path: a 404 that says nothing of it.
    for caller, other, trunk_id in ((sub, parent, parent_trunk), (parent, sub, sub_trunk)):
        for path in ("Zentrunk/Trunk/", f"Zentrunk/Trunk/{trunk_id}/"):
            url = f"/v1/Account/{other.auth_id}/{path}"
            body = assert_error(client.get(url, auth=caller.auth), 404)
            # The same answer as for an account that does not exist.
            nobody = url.replace(other.auth_id, NOBODY)
            unknown = assert_error(client.get(nobody, auth=caller.auth), 404)
            assert body["error"] == unknown["error"].replace(NOBODY, other.auth_id)
        r = client.post(
            f"/v1/Account/{other.auth_id}/Zentrunk/Trunk/{trunk_id}/",
            json={"name": "hijacked"},
            auth=caller.auth,
        )
        assert_error(r, 404)
        r = client.delete(
            f"/v1/Account/{other.auth_id}/Zentrunk/Trunk/{trunk_id}/", auth=caller.auth
        )
        assert_error(r, 404)
        # The other's id with this one's token is no login either.
        assert_error(
            client.get(
                f"/v1/Account/{other.auth_id}/Zentrunk/Trunk/",
                auth=(other.auth_id, caller.auth_token),
            ),
            401,
        )
        # Its own path, the other's trunk id: not found, as for any unknown id.
        assert_error(caller.get(f"Zentrunk/Trunk/{trunk_id}/"), 404)
    assert parent.get(f"Zentrunk/Trunk/{parent_trunk}/").json()["name"] != "hijacked"
    assert sub.get(f"Zentrunk/Trunk/{sub_trunk}/").json()["name"] != "hijacked"


def test_disabling_the_parent_disables_its_subaccounts(client, family):
    parent, sub = family
    sibling = admin_create(client, "branch-2", parent.auth_id)
    assert (
        client.post(f"/admin/v1/accounts/{sibling.auth_id}/disable/", headers=H).status_code == 200
    )

    assert (
        client.post(f"/admin/v1/accounts/{parent.auth_id}/disable/", headers=H).status_code == 200
    )
    assert_error(sub.get("Zentrunk/Trunk/"), 401)
    assert_error(parent.get("Zentrunk/Trunk/"), 401)
    view = client.get(f"/admin/v1/accounts/{sub.auth_id}/", headers=H).json()
    assert view["enabled"] is False and view["disabled_by_parent"] is True
    # A subaccount enabled while its parent is off stays off.
    enabled = client.post(f"/admin/v1/accounts/{sub.auth_id}/enable/", headers=H).json()
    assert enabled["enabled"] is False and enabled["disabled_by_parent"] is True
    assert_error(sub.get("Zentrunk/Trunk/"), 401)
    # A subaccount created under a disabled parent starts disabled.
    late = admin_create(client, "late", parent.auth_id)
    assert_error(late.get("Zentrunk/Trunk/"), 401)

    # Enabling the parent gives each subaccount back its own state.
    assert client.post(f"/admin/v1/accounts/{parent.auth_id}/enable/", headers=H).status_code == 200
    assert sub.get("Zentrunk/Trunk/").status_code == 200
    assert late.get("Zentrunk/Trunk/").status_code == 200
    assert_error(sibling.get("Zentrunk/Trunk/"), 401)
    sibling_view = client.get(f"/admin/v1/accounts/{sibling.auth_id}/", headers=H).json()
    assert sibling_view["enabled"] is False and sibling_view["disabled_by_parent"] is False


def test_subaccount_rules_for_the_parent(client, family):
    _, sub = family
    r = client.post(
        "/admin/v1/accounts/", json={"name": "x", "parent_auth_id": sub.auth_id}, headers=H
    )
    assert_error(r, 400, "subaccount")
    r = client.post(
        "/admin/v1/accounts/",
        json={"name": "x", "parent_auth_id": "MANOPE00000000000000"},
        headers=H,
    )
    assert_error(r, 404, "MANOPE00000000000000")
    r = client.post("/admin/v1/accounts/", json={"name": "x", "parent_auth_id": 12}, headers=H)
    assert_error(r, 400)

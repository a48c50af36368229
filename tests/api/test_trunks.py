"""Trunk endpoints: create rules, read, list with filters and paging, update, delete."""

from __future__ import annotations

import re

from api.helpers import assert_error, make_acl, make_credential, make_trunk, make_uri


def test_create_outbound_trunk_and_read_it(account, store):
    acl = make_acl(account)
    r = account.post(
        "Zentrunk/Trunk/", {"trunk_direction": "outbound", "ipacl_uuid": acl, "name": "main"}
    )
    assert r.status_code == 201
    body = r.json()
    assert body["message"] == "Trunk created successfully."
    assert set(body) == {"api_id", "message", "trunk_id"}
    trunk_id = body["trunk_id"]
    assert re.fullmatch(r"[0-9]{14,18}", trunk_id)
    got = account.get(f"Zentrunk/Trunk/{trunk_id}/").json()
    assert got["trunk_domain"] == f"{trunk_id}.{store.sip_domain}"
    assert got["trunk_status"] == "enabled"
    assert got["secure"] is False
    assert got["ipacl_uuid"] == acl
    assert got["credential_uuid"] is None
    assert got["name"] == "main"


def test_outbound_needs_acl_or_credential(account):
    r = account.post("Zentrunk/Trunk/", {"trunk_direction": "outbound"})
    assert_error(r, 422, "ipacl_uuid", "credential_uuid")


def test_outbound_with_both_acl_and_credential(account):
    acl, cred = make_acl(account), make_credential(account)
    trunk_id = make_trunk(account, ipacl_uuid=acl, credential_uuid=cred)
    got = account.get(f"Zentrunk/Trunk/{trunk_id}/").json()
    assert (got["ipacl_uuid"], got["credential_uuid"]) == (acl, cred)


def test_inbound_needs_primary_uri_and_distinct_fallback(account):
    assert_error(account.post("Zentrunk/Trunk/", {"trunk_direction": "inbound"}), 422, "primary")
    uri = make_uri(account)
    r = account.post(
        "Zentrunk/Trunk/",
        {"trunk_direction": "inbound", "primary_uri_uuid": uri, "fallback_uri_uuid": uri},
    )
    assert_error(r, 400, "fallback")
    fb = make_uri(account, "192.0.2.10")
    trunk_id = make_trunk(account, "inbound", primary_uri_uuid=uri, fallback_uri_uuid=fb)
    got = account.get(f"Zentrunk/Trunk/{trunk_id}/").json()
    assert (got["primary_uri_uuid"], got["fallback_uri_uuid"]) == (uri, fb)


def test_trunk_direction_required_and_validated(account):
    assert_error(account.post("Zentrunk/Trunk/", {"name": "x"}), 422, "trunk_direction")
    assert_error(
        account.post("Zentrunk/Trunk/", {"trunk_direction": "sideways"}), 400, "trunk_direction"
    )
    assert_error(account.post("Zentrunk/Trunk/", {"trunk_direction": 5}), 400)


def test_wrong_types_are_400(account):
    acl = make_acl(account)
    base = {"trunk_direction": "outbound", "ipacl_uuid": acl}
    assert_error(account.post("Zentrunk/Trunk/", {**base, "secure": "yes"}), 400, "secure")
    assert_error(account.post("Zentrunk/Trunk/", {**base, "name": 12}), 400, "name")
    assert_error(account.post("Zentrunk/Trunk/", {**base, "trunk_status": "on"}), 400)
    assert_error(account.post("Zentrunk/Trunk/", {**base, "name": "x" * 101}), 400, "name")


def test_references_must_exist_in_this_account(account, other):
    assert_error(
        account.post(
            "Zentrunk/Trunk/", {"trunk_direction": "outbound", "ipacl_uuid": "not-a-uuid"}
        ),
        400,
        "ipacl_uuid",
    )
    missing = "6f1c2e1a-0000-4000-8000-000000000000"
    assert_error(
        account.post(
            "Zentrunk/Trunk/", {"trunk_direction": "outbound", "credential_uuid": missing}
        ),
        400,
        "credential_uuid",
    )
    foreign = make_acl(other)
    assert_error(
        account.post("Zentrunk/Trunk/", {"trunk_direction": "outbound", "ipacl_uuid": foreign}),
        400,
        "ipacl_uuid",
    )


def test_unknown_fields_are_ignored(account):
    acl = make_acl(account)
    r = account.post(
        "Zentrunk/Trunk/", {"trunk_direction": "outbound", "ipacl_uuid": acl, "colour": "blue"}
    )
    assert r.status_code == 201


def test_update_keeps_create_rules(account):
    acl = make_acl(account)
    trunk_id = make_trunk(account, ipacl_uuid=acl)
    r = account.post(f"Zentrunk/Trunk/{trunk_id}/", {"ipacl_uuid": None})
    assert_error(r, 422, "outbound")
    r = account.post(
        f"Zentrunk/Trunk/{trunk_id}/",
        {"name": "renamed", "trunk_status": "disabled", "secure": True},
    )
    assert r.status_code == 202
    assert r.json()["trunk_id"] == trunk_id
    assert r.json()["message"] == "Trunk updated successfully."
    got = account.get(f"Zentrunk/Trunk/{trunk_id}/").json()
    assert (got["name"], got["trunk_status"], got["secure"]) == ("renamed", "disabled", True)
    assert got["ipacl_uuid"] == acl
    # Switching to inbound needs a primary URI.
    assert_error(
        account.post(f"Zentrunk/Trunk/{trunk_id}/", {"trunk_direction": "inbound"}),
        422,
        "primary_uri_uuid",
    )


def test_delete_trunk(account):
    trunk_id = make_trunk(account)
    r = account.delete(f"Zentrunk/Trunk/{trunk_id}/")
    assert r.status_code == 204
    assert r.content == b""
    assert_error(account.get(f"Zentrunk/Trunk/{trunk_id}/"), 404)
    assert_error(account.delete(f"Zentrunk/Trunk/{trunk_id}/"), 404)
    assert_error(account.post(f"Zentrunk/Trunk/{trunk_id}/", {"name": "x"}), 404)


def test_list_paging_is_stable_and_keeps_filters(account):
    acl = make_acl(account)
    ids = {make_trunk(account, ipacl_uuid=acl) for _ in range(23)}
    make_trunk(account, "inbound")
    seen: list[str] = []
    url = "Zentrunk/Trunk/?trunk_direction=outbound&limit=10"
    r = account.get(url)
    first = r.json()
    assert first["meta"]["total_count"] == 23
    assert first["meta"]["previous"] is None
    assert first["meta"]["next"] == (
        f"/v1/Account/{account.auth_id}/Zentrunk/Trunk/?trunk_direction=outbound&limit=10&offset=10"
    )
    page = first
    while True:
        seen += [o["trunk_id"] for o in page["objects"]]
        nxt = page["meta"]["next"]
        if nxt is None:
            break
        page = account.client.get(nxt, auth=account.auth).json()
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == ids
    assert page["meta"]["previous"].endswith("limit=10&offset=10")
    assert page["meta"]["offset"] == 20 and page["meta"]["limit"] == 10


def test_list_filters(account):
    acl, cred = make_acl(account), make_credential(account)
    a = make_trunk(account, ipacl_uuid=acl, secure=True)
    b = make_trunk(account, credential_uuid=cred, trunk_status="disabled")
    c = make_trunk(account, "inbound")

    def ids(query: str) -> set[str]:
        r = account.get(f"Zentrunk/Trunk/?{query}")
        assert r.status_code == 200, r.text
        return {o["trunk_id"] for o in r.json()["objects"]}

    assert ids("secure=true") == {a}
    assert ids("trunk_status=disabled") == {b}
    assert ids("trunk_direction=inbound") == {c}
    assert ids(f"ipacl_uuid={acl}") == {a}
    assert ids(f"credential_uuid={cred}") == {b}
    assert ids("") == {a, b, c}


def test_list_bad_parameters(account):
    for query in (
        "limit=0",
        "limit=21",
        "limit=abc",
        "offset=-1",
        "trunk_status=maybe",
        "secure=perhaps",
        "ipacl_uuid=nope",
    ):
        assert_error(account.get(f"Zentrunk/Trunk/?{query}"), 400)


def test_deleting_referenced_acl_detaches_it(account):
    acl, cred = make_acl(account), make_credential(account)
    trunk_id = make_trunk(account, ipacl_uuid=acl, credential_uuid=cred)
    assert account.delete(f"Zentrunk/IPAccessControlList/{acl}/").status_code == 204
    got = account.get(f"Zentrunk/Trunk/{trunk_id}/").json()
    assert got["ipacl_uuid"] is None and got["credential_uuid"] == cred

"""Number endpoints: list, get, attach/detach an inbound trunk, alias, release."""

from __future__ import annotations

import pytest

from api.helpers import assert_error, make_trunk
from opentrunk.services.errors import Conflict, InvalidParameter
from opentrunk.services.numbers import add_number


def test_list_and_get_numbers(account, other, store):
    add_number(store, "+1 415-555-0100", account.auth_id)
    add_number(store, "+442079460000", account.auth_id)
    add_number(store, "+14155550199", other.auth_id)
    listed = account.get("Number/").json()
    assert listed["meta"]["total_count"] == 2
    assert {o["number"] for o in listed["objects"]} == {"14155550100", "442079460000"}
    got = account.get("Number/14155550100/").json()
    assert got["country"] == "US" and got["application"] is None and got["alias"] is None
    assert got["voice_enabled"] is True and got["added_on"]
    gb = account.get("Number/442079460000/").json()
    assert gb["country"] == "GB" and gb["number_type"] == "local"
    assert_error(account.get("Number/14155550199/"), 404)  # another account's number
    assert_error(account.get("Number/abc/"), 404)
    filtered = account.get("Number/?number_startswith=44").json()
    assert [o["number"] for o in filtered["objects"]] == ["442079460000"]


def test_attach_inbound_trunk_and_detach(account, store):
    add_number(store, "+14155550101", account.auth_id)
    inbound = make_trunk(account, "inbound")
    outbound = make_trunk(account)
    r = account.post("Number/14155550101/", {"app_id": inbound, "alias": "main line"})
    assert r.status_code == 202
    got = account.get("Number/14155550101/").json()
    assert got["application"] == f"/v1/Account/{account.auth_id}/Zentrunk/Trunk/{inbound}/"
    assert got["alias"] == "main line"
    assert_error(account.post("Number/14155550101/", {"app_id": outbound}), 400, "outbound")
    assert_error(account.post("Number/14155550101/", {"app_id": "123456789012345"}), 400)
    assert_error(account.post("Number/14155550101/", {"app_id": 5}), 400)
    assert account.post("Number/14155550101/", {"app_id": ""}).status_code == 202
    assert account.get("Number/14155550101/").json()["application"] is None
    # Deleting an attached trunk detaches the number.
    account.post("Number/14155550101/", {"app_id": inbound})
    assert account.delete(f"Zentrunk/Trunk/{inbound}/").status_code == 204
    assert account.get("Number/14155550101/").json()["application"] is None


def test_trunk_switched_to_outbound_detaches_numbers(account, store):
    add_number(store, "+14155550102", account.auth_id)
    inbound = make_trunk(account, "inbound")
    account.post("Number/14155550102/", {"app_id": inbound})
    acl = account.post("Zentrunk/IPAccessControlList/", {"ip_addresses": ["10.1.1.1"]}).json()
    r = account.post(
        f"Zentrunk/Trunk/{inbound}/",
        {"trunk_direction": "outbound", "ipacl_uuid": acl["ipacl_uuid"]},
    )
    assert r.status_code == 202
    assert account.get("Number/14155550102/").json()["application"] is None


def test_other_accounts_trunk_cannot_be_attached(account, other, store):
    add_number(store, "+14155550103", account.auth_id)
    theirs = make_trunk(other, "inbound")
    assert_error(account.post("Number/14155550103/", {"app_id": theirs}), 400)


def test_release_number(account, other, store):
    add_number(store, "+14155550104", account.auth_id)
    assert_error(other.delete("Number/14155550104/"), 404)
    assert account.delete("Number/14155550104/").status_code == 204
    assert_error(account.get("Number/14155550104/"), 404)


def test_operator_number_rules(account, store):
    with pytest.raises(InvalidParameter):
        add_number(store, "12", account.auth_id)
    add_number(store, "+14155550105", account.auth_id)
    with pytest.raises(Conflict):
        add_number(store, "14155550105", account.auth_id)

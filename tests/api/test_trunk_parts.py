"""Credential, IP access control list and origination URI endpoints."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from api.helpers import assert_error, make_credential, make_trunk, make_uri
from opentrunk.store.models import credentials, origination_uris

# ---- Credential ----------------------------------------------------------------------


def test_credential_create_get_list_never_shows_password(account, store):
    r = account.post(
        "Zentrunk/Credential/", {"username": "alice123", "password": "pa$$word1", "name": "office"}
    )
    assert r.status_code == 201
    assert r.json()["message"] == "Credential created successfully."
    cu = r.json()["credential_uuid"]
    got = account.get(f"Zentrunk/Credential/{cu}/")
    assert got.json() | {"api_id": None} == {
        "api_id": None,
        "credential_uuid": cu,
        "name": "office",
        "username": "alice123",
    }
    listed = account.get("Zentrunk/Credential/")
    assert "pa$$word1" not in listed.text and "pa$$word1" not in got.text
    with store.engine.connect() as conn:
        row = conn.execute(select(credentials).where(credentials.c.credential_uuid == cu)).one()
    material = f"alice123:{store.sip_domain}:pa$$word1".encode()
    assert row.ha1_md5 == hashlib.md5(material).hexdigest()
    assert row.ha1_sha256 == hashlib.sha256(material).hexdigest()
    assert "pa$$word1" not in " ".join(str(v) for v in row)


def test_credential_rules(account):
    url = "Zentrunk/Credential/"
    assert_error(account.post(url, {"username": "alice123"}), 422, "password")
    assert_error(account.post(url, {"password": "pa$$word1"}), 422, "username")
    assert_error(account.post(url, {"username": "abc", "password": "pa$$word1"}), 400, "username")
    assert_error(account.post(url, {"username": "bad_name", "password": "pa$$word1"}), 400)
    assert_error(
        account.post(url, {"username": "alice123", "password": "nospecial1"}), 400, "password"
    )
    assert_error(account.post(url, {"username": "alice123", "password": "a$"}), 400, "password")
    assert_error(account.post(url, {"username": "alice123", "password": "bad space!"}), 400)
    assert_error(account.post(url, {"username": 12345, "password": "pa$$word1"}), 400)
    make_credential(account, "dupuser1")
    assert_error(
        account.post(url, {"username": "dupuser1", "password": "pa$$word1"}), 400, "already"
    )


def test_credential_update_recomputes_hashes(account, store):
    cu = make_credential(account, "bobuser1")

    def hashes() -> tuple[str, str]:
        with store.engine.connect() as conn:
            row = conn.execute(select(credentials).where(credentials.c.credential_uuid == cu)).one()
        return row.ha1_md5, row.username

    before = hashes()
    r = account.post(f"Zentrunk/Credential/{cu}/", {"password": "n3w!pass"})
    assert r.status_code == 202 and r.json()["credential_uuid"] == cu
    after = hashes()
    assert after[0] != before[0]
    material = f"bobuser1:{store.sip_domain}:n3w!pass".encode()
    assert after[0] == hashlib.md5(material).hexdigest()
    # A new username needs the password too (HA1 covers it).
    assert_error(account.post(f"Zentrunk/Credential/{cu}/", {"username": "bobuser2"}), 400)
    r = account.post(f"Zentrunk/Credential/{cu}/", {"username": "bobuser2", "password": "n3w!pass"})
    assert r.status_code == 202
    assert account.get(f"Zentrunk/Credential/{cu}/").json()["username"] == "bobuser2"
    assert_error(account.post(f"Zentrunk/Credential/{cu}/", {"password": "weak"}), 400)


def test_credential_delete_detaches_from_trunk(account):
    cu = make_credential(account, "carol123")
    trunk_id = make_trunk(account, credential_uuid=cu)
    assert account.delete(f"Zentrunk/Credential/{cu}/").status_code == 204
    assert account.get(f"Zentrunk/Trunk/{trunk_id}/").json()["credential_uuid"] is None
    assert_error(account.get(f"Zentrunk/Credential/{cu}/"), 404)


def test_credential_isolation(account, other):
    cu = make_credential(other, "theirs12")
    assert_error(account.get(f"Zentrunk/Credential/{cu}/"), 404)
    assert_error(account.delete(f"Zentrunk/Credential/{cu}/"), 404)
    assert_error(account.get("Zentrunk/Credential/not-a-uuid/"), 404)
    # Same username in another account is fine.
    make_credential(account, "theirs12")


# ---- IP ACL ---------------------------------------------------------------------------


def test_ipacl_create_keeps_entries_as_sent(account):
    ips = ["198.51.100.0/24", "2001:db8::1", "203.0.113.7", "2001:db8:1::/48"]
    r = account.post("Zentrunk/IPAccessControlList/", {"ip_addresses": ips, "name": "pbx"})
    assert r.status_code == 201
    iu = r.json()["ipacl_uuid"]
    got = account.get(f"Zentrunk/IPAccessControlList/{iu}/").json()
    assert got["ip_addresses"] == ips and got["name"] == "pbx"


def test_ipacl_rules(account):
    url = "Zentrunk/IPAccessControlList/"
    assert_error(account.post(url, {"name": "x"}), 422, "ip_addresses")
    assert_error(account.post(url, {"ip_addresses": []}), 400, "at least one")
    assert_error(account.post(url, {"ip_addresses": ["300.1.1.1"]}), 400, "300.1.1.1")
    assert_error(
        account.post(url, {"ip_addresses": ["10.0.0.1", "pbx.example.com"]}), 400, "pbx.example.com"
    )
    assert_error(account.post(url, {"ip_addresses": ["0.0.0.0/0"]}), 400, "0.0.0.0/0")
    assert_error(account.post(url, {"ip_addresses": ["::/0"]}), 400, "::/0")
    assert_error(account.post(url, {"ip_addresses": "10.0.0.1"}), 400)
    assert_error(account.post(url, {"ip_addresses": [1, 2]}), 400)


def test_ipacl_update_replaces_list(account):
    r = account.post("Zentrunk/IPAccessControlList/", {"ip_addresses": ["10.0.0.1", "10.0.0.2"]})
    iu = r.json()["ipacl_uuid"]
    r = account.post(f"Zentrunk/IPAccessControlList/{iu}/", {"ip_addresses": ["192.0.2.1"]})
    assert r.status_code == 202
    assert account.get(f"Zentrunk/IPAccessControlList/{iu}/").json()["ip_addresses"] == [
        "192.0.2.1"
    ]
    assert_error(account.post(f"Zentrunk/IPAccessControlList/{iu}/", {"ip_addresses": []}), 400)
    listed = account.get("Zentrunk/IPAccessControlList/").json()
    assert [o["ipacl_uuid"] for o in listed["objects"]] == [iu]


# ---- URI ------------------------------------------------------------------------------


def test_uri_accepted_forms(account):
    for form in (
        "192.0.2.10",
        "192.0.2.10:5060",
        "pbx.example.com",
        "pbx.example.com:5060",
        "sip:pbx@example.com",
        "sip:pbx@example.com;transport=tls",
        "192.0.2.10;transport=tcp",
        "pbx.example.com:5080;transport=udp",
    ):
        r = account.post("Zentrunk/URI/", {"uri": form})
        assert r.status_code == 201, (form, r.text)
        got = account.get(f"Zentrunk/URI/{r.json()['uri_uuid']}/").json()
        assert got["uri"] == form
        assert got["authentication_needed"] is False and got["username"] is None


def test_uri_rejected_forms(account):
    assert_error(account.post("Zentrunk/URI/", {"name": "x"}), 422, "uri")
    for form in (
        "",
        "http://pbx.example.com",
        "pbx.example.com:99999",
        "pbx..example.com",
        "sip:@example.com",
        "192.0.2.10;transport=sctp",
        "pbx example.com",
        "192.0.2.10;lr",
        "sips:pbx@example.com:abc",
    ):
        assert_error(account.post("Zentrunk/URI/", {"uri": form}), 400)


def test_uri_authentication_password_encrypted_never_returned(account, store):
    assert_error(
        account.post("Zentrunk/URI/", {"uri": "192.0.2.10", "authentication_needed": True}),
        422,
        "username",
        "password",
    )
    assert_error(
        account.post(
            "Zentrunk/URI/", {"uri": "192.0.2.10", "authentication_needed": True, "username": "u1"}
        ),
        422,
        "password",
    )
    r = account.post(
        "Zentrunk/URI/",
        {
            "uri": "192.0.2.10",
            "authentication_needed": True,
            "username": "pbxuser",
            "password": "Very$ecret42",
        },
    )
    assert r.status_code == 201
    uu = r.json()["uri_uuid"]
    got = account.get(f"Zentrunk/URI/{uu}/")
    assert got.json()["username"] == "pbxuser" and got.json()["authentication_needed"] is True
    assert "Very$ecret42" not in got.text
    assert "Very$ecret42" not in account.get("Zentrunk/URI/").text
    with store.engine.connect() as conn:
        row = conn.execute(select(origination_uris).where(origination_uris.c.uri_uuid == uu)).one()
    assert row.password_enc and "Very$ecret42" not in row.password_enc
    from opentrunk.services.uris import uri_password

    assert uri_password(store, uu) == "Very$ecret42"
    # Update without the password keeps the stored one; turning auth off clears both.
    assert account.post(f"Zentrunk/URI/{uu}/", {"name": "renamed"}).status_code == 202
    assert uri_password(store, uu) == "Very$ecret42"
    assert account.post(f"Zentrunk/URI/{uu}/", {"authentication_needed": False}).status_code == 202
    assert uri_password(store, uu) is None
    assert account.get(f"Zentrunk/URI/{uu}/").json()["username"] is None


def test_uri_update_and_delete_detach_trunk(account):
    uu = make_uri(account)
    trunk_id = make_trunk(account, "inbound", primary_uri_uuid=uu)
    assert_error(account.post(f"Zentrunk/URI/{uu}/", {"uri": "not a uri"}), 400)
    assert account.post(f"Zentrunk/URI/{uu}/", {"uri": "192.0.2.99"}).status_code == 202
    assert account.get(f"Zentrunk/URI/{uu}/").json()["uri"] == "192.0.2.99"
    assert account.delete(f"Zentrunk/URI/{uu}/").status_code == 204
    assert account.get(f"Zentrunk/Trunk/{trunk_id}/").json()["primary_uri_uuid"] is None

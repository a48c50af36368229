"""Cross-cutting HTTP behaviour: Basic auth, account isolation, api_id, error bodies,
405 with Allow, unknown paths, trailing slashes, bodies (non-JSON, huge), rate limit."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from api.conftest import Account
from api.helpers import assert_error, is_uuid, make_acl, make_trunk
from opentrunk.api.app import create_app
from opentrunk.config import Settings
from opentrunk.services.accounts import create_account, disable_account, rotate_token


def test_missing_and_wrong_credentials_are_401_with_challenge(account, client):
    url = account.url("Zentrunk/Trunk/")
    for auth in (None, (account.auth_id, "wrong"), ("MAXXXXXXXXXXXXXXXXXX", account.auth_token)):
        r = client.get(url, auth=auth)
        assert_error(r, 401, "auth")
        assert r.headers["www-authenticate"].startswith("Basic realm=")
    bad = client.get(url, headers={"Authorization": "Basic !!!notbase64"})
    assert_error(bad, 401)
    nocolon = base64.b64encode(account.auth_id.encode()).decode()
    assert_error(client.get(url, headers={"Authorization": f"Basic {nocolon}"}), 401)
    assert_error(client.get(url, headers={"Authorization": "Bearer abc"}), 401)


def test_token_never_echoed(account, client):
    r = client.get(account.url("Zentrunk/Trunk/"), auth=(account.auth_id, "wrong-token-xyz"))
    assert "wrong-token-xyz" not in r.text


def test_other_accounts_path_reveals_nothing(account, other):
    trunk_id = make_trunk(other)
    # Own credentials on the other account's path: 404 as for a path that does not exist.
    r = account.client.get(
        f"/v1/Account/{other.auth_id}/Zentrunk/Trunk/{trunk_id}/", auth=account.auth
    )
    body = assert_error(r, 404)
    assert trunk_id not in body["error"] or "no resource" in body["error"]
    r2 = account.client.get("/v1/Account/MANONEXISTENT0000000/Zentrunk/Trunk/", auth=account.auth)
    assert r2.status_code == r.status_code
    # Own path, another account's object id: 404.
    assert_error(account.get(f"Zentrunk/Trunk/{trunk_id}/"), 404)
    assert_error(account.delete(f"Zentrunk/Trunk/{trunk_id}/"), 404)
    assert_error(account.post(f"Zentrunk/Trunk/{trunk_id}/", {"name": "mine"}), 404)
    assert other.get(f"Zentrunk/Trunk/{trunk_id}/").json()["name"] == ""
    assert account.get("Zentrunk/Trunk/").json()["meta"]["total_count"] == 0


def test_disabled_account_and_rotated_token(account, store):
    assert account.get("Zentrunk/Trunk/").status_code == 200
    new = rotate_token(store, account.auth_id)["auth_token"]
    assert_error(account.get("Zentrunk/Trunk/"), 401)
    account.auth_token = new
    assert account.get("Zentrunk/Trunk/").status_code == 200
    disable_account(store, account.auth_id)
    assert_error(account.get("Zentrunk/Trunk/"), 401)


def test_api_id_fresh_per_request_in_body_and_header(account):
    ids = set()
    for _ in range(3):
        r = account.get("Zentrunk/Trunk/")
        assert r.headers["x-api-id"] == r.json()["api_id"]
        ids.add(r.json()["api_id"])
    assert len(ids) == 3 and all(is_uuid(i) for i in ids)


def test_trailing_slash_optional(account):
    trunk_id = make_trunk(account)
    r = account.client.get(account.url("Zentrunk/Trunk"), auth=account.auth, follow_redirects=False)
    assert r.status_code == 200
    r = account.client.get(
        account.url(f"Zentrunk/Trunk/{trunk_id}"), auth=account.auth, follow_redirects=False
    )
    assert r.status_code == 200 and r.json()["trunk_id"] == trunk_id
    r = account.client.delete(account.url(f"Zentrunk/Trunk/{trunk_id}"), auth=account.auth)
    assert r.status_code == 204


def test_wrong_method_is_405_with_allow(account):
    trunk_id = make_trunk(account)
    r = account.client.put(account.url(f"Zentrunk/Trunk/{trunk_id}/"), auth=account.auth, json={})
    assert_error(r, 405, "PUT")
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST", "DELETE"}
    r = account.client.delete(account.url("Zentrunk/Trunk/"), auth=account.auth)
    assert_error(r, 405)
    assert "DELETE" not in r.headers["allow"]
    r = account.client.patch(account.url("Zentrunk/Call/"), auth=account.auth)
    assert_error(r, 405)
    assert r.headers["allow"] == "GET"


def test_unknown_path_is_404_error_body(account, client):
    assert_error(account.get("Zentrunk/Nothing/"), 404, "not found")
    assert_error(client.get("/nope"), 404)
    assert_error(client.get("/v1/"), 404)


def test_non_json_and_non_object_bodies_are_400(account):
    url = account.url("Zentrunk/Trunk/")
    c = account.client
    r = c.post(
        url, content=b"{not json", auth=account.auth, headers={"content-type": "application/json"}
    )
    assert_error(r, 400, "json")
    r = c.post(
        url, content=b"[1, 2]", auth=account.auth, headers={"content-type": "application/json"}
    )
    assert_error(r, 400, "object")
    r = c.post(
        url,
        content=b"trunk_direction=outbound",
        auth=account.auth,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_error(r, 400)
    r = c.post(
        url, content=b'"text"', auth=account.auth, headers={"content-type": "application/json"}
    )
    assert_error(r, 400)
    # No body at all on a create: the required parameters are missing.
    assert_error(c.post(url, auth=account.auth), 422)


def test_huge_body_is_413(account):
    acl = make_acl(account)
    big = {"trunk_direction": "outbound", "ipacl_uuid": acl, "name": "x" * (70 * 1024)}
    r = account.post("Zentrunk/Trunk/", big)
    assert_error(r, 413, "too large")


def test_huge_chunked_body_is_413(account):
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"name": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    r = account.client.post(
        account.url("Zentrunk/Trunk/"),
        content=chunks(),
        auth=account.auth,
        headers={"content-type": "application/json"},
    )
    assert_error(r, 413)


def test_rate_limit_429_with_retry_after(store):
    settings = Settings(sip_domain=store.sip_domain, api_rate_limit=1.0, api_rate_burst=3)
    created = create_account(store, "limited")
    with TestClient(create_app(settings, store)) as c:
        acct = Account(created["auth_id"], created["auth_token"], c)
        codes = [acct.get("Zentrunk/Trunk/").status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200]
        assert codes[3:] == [429, 429]
        r = acct.get("Zentrunk/Trunk/")
        assert_error(r, 429, "rate limit")
        assert int(r.headers["retry-after"]) >= 1
        # Another account has its own bucket.
        second = create_account(store, "unlimited-neighbour")
        other = Account(second["auth_id"], second["auth_token"], c)
        assert other.get("Zentrunk/Trunk/").status_code == 200


def test_openapi_and_docs(client):
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    assert "/v1/Account/{auth_id}/Zentrunk/Trunk/" in paths
    op = paths["/v1/Account/{auth_id}/Zentrunk/Trunk/"]["post"]
    assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ErrorBody"
    )
    assert "201" in op["responses"]
    assert client.get("/docs").status_code == 200

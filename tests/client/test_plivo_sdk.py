"""The official Plivo Python SDK, unchanged, against a live opentrunk server.

The SDK builds every URL from the module constant `plivo.rest.client.PLIVO_API_BASE_URI`
(re-read on each request), so pointing that at the server is all a customer would change.
Its Number resource must work as is, its generic `client.request` must reach the Zentrunk
paths, and our error bodies must turn into the SDK's own exceptions carrying our message.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import plivo
import plivo.rest.client as plivo_rest
import pytest
from plivo import exceptions as sdk_errors

from api_live import Account, LiveServer

NUMBERS = ("+14155550100", "+14155550101")
DIGITS = [n.lstrip("+") for n in NUMBERS]


@pytest.fixture(scope="module")
def account(server: LiveServer) -> Account:
    acct = server.create_account("sdk-main")
    for number in NUMBERS:
        server.add_number(number, acct)
    return acct


@pytest.fixture(scope="module")
def sdk_base(server: LiveServer) -> Iterator[str]:
    base = f"{server.base_url}/v1/Account"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plivo_rest, "PLIVO_API_BASE_URI", base)
        yield base


@pytest.fixture(scope="module")
def client(sdk_base: str, account: Account) -> Iterator[plivo.RestClient]:
    with plivo.RestClient(account.auth_id, account.auth_token, timeout=10) as sdk:
        yield sdk


def raw(server: LiveServer, account: Account, method: str, path: str, **kw: Any) -> httpx.Response:
    """The same request without the SDK, to read what the server really answered."""
    url = f"{server.base_url}/v1/Account/{account.auth_id}/{path}"
    kw.setdefault("auth", account.basic)
    return httpx.request(method, url, timeout=10, **kw)


def uri_uuid(client: plivo.RestClient) -> str:
    made = client.request(
        "POST", ("Zentrunk", "URI"), {"uri": "127.0.0.1:5999;transport=udp", "name": "pbx"}
    )
    assert made.message
    return str(made.uri_uuid)


def inbound_trunk(client: plivo.RestClient) -> str:
    made = client.request(
        "POST",
        ("Zentrunk", "Trunk"),
        {"trunk_direction": "inbound", "name": "in", "primary_uri_uuid": uri_uuid(client)},
    )
    assert made.message == "Trunk created successfully."
    return str(made.trunk_id)


def outbound_trunk(client: plivo.RestClient) -> tuple[str, str]:
    acl = client.request(
        "POST",
        ("Zentrunk", "IPAccessControlList"),
        {"name": "office", "ip_addresses": ["198.51.100.0/24"]},
    )
    made = client.request(
        "POST",
        ("Zentrunk", "Trunk"),
        {"trunk_direction": "outbound", "name": "out", "ipacl_uuid": acl.ipacl_uuid},
    )
    return str(made.trunk_id), str(acl.ipacl_uuid)


# --- Number resource, as the SDK ships it ------------------------------------------------


def test_numbers_list_shows_the_account_inventory(client: plivo.RestClient) -> None:
    listed = client.numbers.list()
    assert sorted(n.number for n in listed) == sorted(DIGITS)
    assert listed.meta.total_count == len(DIGITS)
    assert listed.meta.limit == 20
    assert listed.meta.offset == 0
    assert all(isinstance(n, plivo.resources.numbers.Number) for n in listed)


def test_numbers_list_pages_with_limit_and_offset(client: plivo.RestClient) -> None:
    first = client.numbers.list(limit=1)
    second = client.numbers.list(limit=1, offset=1)
    assert len(first) == len(second) == 1
    assert {first.objects[0].number, second.objects[0].number} == set(DIGITS)
    assert first.meta.previous is None
    assert "offset=1" in first.meta.next and "limit=1" in first.meta.next
    assert second.meta.next is None


def test_numbers_get_returns_one_number(client: plivo.RestClient) -> None:
    got = client.numbers.get(DIGITS[1])
    assert got.number == DIGITS[1]
    assert got.id == DIGITS[1]
    assert got.country == "US"
    assert got.application is None
    assert got.api_id


def test_numbers_update_attaches_and_detaches_an_inbound_trunk(
    client: plivo.RestClient, account: Account
) -> None:
    trunk_id = inbound_trunk(client)
    updated = client.numbers.update(DIGITS[0], app_id=trunk_id, alias="front desk")
    assert updated.message
    got = client.numbers.get(DIGITS[0])
    assert got.application == f"/v1/Account/{account.auth_id}/Zentrunk/Trunk/{trunk_id}/"
    assert got.alias == "front desk"
    # The resource object's own update() goes through the same path.
    got.update(app_id="")
    assert client.numbers.get(DIGITS[0]).application is None


def test_numbers_update_to_an_outbound_trunk_is_a_validation_error(
    client: plivo.RestClient, server: LiveServer, account: Account
) -> None:
    trunk_id, _ = outbound_trunk(client)
    expected = raw(server, account, "POST", f"Number/{DIGITS[0]}/", json={"app_id": trunk_id})
    assert expected.status_code == 400
    with pytest.raises(sdk_errors.ValidationError) as caught:
        client.numbers.update(DIGITS[0], app_id=trunk_id)
    assert str(caught.value) == expected.json()["error"]
    assert client.numbers.get(DIGITS[0]).application is None


# --- Zentrunk through the generic client.request -------------------------------------------


def test_generic_request_creates_lists_and_deletes_a_trunk(client: plivo.RestClient) -> None:
    username = "u" + uuid.uuid4().hex[:10]
    cred = client.request(
        "POST",
        ("Zentrunk", "Credential"),
        {"name": "pbx", "username": username, "password": "s3cret!pw"},
    )
    assert cred.credential_uuid
    trunk_id, ipacl_uuid = outbound_trunk(client)
    client.request(
        "POST", ("Zentrunk", "Trunk", trunk_id), {"credential_uuid": cred.credential_uuid}
    )

    trunk = client.request("GET", ("Zentrunk", "Trunk", trunk_id))
    assert trunk.trunk_id == trunk_id
    assert trunk.trunk_direction == "outbound"
    assert trunk.trunk_status == "enabled"
    assert trunk.secure is False
    assert trunk.ipacl_uuid == ipacl_uuid
    assert trunk.credential_uuid == cred.credential_uuid
    assert trunk.trunk_domain.startswith(f"{trunk_id}.")

    listed = client.request("GET", ("Zentrunk", "Trunk"), {"trunk_direction": "outbound"})
    assert trunk_id in [t.trunk_id for t in listed.objects]
    assert all(t.trunk_direction == "outbound" for t in listed.objects)

    creds = client.request("GET", ("Zentrunk", "Credential"))
    mine = [c for c in creds.objects if c.credential_uuid == cred.credential_uuid]
    assert len(mine) == 1 and mine[0].username == username
    assert "password" not in vars(mine[0])

    acls = client.request("GET", ("Zentrunk", "IPAccessControlList", ipacl_uuid))
    assert acls.ip_addresses == ["198.51.100.0/24"]

    assert client.request("DELETE", ("Zentrunk", "Trunk", trunk_id)) is None
    with pytest.raises(sdk_errors.ResourceNotFoundError):
        client.request("GET", ("Zentrunk", "Trunk", trunk_id))


def test_generic_request_reaches_origination_uris(client: plivo.RestClient) -> None:
    made = uri_uuid(client)
    got = client.request("GET", ("Zentrunk", "URI", made))
    assert got.uri == "127.0.0.1:5999;transport=udp"
    assert got.authentication_needed is False
    listed = client.request("GET", ("Zentrunk", "URI"))
    assert made in [u.uri_uuid for u in listed.objects]


# --- our error bodies become the SDK's exceptions, with our message -------------------------


def test_400_is_a_validation_error_with_our_message(
    client: plivo.RestClient, server: LiveServer, account: Account
) -> None:
    body = {"name": "world", "ip_addresses": ["0.0.0.0/0"]}
    expected = raw(server, account, "POST", "Zentrunk/IPAccessControlList/", json=body)
    assert expected.status_code == 400
    message = expected.json()["error"]
    assert "0.0.0.0/0" in message
    with pytest.raises(sdk_errors.ValidationError) as caught:
        client.request("POST", ("Zentrunk", "IPAccessControlList"), body)
    assert str(caught.value) == message


def test_401_is_an_authentication_error_with_our_message(
    sdk_base: str, server: LiveServer, account: Account
) -> None:
    wrong = "x" * 40
    expected = raw(server, account, "GET", "Number/", auth=(account.auth_id, wrong))
    assert expected.status_code == 401
    assert expected.headers["www-authenticate"].lower().startswith("basic realm=")
    message = expected.json()["error"]
    assert message and wrong not in message
    # Not numbers.list(): the SDK's list wrapper object has no `objects` on an error body
    # and its 401 branch takes len() of it, an AttributeError on any server (SDK quirk).
    with plivo.RestClient(account.auth_id, wrong) as bad:
        with pytest.raises(sdk_errors.AuthenticationError) as caught:
            bad.numbers.get(DIGITS[0])
        assert str(caught.value) == message
        with pytest.raises(sdk_errors.AuthenticationError) as caught:
            bad.request("GET", ("Zentrunk", "Trunk"))
        assert str(caught.value) == message
    # An auth_id of the right shape that no account has fails the same way.
    with (
        plivo.RestClient("MA" + "Z" * 18, wrong) as stranger,
        pytest.raises(sdk_errors.AuthenticationError),
    ):
        stranger.numbers.get(DIGITS[0])


def test_404_is_a_resource_not_found_error_with_our_message(
    client: plivo.RestClient, server: LiveServer, account: Account
) -> None:
    expected = raw(server, account, "GET", "Number/14155559999/")
    assert expected.status_code == 404
    with pytest.raises(sdk_errors.ResourceNotFoundError) as caught:
        client.numbers.get("14155559999")
    assert str(caught.value) == expected.json()["error"]
    with pytest.raises(sdk_errors.ResourceNotFoundError):
        client.request("GET", ("Zentrunk", "Trunk", "12345678901234"))


def test_405_is_an_invalid_request_error_with_our_message(
    client: plivo.RestClient, server: LiveServer, account: Account
) -> None:
    expected = raw(server, account, "PUT", "Zentrunk/Trunk/", json={})
    assert expected.status_code == 405
    assert "GET" in expected.headers["allow"] and "POST" in expected.headers["allow"]
    message = expected.json()["error"]
    assert message
    with pytest.raises(sdk_errors.InvalidRequestError) as caught:
        client.request("PUT", ("Zentrunk", "Trunk"), {})
    assert str(caught.value) == message


def test_422_missing_parameter_is_an_invalid_request_error(client: plivo.RestClient) -> None:
    with pytest.raises(sdk_errors.InvalidRequestError) as caught:
        client.request("POST", ("Zentrunk", "Trunk"), {"trunk_direction": "outbound"})
    assert "ipacl_uuid" in str(caught.value) or "credential_uuid" in str(caught.value)


# --- Subaccounts ---------------------------------------------------------------------------


def test_subaccount_works_with_the_sdk_on_its_own_path_only(
    client: plivo.RestClient, server: LiveServer, account: Account
) -> None:
    sub = server.create_account("sdk-sub", parent=account)
    assert sub.auth_id.startswith("SA") and len(sub.auth_id) == 20
    # The SDK checks the auth_id's form itself (MA... or SA..., 20 characters).
    with plivo.RestClient(sub.auth_id, sub.auth_token, timeout=10) as sdk:
        trunk_id, _ = outbound_trunk(sdk)
        assert sdk.request("GET", ("Zentrunk", "Trunk", trunk_id)).trunk_id == trunk_id
        # The parent's numbers are not the subaccount's.
        assert len(sdk.numbers.list()) == 0
    # The parent's path with the subaccount's credentials, and the other way round.
    assert raw(server, account, "GET", "Zentrunk/Trunk/", auth=sub.basic).status_code == 404
    assert (
        raw(server, sub, "GET", f"Zentrunk/Trunk/{trunk_id}/", auth=account.basic).status_code
        == 404
    )
    with pytest.raises(sdk_errors.ResourceNotFoundError):
        client.request("GET", ("Zentrunk", "Trunk", trunk_id))

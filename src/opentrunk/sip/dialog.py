"""Dialog state (RFC 3261 section 12), sans-I/O: no sockets, no clock.

A `Dialog` is the peer-to-peer relationship an INVITE (or other dialog-creating request)
sets up between two user agents. It owns:
- the dialog id: Call-ID, local tag, remote tag (`DialogId`);
- the local and remote URIs (From/To of requests we send), the local CSeq counter and the
  highest remote CSeq seen (requests at or below it are out of order);
- the remote target (the peer's Contact, refreshed by re-INVITE/UPDATE and their 2xx) and
  the route set (from Record-Route: reversed on the UAC side, in order on the UAS side);
- the state: EARLY (created by a 1xx with a To tag), CONFIRMED (2xx), TERMINATED (BYE,
  or a final error for an early dialog).

It builds in-dialog requests (`create_request`: BYE, re-INVITE, INFO, ...; `create_ack` for
a 2xx), applying loose or strict routing (12.2.1.1). Requests it builds carry no Via: the
transport layer adds the Via with a fresh branch when it sends them. Use `next_hop()` to
find the URI to resolve for sending. Responses that create dialogs on the UAS side are
built with `dialog_response`, which copies Record-Route and adds the Contact (12.1.1).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from opentrunk.sip.errors import SipParseError
from opentrunk.sip.headers import NameAddr
from opentrunk.sip.ids import random_hex
from opentrunk.sip.message import Request, Response, make_response
from opentrunk.sip.uri import URI, SipURI

__all__ = [
    "DIALOG_CREATING_METHODS",
    "TARGET_REFRESH_METHODS",
    "Dialog",
    "DialogError",
    "DialogId",
    "DialogState",
    "dialog_response",
    "new_tag",
]

DIALOG_CREATING_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
# Requests whose Contact replaces the remote target (RFC 3261 12.2, RFC 3311 UPDATE).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
DEFAULT_MAX_FORWARDS = 70


class DialogError(ValueError):
    """A message that cannot create or belong to a dialog (missing tag, no Contact...)."""


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class DialogId:
    """Call-ID plus the tags, seen from our side (local tag first)."""

    call_id: str
    local_tag: str
    remote_tag: str


def new_tag() -> str:
    """A From/To tag with enough randomness to be globally unique (19.3: >= 32 bits)."""
    return random_hex(8)


def _contact_uri(message: Request | Response) -> URI:
    contacts = message.contacts
    if not contacts or contacts[0].wildcard or contacts[0].uri is None:
        raise DialogError("dialog-creating message without a usable Contact")
    return contacts[0].uri


def _copy_route(route: NameAddr) -> NameAddr:
    return route.copy()


class Dialog:
    """One dialog, from our side of it. Create with `as_uac` or `as_uas`."""

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_uri: NameAddr,
        remote_uri: NameAddr,
        local_seq: int,
        remote_seq: int | None,
        remote_target: URI,
        route_set: list[NameAddr],
        state: DialogState,
        secure: bool = False,
        is_uac: bool,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        # From (local) and To (remote) of requests we send, without their tag parameter.
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.remote_target = remote_target
        self.route_set = route_set
        self.state = state
        self.secure = secure
        self.is_uac = is_uac
        # CSeq number of the INVITE that created or last re-negotiated the session: the
        # ACK for its 2xx carries the same number.
        self.invite_seq: int | None = None

    # -- creation ------------------------------------------------------------

    @classmethod
    def as_uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog a 1xx (with To tag) or 2xx to our `request` creates (12.1.2)."""
        if not 100 < response.status < 300:
            raise DialogError(f"a {response.status} response does not create a dialog")
        remote_tag = response.to.tag
        local_tag = request.from_.tag
        if not remote_tag or not local_tag:
            raise DialogError("dialog-creating response or request without a tag")
        local_uri = request.from_.copy()
        local_uri.tag = None
        remote_uri = request.to.copy()
        remote_uri.tag = None
        dialog = cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=local_uri,
            remote_uri=remote_uri,
            local_seq=request.cseq.number,
            remote_seq=None,
            remote_target=_contact_uri(response),
            route_set=[_copy_route(r) for r in reversed(response.record_routes)],
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            secure=_is_sips(request.uri),
            is_uac=True,
        )
        if request.method == "INVITE":
            dialog.invite_seq = request.cseq.number
        return dialog

    @classmethod
    def as_uas(
        cls,
        request: Request,
        local_tag: str,
        *,
        local_seq: int | None = None,
        early: bool = True,
    ) -> Dialog:
        """The dialog we create by answering `request` with a 1xx/2xx carrying `local_tag`
        (12.1.1). `local_seq` is the CSeq our first request in it will follow (random by
        default). The state is EARLY until `confirm()` (2xx sent), or CONFIRMED with
        `early=False`."""
        remote_tag = request.from_.tag
        if not remote_tag:
            # RFC 2543 peers send no From tag; the dialog id then has an empty remote tag.
            remote_tag = ""
        local_uri = request.to.copy()
        local_uri.tag = None
        remote_uri = request.from_.copy()
        remote_uri.tag = None
        dialog = cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=local_uri,
            remote_uri=remote_uri,
            local_seq=local_seq if local_seq is not None else int(random_hex(2), 16) + 1,
            remote_seq=request.cseq.number,
            remote_target=_contact_uri(request),
            route_set=[_copy_route(r) for r in request.record_routes],
            state=DialogState.EARLY if early else DialogState.CONFIRMED,
            secure=_is_sips(request.uri),
            is_uac=False,
        )
        if request.method == "INVITE":
            dialog.invite_seq = request.cseq.number
        return dialog

    # -- identity ------------------------------------------------------------

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @staticmethod
    def id_of_request(request: Request) -> DialogId:
        """The id of the dialog an incoming request belongs to (local tag = To tag)."""
        return DialogId(request.call_id, request.to.tag or "", request.from_.tag or "")

    @staticmethod
    def id_of_response(response: Response) -> DialogId:
        """The id of the dialog a response to our request belongs to (local = From tag)."""
        return DialogId(response.call_id, response.from_.tag or "", response.to.tag or "")

    # -- state changes ---------------------------------------------------------

    def confirm(self) -> None:
        """A 2xx was sent or received: the early dialog becomes confirmed."""
        if self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED

    def terminate(self) -> None:
        self.state = DialogState.TERMINATED

    def on_response(self, request: Request, response: Response) -> None:
        """Update from a response to a request we sent in (or that created) this dialog.

        A 2xx confirms an early dialog (and, for the dialog-creating request, recomputes
        the route set from its Record-Route, 12.1.2). A 2xx to a target refresh updates the
        remote target. A 481/408 to an in-dialog request, or a final error to the
        dialog-creating INVITE of an early dialog, terminates the dialog (12.2.1.2).
        """
        status = response.status
        method = request.method
        if 200 <= status < 300:
            if self.state is DialogState.EARLY and self.is_uac:
                self.route_set = [_copy_route(r) for r in reversed(response.record_routes)]
            self.confirm()
            if method in TARGET_REFRESH_METHODS and response.contacts:
                self.remote_target = _contact_uri(response)
        elif 100 < status < 200:
            if method in TARGET_REFRESH_METHODS and response.contacts:
                self.remote_target = _contact_uri(response)
        elif status in (481, 408) or (
            status >= 300 and self.state is DialogState.EARLY and method == "INVITE"
        ):
            self.terminate()

    def on_request(self, request: Request) -> bool:
        """Check and apply an incoming in-dialog request (12.2.2).

        Returns False when its CSeq is lower than or equal to the last one seen (the caller
        answers 500); ACK and CANCEL reuse a CSeq and are not checked. A target refresh
        request updates the remote target; BYE terminates the dialog.
        """
        method = request.method
        number = request.cseq.number
        if method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and number <= self.remote_seq:
                return False
            self.remote_seq = number
        if method in TARGET_REFRESH_METHODS and request.contacts:
            self.remote_target = _contact_uri(request)
        if method == "INVITE":
            self.invite_seq = number
        elif method == "BYE":
            self.terminate()
        return True

    # -- building requests ----------------------------------------------------

    def next_hop(self) -> URI:
        """The URI to resolve to send a request in this dialog (RFC 3263 input):
        the first route when there is a route set, else the remote target."""
        if self.route_set and self.route_set[0].uri is not None:
            return self.route_set[0].uri
        return self.remote_target

    def create_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        cseq: int | None = None,
    ) -> Request:
        """A request inside the dialog (12.2.1.1), without Via.

        The CSeq number is the next local number (or `cseq` for ACK/CANCEL, which reuse the
        number of the request they refer to). With a loose-routing first route (`;lr`) the
        Request-URI is the remote target and the route set becomes Route headers; with a
        strict router the Request-URI is the first route and the remote target is appended
        as the last Route.
        """
        method = method.upper()
        if self.state is DialogState.TERMINATED and method != "ACK":
            raise DialogError("dialog is terminated")
        if cseq is None:
            if method in ("ACK", "CANCEL"):
                raise DialogError(f"{method} needs the CSeq number it refers to")
            self.local_seq += 1
            cseq = self.local_seq
        elif method not in ("ACK", "CANCEL"):
            self.local_seq = max(self.local_seq, cseq)
        if method == "INVITE":
            self.invite_seq = cseq
        request_uri, routes = self._routing()
        local = self.local_uri.copy()
        local.tag = self.local_tag
        remote = self.remote_uri.copy()
        remote.tag = self.remote_tag or None
        fields: list[tuple[str, str]] = [
            ("Max-Forwards", str(DEFAULT_MAX_FORWARDS)),
            ("From", str(local)),
            ("To", str(remote)),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        fields.extend(("Route", str(route)) for route in routes)
        fields.extend(headers)
        return Request(method, request_uri, fields, body)

    def create_ack(self, *, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> Request:
        """The ACK for a 2xx to the INVITE with CSeq `invite_seq` (13.2.2.4)."""
        if self.invite_seq is None:
            raise DialogError("no INVITE to acknowledge in this dialog")
        return self.create_request("ACK", body=body, headers=headers, cseq=self.invite_seq)

    def _routing(self) -> tuple[URI, list[NameAddr]]:
        routes = [route.copy() for route in self.route_set]
        if not routes:
            return _copy_uri(self.remote_target), []
        first = routes[0].uri
        if isinstance(first, SipURI) and not first.lr:
            # Strict routing (RFC 2543 peers): the first route becomes the Request-URI and
            # the remote target travels as the last Route; the URI loses its params that
            # are not allowed in a Request-URI (method, header), per 12.2.1.1.
            uri = first.copy()
            uri.headers = {}
            for key in [k for k in uri.params if k.lower() == "method"]:
                del uri.params[key]
            return uri, [*routes[1:], NameAddr(_copy_uri(self.remote_target))]
        return _copy_uri(self.remote_target), routes

    def __repr__(self) -> str:
        return (
            f"<Dialog {self.state.value} call-id={self.call_id} "
            f"local={self.local_tag} remote={self.remote_tag}>"
        )


def _copy_uri(uri: URI) -> URI:
    return uri.copy() if isinstance(uri, SipURI) else uri


def _is_sips(uri: URI) -> bool:
    return isinstance(uri, SipURI) and uri.secure


def dialog_response(
    request: Request,
    status: int,
    *,
    to_tag: str,
    contact: str | NameAddr | URI | None,
    reason: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response to a dialog-creating (or in-dialog) request, per 12.1.1: To tag added,
    Record-Route copied in order, our Contact (required in 1xx/2xx that create a dialog)."""
    extra: list[tuple[str, str]] = []
    if 100 < status < 300:
        try:
            record_routes = request.headers.get_all("Record-Route")
        except SipParseError:
            record_routes = []
        extra.extend(("Record-Route", value) for value in record_routes)
        if contact is not None:
            if isinstance(contact, NameAddr):
                text = str(contact)
            elif isinstance(contact, str):
                text = contact if contact.lstrip().startswith(("<", '"')) else f"<{contact}>"
            else:
                text = f"<{contact}>"
            extra.append(("Contact", text))
    extra.extend(headers)
    return make_response(request, status, reason, to_tag=to_tag, headers=extra, body=body)

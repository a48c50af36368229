"""Request and response models: they validate bodies (strict types: a string is not a
bool) and give the OpenAPI document the real shapes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RequestModel(BaseModel):
    # Unknown fields are ignored (API.md); types are strict.
    model_config = ConfigDict(strict=True, extra="ignore")


Name = str | None
MAX_NAME = 100


class ErrorBody(BaseModel):
    api_id: str
    error: str


class Meta(BaseModel):
    limit: int
    offset: int
    total_count: int
    previous: str | None
    next: str | None


class Deleted(BaseModel):
    pass


# ---- Trunk ---------------------------------------------------------------------------


class TrunkCreate(RequestModel):
    trunk_direction: Literal["inbound", "outbound"]
    name: str | None = Field(default=None, max_length=MAX_NAME)
    trunk_status: Literal["enabled", "disabled"] = "enabled"
    secure: bool = False
    ipacl_uuid: str | None = Field(default=None, max_length=64)
    credential_uuid: str | None = Field(default=None, max_length=64)
    primary_uri_uuid: str | None = Field(default=None, max_length=64)
    fallback_uri_uuid: str | None = Field(default=None, max_length=64)


class TrunkUpdate(RequestModel):
    trunk_direction: Literal["inbound", "outbound"] | None = None
    name: str | None = Field(default=None, max_length=MAX_NAME)
    trunk_status: Literal["enabled", "disabled"] | None = None
    secure: bool | None = None
    ipacl_uuid: str | None = Field(default=None, max_length=64)
    credential_uuid: str | None = Field(default=None, max_length=64)
    primary_uri_uuid: str | None = Field(default=None, max_length=64)
    fallback_uri_uuid: str | None = Field(default=None, max_length=64)


class Trunk(BaseModel):
    trunk_id: str
    trunk_domain: str
    name: str
    trunk_status: Literal["enabled", "disabled"]
    trunk_direction: Literal["inbound", "outbound"]
    secure: bool
    ipacl_uuid: str | None
    credential_uuid: str | None
    primary_uri_uuid: str | None
    fallback_uri_uuid: str | None


class TrunkOne(Trunk):
    api_id: str


class TrunkList(BaseModel):
    api_id: str
    meta: Meta
    objects: list[Trunk]


class TrunkWritten(BaseModel):
    api_id: str
    message: str
    trunk_id: str


# ---- Credential ----------------------------------------------------------------------


class CredentialCreate(RequestModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=MAX_NAME)


class CredentialUpdate(RequestModel):
    username: str | None = Field(default=None, max_length=64)
    password: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=MAX_NAME)


class Credential(BaseModel):
    credential_uuid: str
    name: str
    username: str


class CredentialOne(Credential):
    api_id: str


class CredentialList(BaseModel):
    api_id: str
    meta: Meta
    objects: list[Credential]


class CredentialWritten(BaseModel):
    api_id: str
    message: str
    credential_uuid: str


# ---- IP access control list ----------------------------------------------------------


class IPACLCreate(RequestModel):
    ip_addresses: list[str] = Field(max_length=100)
    name: str | None = Field(default=None, max_length=MAX_NAME)


class IPACLUpdate(RequestModel):
    ip_addresses: list[str] | None = Field(default=None, max_length=100)
    name: str | None = Field(default=None, max_length=MAX_NAME)


class IPACL(BaseModel):
    ipacl_uuid: str
    name: str
    ip_addresses: list[str]


class IPACLOne(IPACL):
    api_id: str


class IPACLList(BaseModel):
    api_id: str
    meta: Meta
    objects: list[IPACL]


class IPACLWritten(BaseModel):
    api_id: str
    message: str
    ipacl_uuid: str


# ---- Origination URI -----------------------------------------------------------------


class URICreate(RequestModel):
    uri: str = Field(max_length=255)
    name: str | None = Field(default=None, max_length=MAX_NAME)
    authentication_needed: bool = False
    username: str | None = Field(default=None, max_length=128)
    password: str | None = Field(default=None, max_length=128)


class URIUpdate(RequestModel):
    uri: str | None = Field(default=None, max_length=255)
    name: str | None = Field(default=None, max_length=MAX_NAME)
    authentication_needed: bool | None = None
    username: str | None = Field(default=None, max_length=128)
    password: str | None = Field(default=None, max_length=128)


class URI(BaseModel):
    uri_uuid: str
    name: str
    uri: str
    authentication_needed: bool
    username: str | None


class URIOne(URI):
    api_id: str


class URIList(BaseModel):
    api_id: str
    meta: Meta
    objects: list[URI]


class URIWritten(BaseModel):
    api_id: str
    message: str
    uri_uuid: str


# ---- Number --------------------------------------------------------------------------


class NumberUpdate(RequestModel):
    app_id: str | None = Field(default=None, max_length=64)
    alias: str | None = Field(default=None, max_length=MAX_NAME)


class Number(BaseModel):
    number: str
    alias: str | None
    application: str | None
    country: str | None
    number_type: str
    voice_enabled: bool
    added_on: str
    resource_uri: str


class NumberOne(Number):
    api_id: str


class NumberList(BaseModel):
    api_id: str
    meta: Meta
    objects: list[Number]


class NumberWritten(BaseModel):
    api_id: str
    message: str
    number: str


# ---- Call ----------------------------------------------------------------------------


class Call(BaseModel):
    call_uuid: str
    from_number: str
    to_number: str
    call_direction: str
    call_duration: int
    bill_duration: int
    billed_duration: int
    initiation_time: str
    answer_time: str | None
    end_time: str | None
    hangup_cause_name: str | None
    hangup_cause_code: str | None
    hangup_source: str | None
    total_rate: str
    total_amount: str
    trunk_domain: str
    from_country: str | None
    to_country: str | None
    transport_protocol: str
    srtp: bool
    secure_trunking: bool
    secure_trunking_rate: str
    stir_verification: str
    attestation_indicator: str | None


class CallOne(Call):
    api_id: str


class CallList(BaseModel):
    api_id: str
    meta: Meta
    objects: list[Call]


class Party(BaseModel):
    number: str
    region: str | None
    carrier: str | None


class CallInsights(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    api_id: str
    call_uuid: str
    from_: Party = Field(alias="from")
    to: Party
    hangup_cause: str | None
    hangup_source: str | None
    rtt: float | None
    jitter: float | None
    packet_loss: float | None
    post_dial_delay: float | None
    plivo_quality_score: float | None

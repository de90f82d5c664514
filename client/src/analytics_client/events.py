"""The 34 event types of the platform's catalog, as typed helpers for shape A.

Each helper is a frozen dataclass whose fields follow the catalog's declaration order, the
order the platform's client serialises them in; nullable fields default to `None`, and every
field is given by keyword. `wire_type` is the event's `type` tag on the wire. The field types
say which of the catalog's types each field has (`Int32`, `Uuid`...), so the values can be
checked before an event is queued (see `validation.py`), and a unit test holds the helpers to
the service's `catalog.json`.

A type the catalog does not know yet can still be sent, as a flat event (`track_flat`).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields
from typing import Annotated, Any, ClassVar
from uuid import UUID

Uuid = Annotated[UUID | str, "uuid"]
Text = Annotated[str, "string"]
Boolean = Annotated[bool, "boolean"]
Int32 = Annotated[int, "int32"]
Int64 = Annotated[int, "int64"]
UInt16 = Annotated[int, "uint16"]
Float64 = Annotated[float, "float64"]
Json = Annotated[Any, "any-json"]

# The service stores these two under another name than their tag (serde splits "OAuth" into
# "o_auth"); every other type is stored under its tag.
_STORED_NAMES = {
    "o_auth_flow_started": "oauth_flow_started",
    "o_auth_flow_completed": "oauth_flow_completed",
}


@dataclass(frozen=True)
class FieldSpec:
    """One field of an event type, as the catalog describes it."""

    name: str
    type: str  # the catalog's name: uuid, string, boolean, int32, int64, uint16, float64, any-json
    nullable: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """The base of the typed helpers."""

    wire_type: ClassVar[str]

    @classmethod
    def stored_name(cls) -> str:
        """The name the service stores in `analytics_events.event_type`."""
        return _STORED_NAMES.get(cls.wire_type, cls.wire_type)

    @classmethod
    def field_specs(cls) -> tuple[FieldSpec, ...]:
        return _field_specs(cls)


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthLoginAttempt(Event):
    wire_type: ClassVar[str] = "auth_login_attempt"
    user_id: Uuid | None = None
    email: Text
    success: Boolean
    error: Text | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthCodeVerified(Event):
    wire_type: ClassVar[str] = "auth_code_verified"
    user_id: Uuid
    success: Boolean
    error: Text | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthTokenRefresh(Event):
    wire_type: ClassVar[str] = "auth_token_refresh"
    user_id: Uuid
    success: Boolean
    error: Text | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthSessionValidated(Event):
    wire_type: ClassVar[str] = "auth_session_validated"
    user_id: Uuid
    valid: Boolean


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskCreated(Event):
    wire_type: ClassVar[str] = "task_created"
    task_id: Uuid
    user_id: Uuid
    project_id: Uuid | None = None
    cocoon_id: Uuid | None = None
    command: Text


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskStarted(Event):
    wire_type: ClassVar[str] = "task_started"
    task_id: Uuid
    user_id: Uuid
    cocoon_id: Uuid | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskCompleted(Event):
    wire_type: ClassVar[str] = "task_completed"
    task_id: Uuid
    user_id: Uuid
    duration_ms: Int64
    exit_code: Int32


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskFailed(Event):
    wire_type: ClassVar[str] = "task_failed"
    task_id: Uuid
    user_id: Uuid
    duration_ms: Int64 | None = None
    exit_code: Int32 | None = None
    error: Text


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskCancelled(Event):
    wire_type: ClassVar[str] = "task_cancelled"
    task_id: Uuid
    user_id: Uuid
    duration_ms: Int64 | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class IntegrationConnected(Event):
    wire_type: ClassVar[str] = "integration_connected"
    integration_id: Uuid
    user_id: Uuid
    provider: Text
    project_id: Uuid | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class IntegrationDisconnected(Event):
    wire_type: ClassVar[str] = "integration_disconnected"
    integration_id: Uuid
    user_id: Uuid
    provider: Text
    reason: Text | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class IntegrationUsed(Event):
    wire_type: ClassVar[str] = "integration_used"
    integration_id: Uuid
    user_id: Uuid
    provider: Text
    action: Text


@dataclass(frozen=True, kw_only=True, slots=True)
class IntegrationError(Event):
    wire_type: ClassVar[str] = "integration_error"
    integration_id: Uuid
    user_id: Uuid
    provider: Text
    error: Text


@dataclass(frozen=True, kw_only=True, slots=True)
class OAuthFlowStarted(Event):
    wire_type: ClassVar[str] = "o_auth_flow_started"
    user_id: Uuid
    provider: Text
    state: Text


@dataclass(frozen=True, kw_only=True, slots=True)
class OAuthFlowCompleted(Event):
    wire_type: ClassVar[str] = "o_auth_flow_completed"
    user_id: Uuid
    provider: Text
    success: Boolean
    error: Text | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookReceived(Event):
    wire_type: ClassVar[str] = "webhook_received"
    integration_id: Uuid | None = None
    provider: Text
    event_type: Text
    delivery_id: Text


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookProcessed(Event):
    wire_type: ClassVar[str] = "webhook_processed"
    integration_id: Uuid | None = None
    provider: Text
    event_type: Text
    delivery_id: Text
    success: Boolean
    duration_ms: Int64
    error: Text | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CocoonRegistered(Event):
    wire_type: ClassVar[str] = "cocoon_registered"
    cocoon_id: Uuid
    user_id: Uuid
    device_name: Text | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CocoonConnected(Event):
    wire_type: ClassVar[str] = "cocoon_connected"
    cocoon_id: Uuid
    user_id: Uuid | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CocoonDisconnected(Event):
    wire_type: ClassVar[str] = "cocoon_disconnected"
    cocoon_id: Uuid
    user_id: Uuid | None = None
    duration_seconds: Int64


@dataclass(frozen=True, kw_only=True, slots=True)
class CocoonClaimed(Event):
    wire_type: ClassVar[str] = "cocoon_claimed"
    cocoon_id: Uuid
    user_id: Uuid
    via_setup_token: Boolean


@dataclass(frozen=True, kw_only=True, slots=True)
class CocoonSetupTokenCreated(Event):
    wire_type: ClassVar[str] = "cocoon_setup_token_created"
    token_id: Uuid
    user_id: Uuid
    cocoon_name: Text | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CocoonSetupTokenUsed(Event):
    wire_type: ClassVar[str] = "cocoon_setup_token_used"
    token_id: Uuid
    cocoon_id: Uuid
    user_id: Uuid


@dataclass(frozen=True, kw_only=True, slots=True)
class ProjectCreated(Event):
    wire_type: ClassVar[str] = "project_created"
    project_id: Uuid
    user_id: Uuid
    name: Text


@dataclass(frozen=True, kw_only=True, slots=True)
class ProjectUpdated(Event):
    wire_type: ClassVar[str] = "project_updated"
    project_id: Uuid
    user_id: Uuid


@dataclass(frozen=True, kw_only=True, slots=True)
class ProjectDeleted(Event):
    wire_type: ClassVar[str] = "project_deleted"
    project_id: Uuid
    user_id: Uuid


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiRequest(Event):
    wire_type: ClassVar[str] = "api_request"
    service: Text
    endpoint: Text
    method: Text
    status_code: UInt16
    duration_ms: Int64
    user_id: Uuid | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ProxyRequest(Event):
    wire_type: ClassVar[str] = "proxy_request"
    proxy_token_id: Uuid
    user_id: Uuid
    request_id: Text
    upstream_request_id: Text | None = None
    requested_model: Text | None = None
    actual_model: Text | None = None
    provider_type: Text
    key_mode: Text
    endpoint: Text
    input_tokens: Int32 | None = None
    output_tokens: Int32 | None = None
    total_tokens: Int32 | None = None
    reported_cost_usd: Float64 | None = None
    latency_ms: Int32
    ttft_ms: Int32 | None = None
    is_streaming: Boolean
    status: Text
    status_code: Int32 | None = None
    error_type: Text | None = None
    error_message: Text | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class DatabaseQuery(Event):
    wire_type: ClassVar[str] = "database_query"
    service: Text
    query_type: Text
    duration_ms: Int64
    rows_affected: Int64 | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ApplicationError(Event):
    wire_type: ClassVar[str] = "application_error"
    service: Text
    error_type: Text
    error_message: Text
    user_id: Uuid | None = None
    context: Json | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class BalanceCreated(Event):
    wire_type: ClassVar[str] = "balance_created"
    user_id: Uuid
    balance_id: Uuid


@dataclass(frozen=True, kw_only=True, slots=True)
class BalanceDeposit(Event):
    wire_type: ClassVar[str] = "balance_deposit"
    user_id: Uuid
    transaction_id: Uuid
    amount: Int64
    reference_type: Text | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class BalanceDebit(Event):
    wire_type: ClassVar[str] = "balance_debit"
    user_id: Uuid
    transaction_id: Uuid
    amount: Int64
    reference_type: Text | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class BalanceInsufficient(Event):
    wire_type: ClassVar[str] = "balance_insufficient"
    user_id: Uuid
    requested_amount: Int64
    current_balance: Int64
    reference_type: Text | None = None


# In the module's order, which is the catalog's. (Not Event.__subclasses__(): a slotted
# dataclass is a new class, and the one it replaced may linger there.)
EVENT_TYPES: tuple[type[Event], ...] = tuple(
    value
    for value in dict(globals()).values()
    if isinstance(value, type) and issubclass(value, Event) and value is not Event
)
# By wire tag, stored name and class name, as the service finds a flat event's type.
EVENT_TYPES_BY_NAME: dict[str, type[Event]] = {
    name: event_type
    for event_type in EVENT_TYPES
    for name in (event_type.wire_type, event_type.stored_name(), event_type.__name__)
}


_FIELD_SPECS: dict[type[Event], tuple[FieldSpec, ...]] = {}


def _field_specs(event_type: type[Event]) -> tuple[FieldSpec, ...]:
    specs = _FIELD_SPECS.get(event_type)
    if specs is None:
        hints = typing.get_type_hints(event_type, include_extras=True)
        specs = tuple(_spec(field.name, hints[field.name]) for field in fields(event_type))
        _FIELD_SPECS[event_type] = specs
    return specs


def _spec(name: str, hint: Any) -> FieldSpec:
    nullable = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [member for member in typing.get_args(hint) if member is not type(None)]
        nullable = len(members) < len(typing.get_args(hint))
        (hint,) = members
    return FieldSpec(name, hint.__metadata__[0], nullable)

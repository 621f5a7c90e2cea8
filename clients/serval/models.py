"""Serval: the API's shapes, with its exact field names, and the constants the client and back end share."""

from __future__ import annotations

import logging
import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from ..base import Option


log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

DEFAULT_BASE_URL = "https://public.api.serval.com"
SEARCH_PAGE = 200  # tickets per page of a duplicate look-up (stops at the first match)
LIST_PAGE = 1000  # GET /v2/tickets: the older spec's maximum (the newer docs allow 5,000)
REQUESTER = "CHANNEL_SYNC_TARGET_USER_TICKET_REQUESTOR"
# A custom field's form field id is this prefix and the field's key ("custom:custom-gmin"), apart
# from the form's own fields (team_id, type, priority_id, due_date).
CUSTOM_FIELD_PREFIX = "custom:"
MAX_CUSTOM_FIELDS = 40  # a Slack modal holds 100 blocks; a team with more shows the first 40
OPEN_STATUS_GROUPS = ("TODO", "IN_PROGRESS")  # svhelp.models.TicketStatusGroup: "open"
SIMILAR_PAGES = 5  # pages of a requester's open tickets read when looking for similar ones
BOOLEAN_OPTIONS = (Option("true", "Yes"), Option("false", "No"))
# Words that say nothing about what a ticket is about ("meaningful": three or more letters, not these).
STOP_WORDS = frozenset("""
    the and for with not but are was were has have had this that these those from into onto over
    under can cant could does doesnt did didnt dont will wont would should shall may might must
    you your yours our ours their theirs they them she his her hers its who what when where why
    how which any all some too very just also than then there here out off again still yet now
    get got getting please help need needs needed issue issues problem problems ticket tickets
    request requests thanks thank hello someone something anything working work works broken
""".split())
_WORD = re.compile(r"[^\W\d_]{3,}")
TicketType = Literal[
    "TICKET_TYPE_UNSPECIFIED",
    "TICKET_TYPE_REQUEST",
    "TICKET_TYPE_TASK",
    "TICKET_TYPE_INCIDENT",
    "TICKET_TYPE_CONVERSATION",
    "TICKET_TYPE_JOURNEY",
    "TICKET_TYPE_JOURNEY_CONVERSATION",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")  # responses may carry newer fields


class DueDate(BaseModel):
    year: int
    month: int
    day: int


class SlackDmSyncTarget(BaseModel):
    targetUserType: str = REQUESTER


class ChannelSyncTarget(BaseModel):
    slackDm: SlackDmSyncTarget | None = None


class CreateTicketRequest(BaseModel):
    teamId: str
    name: str
    description: str | None = None
    createdByUserId: str | None = None
    requesterUserId: str | None = None
    type: TicketType | None = None
    dueDate: DueDate | None = None
    channelSyncTargets: list[ChannelSyncTarget] | None = None


class Ticket(_Model):
    id: str
    friendlyIdentifier: str | None = None
    teamId: str | None = None
    name: str | None = None
    description: str | None = None
    createdAt: str | None = None
    statusId: str | None = None
    priorityId: str | None = None
    requesterUserId: str | None = None
    createdByUserId: str | None = None
    assignedToUserId: str | None = None
    type: str | None = None
    dueDate: DueDate | None = None
    assignedToUserId: str | None = None
    completedAt: str | None = None
    slaBreachesAt: str | None = None


class SlackChannelTarget(BaseModel):
    integrationId: str


class SlackDmChannelTarget(BaseModel):
    integrationId: str
    targetUserType: str = REQUESTER


class ChannelTarget(BaseModel):
    slackChannel: SlackChannelTarget | None = None
    slackDm: SlackDmChannelTarget | None = None


class ConnectTicketRequest(BaseModel):
    channelTarget: ChannelTarget
    externalTicketId: str
    externalTicketData: dict[str, Any] | None = None
    accountedForMessageIds: list[str] | None = None


class ExternalTicket(_Model):
    externalTicketId: str | None = None
    ticketId: str | None = None
    sourceType: str | None = None
    sourceId: str | None = None


class User(_Model):
    id: str
    email: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    name: str | None = None
    deactivatedAt: str | None = None


class Team(_Model):
    id: str
    name: str | None = None
    prefix: str | None = None


class Priority(_Model):
    id: str
    teamId: str | None = None
    priority: str | None = None  # NONE, LOW, MEDIUM, HIGH, URGENT, ...
    description: str | None = None


class Status(_Model):
    id: str
    teamId: str | None = None
    name: str | None = None
    statusGroup: str | None = None
    isDefault: bool | None = None


class CreateUserRequest(BaseModel):
    email: str
    firstName: str | None = None
    lastName: str | None = None


class SearchTicketsRequest(BaseModel):
    """POST /v2/tickets/search (docs/search-and-list-tickets.yaml); every filter optional."""

    teamIds: list[str] | None = None
    requesterUserIds: list[str] | None = None
    assignedToUserIds: list[str] | None = None
    statusIds: list[str] | None = None
    escalationLevels: list[str] | None = None
    createdAfter: str | None = None  # RFC 3339
    createdBefore: str | None = None
    pageSize: int | None = None
    pageToken: str | None = None


class UpdateTicketRequest(BaseModel):
    """PUT /v2/tickets/{id} (docs/search-and-list-tickets.yaml): every field optional."""

    name: str | None = None
    priorityId: str | None = None
    statusId: str | None = None
    requesterUserId: str | None = None
    dueDate: DueDate | None = None


class EnumOption(_Model):
    id: str | None = None
    value: str | None = None
    displayName: str | None = None
    displayOrder: int | None = None


class CustomField(_Model):
    """A custom field's definition (docs/custom-fields.yaml, `CustomFieldWithValue.field`)."""

    id: str | None = None
    key: str | None = None
    name: str | None = None
    dataType: str | None = None  # DATA_TYPE_*; the names are not published
    enumOptions: list[EnumOption] | None = None
    isKeyField: bool | None = None
    isNameField: bool | None = None
    description: str | None = None


class CustomFieldWithValue(_Model):
    field: CustomField
    fieldValue: dict[str, Any] | None = None


class CustomFieldOptions(_Model):
    """GET /v2/teams/{team_id}/custom-field-options: the team's field definitions (no `data` wrapper)."""

    customFields: list[CustomFieldWithValue] | None = None
    deprecatedFields: list[CustomFieldWithValue] | None = None


class FieldValue(BaseModel):
    fieldKey: str
    value: Any


class SetCustomFieldValuesRequest(BaseModel):
    fieldValues: list[FieldValue]


class CreateMessageRequest(BaseModel):
    """POST /v2/tickets/{ticket_id}/messages (docs/ticket-messages.yaml)."""

    message: str
    authorUserId: str | None = None
    triggerHelpAgent: bool = False  # Serval's default is true: its AI agent would answer copied messages


class CreatedMessage(_Model):
    messageId: str

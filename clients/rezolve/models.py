"""Rezolve.ai: the API's shapes, with its exact field names, and the constants the client and back end share."""

from __future__ import annotations

import logging
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator

from ..base import FieldKind


log = logging.getLogger(__name__)

SYSTEM = "Rezolve.ai"
DEFAULT_BASE_URL = "https://api.rezolve.ai"
TICKET_TYPES = "/api/v2/ticketing/ticket-type"
OFFERS = "/api/v2/ticketing/tenant/sc/offers"
USERINFO = "/api/v2/ticketing/user/userinfo"
TICKET_LIST = "/api/v2/ticketing/ticket/list"
SEARCH_PAGE = 100  # the documented maximum of `top`
SEARCH_PAGES = 5  # a full-text search may match loosely: look at no more than this many pages
TYPE_PAGES = 50  # ticket-type pages read at most (OData $skip)
T = TypeVar("T")
CatalogType = Literal["template", "agent", "user"]
# Rezolve field type -> form field kind. Other types are left out of the form unless required.
FIELD_KINDS: dict[str, FieldKind] = {
    "text": "text",
    "string": "text",
    "textarea": "multiline",
    "multiline": "multiline",
    "richtext": "multiline",
    "select": "select",
    "dropdown": "select",
    "date": "date",
    "datetime": "date",
    "number": "number",
}
# Block ids the bot uses for its own title and description inputs (bot/slack/views.py).
TITLE_KEY, DESCRIPTION_KEY = "title", "description"


def keycloak_token_url(base_url: str, realm: str) -> str:
    """The standard Keycloak token endpoint of a realm, on the given host."""
    return f"{base_url.rstrip('/')}/auth/realms/{realm}/protocol/openid-connect/token"


# --- the API's shapes (exact field names) ------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")  # answers may carry more than documented

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        """A null where the bot has a default (`"options": null`, `"required": null`) means unset."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items()
                    if v is not None or (k in cls.model_fields and cls.model_fields[k].is_required())}
        return data


class TokenResponse(_Model):
    access_token: str
    expires_in: float = 300
    token_type: str | None = None
    scope: str | None = None


class FieldOption(_Model):
    label: Any = None
    value: Any = None


class TicketTypeField(_Model):
    id: str
    label: str | None = None
    type: str = "text"
    required: bool = False
    defaultValue: Any = None
    options: list[FieldOption] = []


class TicketType(_Model):
    id: str | int
    name: str | None = None
    fields: list[TicketTypeField] = []
    properties: dict[str, Any] = {}


class Offer(_Model):
    id: str | int
    name: str | None = None
    item_type: str | int | None = None
    team: str | None = None


class CreateTicketRequest(BaseModel):
    """All five keys are required by the API: send `{}` and `null` when unused, never leave them out."""

    source: str = "api"
    summary: str
    ticketBody: dict[str, Any]
    attachments: dict[str, Any] = {}
    ticketRelation: dict[str, Any] | None = None


class Ticket(_Model):
    id: str
    object_id: str | None = None
    etag: str | None = None
    summary: str | None = None
    data: dict[str, Any] = {}
    status_type: str | None = None
    status_category: str | None = None
    created_at: str | None = None
    lookup_props: dict[str, Any] = {}


class CreateTicketResponse(_Model):
    success: bool | None = True
    message: Any = None
    status: Any = None
    objectId: str | None = None
    ticket: Ticket | None = None

    @model_validator(mode="after")
    def _has_object_id(self) -> CreateTicketResponse:
        if not self.objectId and self.ticket is not None and self.ticket.object_id:
            self.objectId = self.ticket.object_id
        if not self.objectId:
            raise ValueError("no objectId")
        return self


class UserInfo(_Model):
    """`{teams: ["operation", "global"], defaultTeam, roles: {realm: [...]}, permissions: {ticketing:
    {canCreateTicket}}, tenant: {id, name, realm}}` (docs); teams as objects `{id, name}` are accepted too."""

    teams: list[Any] = []
    defaultTeam: Any = None
    roles: Any = None
    permissions: dict[str, Any] = {}
    tenant: dict[str, Any] = {}

    @property
    def can_create_ticket(self) -> bool:
        ticketing = self.permissions.get("ticketing")
        return isinstance(ticketing, dict) and ticketing.get("canCreateTicket") is True

    @property
    def team_ids(self) -> set[str]:
        ids: set[str] = set()
        for team in self.teams:
            if isinstance(team, dict):
                ids.update(str(team[k]) for k in ("id", "slug", "name") if team.get(k) is not None)
            elif team is not None:
                ids.add(str(team))
        return ids

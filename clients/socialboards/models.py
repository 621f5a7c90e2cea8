"""Socialboards: the API's shapes, with its exact field names, and the constants the client and back end share."""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field


log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

SYSTEM = "Socialboards"
DEFAULT_BASE_URL = "https://api.socialboards.com"
INBOX_URL = "https://inbox.socialboards.com"
SUCCESS = -1
Sentiment = Literal["question", "praise", "suggestion", "complaint"]
SENTIMENTS: tuple[tuple[str, str], ...] = (
    ("question", "Question"),
    ("praise", "Praise"),
    ("suggestion", "Suggestion"),
    ("complaint", "Complaint"),
)
CATEGORY, SENTIMENT, TAGS = "category", "sentiment", "tags"
CUSTOM_PREFIX = "custom:"
LIST_PAGE = 50  # the documented maximum of `take`
LIST_MAX_PAGES = 20
MAX_OPTIONS = 100  # Slack's static select limit


def refresh_token_fingerprint(token: str) -> str:
    """Names a configured refresh token without storing it."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def pick_refresh_token(configured: str, stored: tuple[str, str] | None) -> str:
    """The refresh token to start with.

    `stored` is (the fingerprint of the configured token it descends from, the newest token seen). The
    stored one wins as long as the configuration still holds the token it descends from; a changed
    configuration (an admin pasted a new token) wins over anything stored.
    """
    if stored and stored[1] and stored[0] == refresh_token_fingerprint(configured):
        return stored[1]
    return configured


# --- the API's shapes (exact field names) ------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")  # answers may carry more than documented


class TokenResponse(_Model):
    access_token: str
    token_type: str | None = None
    expires_in: float = 3600
    refresh_token: str | None = None


class Category(_Model):
    id: int
    name: str
    parentId: int | None = None
    isHidden: bool = False
    canBeChosen: bool = True


class PossibleValue(_Model):
    value: str
    order: int | None = None


class CustomField(_Model):
    id: int
    name: str
    type: str | None = None
    isRequired: bool = False
    isHidden: bool = False
    defaultValue: Any = None
    possibleValues: list[PossibleValue] = []


class Creator(BaseModel):
    name: str | None = None
    email: str
    image: str | None = None
    phoneNumber: str | None = None


class CustomFieldValue(BaseModel):
    id: int
    value: str


class Attachment(BaseModel):
    url: str
    name: str


class CreateTicketRequest(BaseModel):
    title: str
    message: str
    isHtml: bool = False  # the bot sends plain text; Socialboards' default (true) would eat newlines
    creator: Creator
    assigneeId: str | None = None
    categoryId: int | None = None
    cc: list[str] | None = None
    customFields: list[CustomFieldValue] | None = None
    sentiment: Sentiment | None = None
    sourceName: str | None = None
    tags: list[str] | None = None
    attachments: list[Attachment] | None = None


class ListTicketsRequest(BaseModel):
    ticketIds: list[int] | None = None
    categoryId: int | None = None
    status: str | None = None
    source: str | None = None
    orderBy: str | None = None
    skip: int | None = None
    take: int | None = None
    # Minimum / maximum creation time: a DateTime with offset, e.g. "2020-02-27T12:28:02.6019432+01:00"
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None

    model_config = ConfigDict(populate_by_name=True)

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, by_alias=True)


class TicketAuthor(_Model):
    name: str | None = None
    email: str | None = None


class Ticket(_Model):
    id: int
    title: str | None = None
    message: str | None = None
    htmlMessage: str | None = None
    creationTime: str | None = None
    status: str | None = None
    sourceName: str | None = None
    author: TicketAuthor | None = None
    assigneeId: str | None = None

"""What every ticket step shares: the journal, Slack, the ticket systems, the lease check, and the
few Slack calls several steps make (the thread's messages, telling a person, updating a form)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from clients.base import CreatedTicket, TicketBackend

from ..journal.storage import Storage, Submission, journaled
from ..slack import cards
from ..slack.people import People
from .failures import SLACK_NO_ACCESS, slack_error

log = logging.getLogger(__name__)

CREATE, NOTIFY, COMPLETE, REPLY, HISTORY, CONNECT, FOLLOWUP = (
    "create", "notify", "complete", "reply", "history", "connect", "followup"
)
WORKFLOW = "workflow"  # the source of a ticket made by the *Create a ticket* workflow step
# Where a ticket starts from a message in a thread: the thread is reserved, replied in and connected.
MESSAGE_SOURCES = {"reaction", "mention", "intake"}  # tickets made from a conversation, without a form
THREAD_SOURCES = {"shortcut"} | MESSAGE_SOURCES
# Messages that are not part of the conversation copied into a ticket.
SKIPPED_SUBTYPES = {"channel_join", "channel_leave", "group_join", "group_leave", "bot_message", "thread_broadcast_bot"}


def copyable(message: dict[str, Any]) -> bool:
    """A person's message in the conversation (not a bot's, the app's, or a join)."""
    return bool(message.get("user")) and not message.get("bot_id") and message.get("subtype") not in SKIPPED_SUBTYPES


@dataclass
class Context:
    storage: Storage
    backends: dict[str, TicketBackend]
    default_backend: str
    slack: AsyncWebClient  # raises on a 429 (no rate-limit retry handler): the journal retries
    people: People
    hold: Callable[[Submission], None]  # the worker's lease check (`Worker.hold`)
    unmatched_requester: str = "describe"
    identity_refresh: float = 3600.0
    may_file_for_others: Callable[[str], Awaitable[bool]] | None = None  # ON_BEHALF_OF
    # The routing file's `workspaces:`: Serval's Slack integration per workspace (or org) id.
    integrations: dict[str, str] = dataclasses.field(default_factory=dict)
    shared_channel_details: str = "minimal"  # SHARED_CHANNEL_DETAILS
    _shared: dict[str, tuple[float, bool]] = dataclasses.field(default_factory=dict)  # channel → (asked at, is_ext_shared)

    def integration(self, sub: Submission) -> str | None:
        """The ticket system's chat integration for the submission's workspace (None: the configured one)."""
        workspace = sub.payload.get("workspace") or {}
        for key in (workspace.get("team_id"), workspace.get("enterprise_id")):
            if key and key in self.integrations:
                return self.integrations[key]
        return None

    def backend(self, name: str | None = None) -> TicketBackend:
        """The named back end; the default one for None or a name no longer configured."""
        return self.backends.get(name or self.default_backend) or self.backends[self.default_backend]

    def link(self, ticket: CreatedTicket) -> str | None:
        """The ticket's page, for messages that name it (None: no link configured)."""
        backend = self.backends.get(ticket.backend)
        return backend.link(ticket) if backend else ticket.url

    def ticket(self, sub: Submission) -> CreatedTicket:
        assert sub.ticket is not None
        return journaled(CreatedTicket, sub.ticket)

    def card(self, ticket: CreatedTicket, headline: str, edit: str | None = None, *, minimal: bool = False) -> cards.Card | None:
        """The live card a reply becomes, when the ticket's system lets the bot follow it (`minimal`:
        in a channel shared with another organisation)."""
        backend = self.backends.get(ticket.backend)
        if backend is None or not backend.can_follow:
            return None
        return cards.Card(headline=headline, key=cards.key(ticket.backend, ticket.id), edit=edit,
                          can_close=backend.can_close, can_comment=backend.can_add_messages, minimal=minimal)

    async def minimal_in(self, channel_id: str | None) -> bool:
        """Whether what is posted in this channel about a ticket is kept to its id and status: a channel
        shared with another organisation (Slack Connect: `is_ext_shared`), unless SHARED_CHANNEL_DETAILS
        is full. Asked once per channel per hour (conversations.info); a DM is never shared."""
        if self.shared_channel_details != "minimal" or not channel_id or channel_id.startswith("D"):
            return False
        known = self._shared.get(channel_id)
        if known is not None and time.monotonic() - known[0] < 3600:
            return known[1]
        try:
            info = await self.slack.conversations_info(channel=channel_id)
        except SlackApiError as exc:
            if exc.response.get("error") not in SLACK_NO_ACCESS:
                raise
            return False  # the bot cannot see it: it cannot post there either (the DM fallback)
        shared = bool((info.get("channel") or {}).get("is_ext_shared"))
        self._shared[channel_id] = (time.monotonic(), shared)
        return shared

    @staticmethod
    def posted_card(sub: Submission, card: cards.Card | None, channel_id: str, ts: str, thread_ts: str) -> None:
        """Remember where the card is (the follow step records it with the followed ticket)."""
        if card is not None:
            sub.payload["card"] = {"channel": channel_id, "ts": ts, "thread_ts": thread_ts, "card": dataclasses.asdict(card)}

    async def thread(self, channel_id: str, root: str, *, until: str | None = None) -> list[dict[str, Any]]:
        """The thread's messages, root first (conversations.replies, every page; up to `until`)."""
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            args: dict[str, Any] = {"channel": channel_id, "ts": root, "limit": 200}
            if until:
                args.update(latest=until, inclusive=True)
            if cursor:
                args["cursor"] = cursor
            resp = await self.slack.conversations_replies(**args)
            out += resp.get("messages") or []
            cursor = ((resp.get("response_metadata") or {}).get("next_cursor")) or None
            if not cursor or not resp.get("has_more", True):
                return out

    async def tell(self, user_id: str, channel_id: str | None, text: str) -> None:
        """An ephemeral message where the person is; a DM when the bot cannot post there."""
        if channel_id:
            try:
                await self.slack.chat_postEphemeral(channel=channel_id, user=user_id, text=text)
                return
            except SlackApiError as exc:
                if exc.response.get("error") not in SLACK_NO_ACCESS:
                    raise
        await self.slack.chat_postMessage(channel=user_id, text=text)

    async def update_view(self, view_id: str, view: dict[str, Any]) -> bool:
        try:
            await self.slack.views_update(view_id=view_id, view=view)
            return True
        except Exception as exc:  # the modal may be closed already; the message still goes out
            log.debug("views.update %s: %s", view_id, slack_error(exc))
            return False

    async def thread_ticket(self, channel_id: str, thread_ts: str) -> tuple[bool, str | None]:
        """(taken, display id): is this thread linked to a ticket, or about to be?"""
        key = f"{channel_id}:{thread_ts}"
        taken = await self.storage.taken_threads([key])
        return (True, taken[key]) if key in taken else (False, None)

"""Intake: what people ask for is journaled (a form, a message in a conversation), and the worker
takes it from there. Intake never runs a step itself."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from clients.base import CreatedTicket

from ..slack.drafts import Form
from ..journal.storage import Storage, Submission
from ..installations import Workspace
from ..slack.views import Origin
from .context import MESSAGE_SOURCES, THREAD_SOURCES
from .queued import QueuedNotices
from .worker import Worker
from .workflow import WORKFLOW, payload_for

log = logging.getLogger(__name__)


class Intake:
    def __init__(self, storage: Storage, worker: Worker, notices: QueuedNotices, router: Any = None) -> None:
        self.storage, self.worker, self.notices = storage, worker, notices
        self.router = router  # bot.routing.Router: where a ticket from a conversation goes

    async def submit(
        self,
        *,
        dedupe_key: str,
        origin: Origin,
        form: Form,
        user_id: str,
        view_id: str | None,
        requester_id: str | None = None,
        add_to: CreatedTicket | None = None,
    ) -> Submission:
        """Journal a submission and start working on it. A repeat of an earlier submission (same
        dedupe key) returns the earlier one and starts nothing. Raises ThreadTaken.
        `add_to`: instead of creating a ticket, add what was typed to this existing one (and link
        the thread to it)."""
        payload = {
            "origin": asdict(origin),
            "user_id": user_id,
            "requester_id": requester_id or origin.requester_id or user_id,
            "view_id": view_id,
            "title": form.title,
            "description": form.description,
            "values": form.values_json(),
            "share": form.share and origin.source == "command" and origin.shareable_channel and not add_to,
            # a ticket made from a reply: the thread's other messages are copied into it
            "copy_history": bool(origin.message_ts and origin.thread_ts and origin.message_ts != origin.thread_ts),
        }
        if add_to:
            payload["add_to"] = asdict(add_to)
        return await self._journal(Submission.new(dedupe_key, payload, self._thread_key(origin)), view_id)

    async def submit_message(
        self,
        *,
        dedupe_key: str,
        source: str,
        channel_id: str,
        channel_name: str | None,
        message_ts: str,
        thread_ts: str | None,
        submitter_id: str,
        title: str | None = None,
    ) -> Submission:
        """Journal a ticket made from a conversation (a reaction, a mention, a request channel) and
        start working on it; returns at once (the message is read when the ticket is created).
        `message_ts`: the message the ticket is made from; `thread_ts`: its thread's root, when it
        is in a thread. A repeat (same dedupe key: the Slack event id) starts nothing. Raises
        ThreadTaken when the thread has a ticket, or one on its way."""
        if source not in MESSAGE_SOURCES:
            raise ValueError(f"unknown source {source!r}")
        route = await self.router.route(channel_id) if self.router else None
        root = thread_ts or message_ts
        origin = Origin(
            source=source,
            channel_id=channel_id,
            channel_name=channel_name,
            thread_ts=root,
            message_ts=message_ts,
            backend=route.backend if route else None,
            team_id=route.values.get("team_id") if route else None,
        )
        payload = {
            "origin": asdict(origin),
            "user_id": submitter_id,
            "requester_id": None,  # the message's author, per ON_BEHALF_OF: decided when it is read
            "view_id": None,
            "title": title or "",
            "description": "",
            "values": dict(route.values) if route else {},
            "share": False,
            "from_message": {"ts": message_ts, "title": title},
            # a mention in a thread: the thread's other messages are copied (whether a reacted or
            # posted message is in a thread is known when it is read: `_read_message`)
            "copy_history": bool(thread_ts and (message_ts != thread_ts or source == "mention")),
        }
        return await self._journal(Submission.new(dedupe_key, payload, self._thread_key(origin)), None)

    async def submit_addition(
        self,
        *,
        dedupe_key: str,
        ticket: CreatedTicket,
        channel_id: str,
        channel_name: str | None,
        message_ts: str,
        thread_ts: str,
        user_id: str,
        view_id: str | None,
        connect: bool,
    ) -> Submission:
        """*Add to ticket*: journal a message to be added to an existing ticket (read from Slack when
        it is added: its text, author, link and files' names), and start working on it.
        `connect`: the thread has no ticket yet, and is connected to this one (raises ThreadTaken
        when another took it meanwhile)."""
        origin = Origin(source="shortcut", channel_id=channel_id, channel_name=channel_name, thread_ts=thread_ts,
                        message_ts=message_ts, backend=ticket.backend)
        payload = {
            "origin": asdict(origin),
            "user_id": user_id,
            "requester_id": None,  # the message's author, per ON_BEHALF_OF: decided when it is read
            "view_id": view_id,
            "title": "",
            "description": "",
            "values": {},
            "share": False,
            "from_message": {"ts": message_ts, "title": None},
            "copy_history": False,
            "add_to": asdict(ticket),
        }
        key = self._thread_key(origin) if connect else None
        return await self._journal(Submission.new(dedupe_key, payload, key), view_id)

    async def submit_function(self, *, execution_id: str, token: str, inputs: dict[str, Any]) -> Submission:
        """Journal an execution of the *Create a ticket* workflow step (`function_executed`) and start
        working on it; returns at once. A repeat (same `function_execution_id`: Slack's redelivery,
        here or on another replica) starts nothing. Its inputs are checked by the create step, so a
        wrong one ends the execution with an error naming it."""
        channel_id = str(inputs.get("channel") or "") or None
        route = await self.router.route(channel_id) if self.router else None
        origin = Origin(
            source=WORKFLOW,
            channel_id=channel_id,
            backend=route.backend if route else None,
            team_id=route.values.get("team_id") if route else None,
        )
        payload = payload_for(execution_id=execution_id, token=token, inputs=inputs, origin=origin,
                              values=dict(route.values) if route else {})
        return await self._journal(Submission.new(f"function:{execution_id}", payload, None), None)

    @staticmethod
    def _thread_key(origin: Origin) -> str | None:
        if origin.source in THREAD_SOURCES and origin.channel_id and origin.thread_ts:
            return f"{origin.channel_id}:{origin.thread_ts}"
        return None

    async def first_delivery(self, event_id: str) -> bool:
        """Record a Slack event id; False when it was recorded before (a redelivery, here or on
        another replica)."""
        return await self.storage.first_delivery(event_id)

    async def _journal(self, sub: Submission, view_id: str | None) -> Submission:
        if workspace := Workspace.current():  # installs by OAuth: its steps speak with this workspace's token
            sub.payload["workspace"] = workspace.as_dict()
        stored, new = await self.worker.journal(sub)
        if new and view_id:
            self.notices.start(stored)
        return stored

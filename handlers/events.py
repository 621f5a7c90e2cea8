"""Tickets from conversations: a reaction, an @mention, a request channel, a direct message.

Bolt acknowledges an event (HTTP 200, or the Socket Mode envelope) before its listener runs, and
Slack does not wait: whatever an event is to become must be recorded before that. So each event
listener here has a *listener middleware*, which Bolt runs before its automatic ack (see
`slack_bolt/app/async_app.py` `async_dispatch`: `listener.run_async_middleware` comes before
`AsyncioListenerRunner.run`, which acks first). The middleware decides, from the event alone and
the channel's route (cached), whether the event triggers anything, and only then writes:

- a ticket (reaction, mention, `intake: auto`): `tickets.submit_message`, journaled under the
  dedupe key `event:<event_id>`, so a redelivery (`X-Slack-Retry-Num`, to this or another replica)
  is the same submission; the service reads the message, creates the ticket and replies in the
  thread, from the journal;
- anything else worth answering (the *Create ticket* button of `intake: button` and of direct
  messages, "this thread already has a ticket"): `tickets.first_delivery(event_id)`, so it is
  answered once. The listener posts it after the ack.

Everything else (edits, deletions, joins, thread replies, other channels' messages, other
reactions) is acknowledged without a write. When the journal cannot be written, Slack gets a 500
and delivers the event again later. Messages and mentions from bots, workflows and the app itself
(`bot_id`), and the app's own reactions, never trigger anything: nothing the bot posts loops back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import views
from bot.core import Bot
from bot.slack.forms import QuotedMessage, new_ticket_form
from bot.routing import emoji_name
from bot.journal.storage import ThreadTaken

from .common import after_ack, open_view, slack_error, tell

log = logging.getLogger(__name__)

CONTEXT_KEY = "ticket_event"  # what the middleware decided, for the listener (after the ack)
PERSON_SUBTYPES = {None, "file_share"}  # a person's message, with or without files
FULL_TEXT_WAIT = 5.0  # how long an open form waits to get a long message's whole text
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def _event_id(body: dict[str, Any], event: dict[str, Any]) -> str:
    """Slack's `event_id` ("globally unique"); a stand-in from the event itself if it is missing."""
    if body.get("event_id"):
        return str(body["event_id"])
    item = event.get("item") or {}
    return "~" + ":".join(str(x) for x in (event.get("type"), event.get("channel") or item.get("channel"),
                                            event.get("ts") or item.get("ts"), event.get("user"), event.get("event_ts")))


def _bot_user_ids(bot: Bot, context: AsyncBoltContext, body: dict[str, Any]) -> set[str]:
    """The app's own user id(s): from `auth.test` (through `authorize`) and the event's
    `authorizations` (the installation the event is delivered for)."""
    ids = {context.bot_user_id} if context.bot_user_id else set()
    workspace = bot.people.known_workspace
    if workspace and workspace.bot_user_id:
        ids.add(workspace.bot_user_id)
    for auth in body.get("authorizations") or []:
        if isinstance(auth, dict) and auth.get("is_bot") and auth.get("user_id"):
            ids.add(auth["user_id"])
    return ids


def _retry(context: AsyncBoltContext, request: Any) -> str:
    headers = getattr(request, "headers", {}) or {}
    num = (headers.get("x-slack-retry-num") or [None])[0]
    return f" (Slack's retry {num}: {(headers.get('x-slack-retry-reason') or ['?'])[0]})" if num else ""


def reaction_name(reaction: str) -> str:
    """`ticket::skin-tone-2` → `ticket`."""
    return (reaction or "").split("::", 1)[0].lower()


def mention_title(text: str, bot_ids: set[str]) -> str | None:
    """`<@BOT> Printer on floor 3` → "Printer on floor 3"; None when nothing but the mention.
    The bot's mentions are removed (the first mention when the bot's id is not known yet)."""
    if bot_ids and any(m.group(1) in bot_ids for m in _MENTION.finditer(text)):
        rest = _MENTION.sub(lambda m: "" if m.group(1) in bot_ids else m.group(0), text)
    else:
        rest = _MENTION.sub("", text, count=1)
    first = next((line for line in views.plain(rest).splitlines() if line.strip()), "")
    title = " ".join(first.split()).strip(" ,:;-–—")
    return title or None


def is_person_message(event: dict[str, Any], bot_ids: set[str]) -> bool:
    """A new top-level message written by a person: not an edit, deletion or join, not a thread
    reply (nor one broadcast to the channel), not from a bot, a workflow or the app itself."""
    if event.get("subtype") not in PERSON_SUBTYPES or event.get("hidden") or event.get("bot_id"):
        return False
    if not event.get("user") or event["user"] in bot_ids or not event.get("ts") or not event.get("channel"):
        return False
    return event.get("thread_ts") in (None, event["ts"])


def _channel_kind(event: dict[str, Any]) -> str:
    kind = event.get("channel_type")
    if kind:
        return str(kind)
    return {"C": "channel", "G": "group", "D": "im"}.get((event.get("channel") or " ")[0], "")


MAX_VALUE_TEXT = views.BUTTON_VALUE_LIMIT


def button_value(channel_id: str, ts: str, author_id: str | None, text: str) -> str:
    """The *Create ticket* button's value: where the message is, who wrote it, and its text (cut
    to fit 2000 characters; `"x": 1` then says the whole text is to be read from Slack)."""
    def dump(cut: str, whole: bool) -> str:
        data: dict[str, Any] = {"c": channel_id, "ts": ts, "u": author_id, "t": cut}
        if not whole:
            data["x"] = 1
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    value = dump(text, True)
    if len(value) <= MAX_VALUE_TEXT:
        return value
    low, high = 0, len(text)  # the longest start of the text that fits (escaping may lengthen it)
    while low < high:
        middle = (low + high + 1) // 2
        if len(dump(text[:middle], False)) <= MAX_VALUE_TEXT:
            low = middle
        else:
            high = middle - 1
    return dump(text[:low], False)


def register(app: AsyncApp, bot: Bot) -> None:
    settings_emoji = emoji_name(bot.settings.reaction_emoji)
    ok = BoltResponse(status=200, body="")  # acknowledged, nothing else to do

    async def journaled(what: str, write: Callable[[], Awaitable[Any]]) -> Any:
        """Run a journal write before the ack; None and a 500 for Slack when it fails (Slack
        delivers the event again)."""
        try:
            return await write()
        except ThreadTaken:
            raise
        except Exception:
            log.exception("could not record %s; Slack will deliver it again", what)
            return None

    # --- reactions ------------------------------------------------------------------------------

    async def journal_reaction(body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext,
                               request: Any, next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        item = event.get("item") or {}
        channel_id, ts, user_id = item.get("channel"), item.get("ts"), event.get("user")
        if item.get("type") != "message" or not (channel_id and ts and user_id):
            return ok
        bot_ids = _bot_user_ids(bot, context, body)
        if user_id in bot_ids or event.get("item_user") in bot_ids:  # the app's reaction, or on its own post
            return ok
        route = await bot.router.route(channel_id)  # a channel may use its own emoji
        if reaction_name(event.get("reaction") or "") != (route.reaction_emoji or settings_emoji):
            return ok
        event_id = _event_id(body, event)
        log.info("ticket reaction by %s on %s/%s (%s)%s", user_id, channel_id, ts, event_id, _retry(context, request))
        try:
            # The event says nothing about the message's thread: the service reads it.
            sub = await journaled(f"the reaction {event_id}", lambda: bot.tickets.submit_message(
                dedupe_key=f"event:{event_id}", source="reaction", channel_id=channel_id, channel_name=None,
                message_ts=ts, thread_ts=None, submitter_id=user_id, title=None))
        except ThreadTaken as taken:
            return await _already(event_id, taken.display_id, user_id, channel_id, context, next)
        if sub is None:
            return BoltResponse(status=500, body="")
        return ok

    async def _already(event_id: str, display_id: str | None, user_id: str, channel_id: str,
                       context: AsyncBoltContext, next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        """The thread has a ticket: tell the person once (whichever delivery comes first)."""
        first = await journaled(f"the event {event_id}", lambda: bot.tickets.first_delivery(event_id))
        if first is None:
            return BoltResponse(status=500, body="")
        if not first:
            return ok
        context[CONTEXT_KEY] = {"tell": views.already_ticket_text(display_id), "user": user_id, "channel": channel_id}
        await next()
        return None

    async def after_event(context: AsyncBoltContext, client: AsyncWebClient) -> None:
        """After the ack: the answer the middleware decided on, if any."""
        todo = context.get(CONTEXT_KEY)
        if not todo:
            return
        try:
            if todo.get("tell"):
                await tell(client, todo["user"], todo["channel"], todo["tell"])
            elif todo.get("post"):
                await client.chat_postMessage(**todo["post"])
        except Exception as exc:  # nobody waits for this answer; the person can react or ask again
            log.warning("could not answer an event in %s: %s", todo.get("channel"), slack_error(exc))

    app.event("reaction_added", middleware=[journal_reaction])(after_event)

    @app.event("reaction_removed")  # not subscribed to; taking a reaction back changes nothing
    async def reaction_removed() -> None:
        return None

    # --- mentions -------------------------------------------------------------------------------

    async def journal_mention(body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext,
                              request: Any, next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        channel_id, ts, user_id = event.get("channel"), event.get("ts"), event.get("user")
        bot_ids = _bot_user_ids(bot, context, body)
        if event.get("bot_id") or not (channel_id and ts and user_id) or user_id in bot_ids:
            return ok  # a bot or workflow mentioning the app, or the app itself
        if event.get("subtype") not in PERSON_SUBTYPES:
            return ok
        thread_ts = event.get("thread_ts") if event.get("thread_ts") not in (None, ts) else None
        title = mention_title(event.get("text") or "", bot_ids)
        event_id = _event_id(body, event)
        log.info("mention by %s in %s/%s (%s)%s", user_id, channel_id, thread_ts or ts, event_id, _retry(context, request))
        try:
            # In a thread, the thread's root is the ticket; at top level, the mentioning message.
            sub = await journaled(f"the mention {event_id}", lambda: bot.tickets.submit_message(
                dedupe_key=f"event:{event_id}", source="mention", channel_id=channel_id, channel_name=None,
                message_ts=thread_ts or ts, thread_ts=thread_ts, submitter_id=user_id, title=title))
        except ThreadTaken as taken:
            return await _already(event_id, taken.display_id, user_id, channel_id, context, next)
        if sub is None:
            return BoltResponse(status=500, body="")
        return ok

    app.event("app_mention", middleware=[journal_mention])(after_event)

    # --- messages: request channels and direct messages ---------------------------------------------

    async def journal_message(body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext,
                              request: Any, next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        bot_ids = _bot_user_ids(bot, context, body)
        if not is_person_message(event, bot_ids):
            return ok
        channel_id, ts, user_id = event["channel"], event["ts"], event["user"]
        kind = _channel_kind(event)
        text = event.get("text") or ""
        if kind == "im":
            event_id = _event_id(body, event)
            first = await journaled(f"the message {event_id}", lambda: bot.tickets.first_delivery(event_id))
            if first is None:
                return BoltResponse(status=500, body="")
            if not first:
                return ok
            prompt = views.create_ticket_prompt(button_value(channel_id, ts, user_id, text), user_id=user_id, direct=True)
            context[CONTEXT_KEY] = {"post": {"channel": channel_id, **prompt}, "channel": channel_id}
            await next()
            return None
        if kind not in ("channel", "group"):
            return ok  # group DMs: no request channels there
        if bot_ids and any(m.group(1) in bot_ids for m in _MENTION.finditer(text)):
            return ok  # a mention of the app: its app_mention event files it
        route = await bot.router.route(channel_id)
        if route.intake == "auto":
            event_id = _event_id(body, event)
            log.info("request channel %s: message %s by %s (%s)%s", channel_id, ts, user_id, event_id, _retry(context, request))
            try:
                sub = await journaled(f"the message {event_id}", lambda: bot.tickets.submit_message(
                    dedupe_key=f"event:{event_id}", source="intake", channel_id=channel_id, channel_name=None,
                    message_ts=ts, thread_ts=None, submitter_id=user_id, title=None))
            except ThreadTaken:
                return ok  # the message has its ticket already (e.g. from a reaction)
            return ok if sub is not None else BoltResponse(status=500, body="")
        if route.intake == "button":
            event_id = _event_id(body, event)
            first = await journaled(f"the message {event_id}", lambda: bot.tickets.first_delivery(event_id))
            if first is None:
                return BoltResponse(status=500, body="")
            if not first:
                return ok
            prompt = views.create_ticket_prompt(button_value(channel_id, ts, user_id, text), user_id=user_id, direct=False)
            context[CONTEXT_KEY] = {"post": {"channel": channel_id, "thread_ts": ts, **prompt}, "channel": channel_id}
            await next()
            return None
        return ok

    app.event("message", middleware=[journal_message])(after_event)

    # --- the Create ticket button -------------------------------------------------------------------

    @app.action(views.CREATE_FROM_MESSAGE)
    async def create_from_message(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                                  client: AsyncWebClient) -> None:
        await ack()
        user_id = (body.get("user") or {}).get("id", "")
        channel = body.get("channel") or {}
        try:
            data = json.loads(action.get("value") or "{}")
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            data = {}
        channel_id = data.get("c") or channel.get("id") or (body.get("container") or {}).get("channel_id")
        ts = data.get("ts")
        trigger_id = body.get("trigger_id", "")

        async def form(text: str) -> dict[str, Any]:
            workspace = bot.people.known_workspace
            permalink = workspace.permalink(channel_id, ts) if workspace and workspace.url else None
            quoted = QuotedMessage(text=text, author_id=data.get("u"), permalink=permalink)
            name = channel.get("name") if channel.get("name") not in (None, "directmessage") else None
            return await new_ticket_form(bot, source="shortcut", user_id=user_id, channel_id=channel_id,
                                         channel_name=name, thread_ts=ts, message=quoted, message_ts=ts)

        async def open_form() -> None:
            if not (channel_id and ts):
                await open_view(client, trigger_id, views.notice_modal(
                    "This button is out of date. Use *Create ticket* in the message's menu instead."),
                    user_id=user_id, channel_id=channel_id)
                return
            taken, display_id = await bot.tickets.thread_ticket(channel_id, ts)
            if taken:
                await open_view(client, trigger_id, views.already_linked_modal(display_id),
                                user_id=user_id, channel_id=channel_id)
                return
            opened = await open_view(client, trigger_id, await form(data.get("t") or ""), user_id=user_id,
                                     channel_id=channel_id)
            if opened and opened.get("id") and data.get("x"):
                await add_whole_text(opened)

        async def add_whole_text(opened: dict[str, Any]) -> None:
            """The button carried the start of a long message: the form gets the whole text from
            Slack once it is open (Slack keeps what the person typed; `hash` refuses a changed form)."""
            try:
                resp = await asyncio.wait_for(client.conversations_replies(channel=channel_id, ts=ts, limit=1),
                                              FULL_TEXT_WAIT)
                message = next((m for m in resp.get("messages") or [] if m.get("ts") == ts), None)
                if message and message.get("text"):
                    await client.views_update(view_id=opened["id"], hash=opened.get("hash"), view=await form(message["text"]))
            except Exception as exc:
                log.info("could not add the message's whole text to the form: %s", slack_error(exc))

        await after_ack(open_form, client, user_id=user_id, channel_id=channel_id, what="open the ticket form")

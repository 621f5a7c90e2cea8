"""The "Create ticket" message shortcut: the ticket modal, prefilled from the message.

The form opens first: the message's link is built from the workspace URL (`auth.test`, asked once
per process), not asked of Slack while the trigger_id ages. Only in the first moments after start,
before `auth.test` has answered, is the link added to the open form afterwards."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import background, installations
from bot.slack import adding, suggestions, views
from bot.core import Bot
from bot.slack.forms import QuotedMessage, new_ticket_form
from bot.slack.people import Workspace

from .common import after_ack, open_view, slack_error, tell

log = logging.getLogger(__name__)
LINK_LATER_WAIT = 5.0  # how long an open form waits for auth.test to add the message's link


def _author_name(message: dict[str, Any]) -> str | None:
    profile = message.get("user_profile") if isinstance(message.get("user_profile"), dict) else {}
    return profile.get("real_name") or profile.get("display_name") or None


def register(app: AsyncApp, bot: Bot) -> None:
    @app.message_shortcut(views.SHORTCUT_CALLBACK_ID)
    async def create_ticket_shortcut(ack: AsyncAck, shortcut: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        message = shortcut.get("message") or {}
        channel = shortcut.get("channel") or {}
        channel_id = channel.get("id")
        user_id = (shortcut.get("user") or {}).get("id", "")
        ts = message.get("ts") or shortcut.get("message_ts")
        root = message.get("thread_ts") or ts
        trigger_id = shortcut["trigger_id"]

        def link(workspace: Workspace | None) -> str | None:
            if not (workspace and workspace.url and channel_id and ts):
                return None
            return workspace.permalink(channel_id, ts, message.get("thread_ts"))

        async def form(permalink: str | None) -> dict[str, Any]:
            quoted = QuotedMessage(text=views.message_text(message), author_id=message.get("user"),
                                   author_name=_author_name(message), permalink=permalink,
                                   app_name=views.app_name(message))
            return await new_ticket_form(bot, source="shortcut", user_id=user_id, channel_id=channel_id,
                                         channel_name=channel.get("name"), thread_ts=root, message=quoted,
                                         message_ts=ts)

        async def open_form() -> None:
            # Threads taken here are looked up before the form, any other once it opened and nobody
            # waits on the bot (bot/journal/threads.py, bot/background.py). A taken thread's person
            # is told so: instead of the form, or in its place unless they changed it meanwhile
            # (`hash`; submitting it is refused all the same).
            key = bot.threads.key(channel_id, root) if channel_id and root else None
            if key is not None and key in bot.threads:
                taken, display_id = await bot.tickets.thread_ticket(channel_id, root)
                if taken:
                    await open_view(client, trigger_id, views.already_linked_modal(display_id), user_id=user_id,
                                    channel_id=channel_id)
                    return
                bot.threads.forget(key)
                key = None  # looked up just now
            workspace = bot.people.known_workspace
            opened = await open_view(client, trigger_id, await form(link(workspace)), user_id=user_id, channel_id=channel_id)
            if opened and opened.get("id") and workspace is None and channel_id and ts:
                opened = await add_link_later(opened) or opened
            if key is None or not (opened and opened.get("id")):
                await suggestions.offer(bot, client, opened, user_id=user_id)  # after the form is open
                return

            workspace_here = installations.Workspace.current()

            async def then(taken: bool | None, display_id: str | None, opened: dict[str, Any] = opened) -> None:
                installations.Workspace.use(workspace_here)  # the checks run in nobody's request
                if taken is None:
                    await tell(client, user_id, channel_id, ":warning: Something went wrong and I could not check "
                               "whether this thread has a ticket already; submitting the form will tell.")
                elif taken:
                    try:
                        await client.views_update(view_id=opened["id"], hash=opened.get("hash"),
                                                  view=views.already_linked_modal(display_id))
                    except Exception as exc:
                        log.info("form %s stays open on a taken thread: %s", opened["id"], slack_error(exc))
                else:
                    await suggestions.offer(bot, client, opened, user_id=user_id)

            bot.threads.check_later(key, then)  # with every other form's, once nobody waits on the bot

        async def add_link_later(opened: dict[str, Any]) -> dict[str, Any] | None:
            """The form opened without the message's link: add it once auth.test answers. Slack keeps
            what the person typed meanwhile (same blocks), and refuses the update if the form
            changed since (`hash`). Returns the updated form."""
            try:
                permalink = link(await asyncio.wait_for(bot.people.workspace(), LINK_LATER_WAIT))
                if permalink:
                    resp = await client.views_update(view_id=opened["id"], hash=opened.get("hash"), view=await form(permalink))
                    return resp.get("view")
            except Exception as exc:
                log.info("could not add the message's link to the form: %s", exc)
            return None

        await after_ack(open_form, client, user_id=user_id, channel_id=channel_id, what="open the ticket form")

    # --- *Add to ticket* --------------------------------------------------------------------------

    @app.message_shortcut(views.ADD_SHORTCUT_CALLBACK_ID)
    async def add_to_ticket_shortcut(ack: AsyncAck, shortcut: dict[str, Any], client: AsyncWebClient) -> None:
        """The form opens first (nothing is asked before views.open); the person's open tickets are
        added to it once known, when nobody waits on the bot."""
        await ack()
        message = shortcut.get("message") or {}
        channel = shortcut.get("channel") or {}
        channel_id = channel.get("id")
        user_id = (shortcut.get("user") or {}).get("id", "")
        ts = message.get("ts") or shortcut.get("message_ts")
        trigger_id = shortcut["trigger_id"]

        async def open_form() -> None:
            if not (channel_id and ts):
                notice = views.notice_modal("Slack did not say which message this is; try again.", title="Add to ticket")
                await open_view(client, trigger_id, notice, user_id=user_id, channel_id=channel_id, what="the form")
                return
            where = adding.Message(channel_id, channel.get("name"), ts, message.get("thread_ts") or ts).dump()
            opened = await open_view(client, trigger_id, views.add_message_modal(where, None), user_id=user_id,
                                     channel_id=channel_id, what="the form")
            if not (opened and opened.get("id")):
                return

            async def list_tickets() -> None:
                try:
                    tickets = await adding.open_tickets(bot, user_id)
                except Exception as exc:
                    log.warning("could not list the open tickets of %s: %s", user_id, exc)
                    tickets = []
                try:  # `hash`: a form submitted or changed meanwhile stays as it is
                    await client.views_update(view_id=opened["id"], hash=opened.get("hash"),
                                              view=views.add_message_modal(where, tickets))
                except Exception as exc:
                    log.info("form %s: its ticket list was not added: %s", opened["id"], slack_error(exc))

            background.later(list_tickets)

        await after_ack(open_form, client, user_id=user_id, channel_id=channel_id, what="open the form")

    @app.view_submission(views.ADD_MODAL_CALLBACK_ID)
    async def add_to_ticket_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any],
                                      client: AsyncWebClient) -> None:
        user_id = (body.get("user") or {}).get("id") or ""
        where = adding.Message.load(view.get("private_metadata"))
        chosen, typed = adding.picked(view)
        if where is None or not view.get("id"):
            await ack(response_action="update", view=views.notice_modal(
                "This form is out of date: use *Add to ticket* on the message again.", title="Add to ticket"))
            return
        if chosen is None and not typed:
            await ack(response_action="errors",
                      errors={views.ADD_ID_BLOCK: "Pick one of your tickets, or type its id or paste its link."})
            return
        await ack(response_action="update", view=views.adding_modal(chosen.display_id if chosen else typed[:100]))

        async def add() -> None:
            ticket = chosen or await adding.find_ticket(bot, typed, user_id)
            if ticket is None:
                await client.views_update(view_id=view["id"], view=views.not_found_modal(typed))
                return
            await adding.add(bot, view_id=view["id"], message=where, ticket=ticket, user_id=user_id)

        await after_ack(add, client, user_id=user_id, channel_id=where.channel_id, what="add the message to the ticket")

"""Building the ticket form for a person in a channel: the channel's route picks the ticket system
and the defaults; the person's rights decide whether they may file for someone else."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from clients.base import BackendError, FormField
from clients.serval import CUSTOM_FIELD_PREFIX

from . import views
from ..core import Bot
from ..installations import Workspace
from .drafts import Form, parse_form
from .views import Origin

log = logging.getLogger(__name__)
CONFIG_FIELDS = {"team_id", "type"}  # what /ticket config sets for a channel


def shown_fields(fields: list[FormField], custom_fields: bool) -> list[FormField]:
    """The fields a channel's form shows: its route may leave out the ticket system's custom
    fields (`custom_fields: false`); their ids start with CUSTOM_FIELD_PREFIX."""
    return fields if custom_fields else [f for f in fields if not f.id.startswith(CUSTOM_FIELD_PREFIX)]


async def may_file_for_others(bot: Bot, user_id: str) -> bool:
    """Bounded in time: a modal must open within Slack's 3 seconds, so in doubt the answer is no."""
    if bot.settings.on_behalf_of != "admins":  # "anyone" or "nobody": no lookup, no timer task
        return bot.settings.on_behalf_of == "anyone"
    try:
        return await asyncio.wait_for(bot.may_file_for_others(user_id), 1.0)
    except Exception as exc:
        log.info("could not check whether %s may file for others: %s", user_id, exc)
        return False


def may_pick_requester(bot: Bot, view_blocks: set[str | None]) -> bool:
    """At submission: may this form name someone else as requester? The bot put the Requester
    picker into the form only for people who may (checked when it opened), and Slack returns the
    view it opened: no Slack call before the submission's ack."""
    policy = bot.settings.on_behalf_of
    return policy == "anyone" or (policy == "admins" and views.ON_BEHALF_BLOCK in view_blocks)


AUTHOR_LOOKUP_WAIT = 0.5  # seconds; the form opens with "@U…" rather than wait longer


async def author(bot: Bot, user_id: str) -> tuple[str, bool]:
    """A message author's name for the description, and whether they are an app's bot user,
    quickly: ("@U…", False) when Slack is slow."""
    try:
        profile = await asyncio.wait_for(bot.people.profile(user_id), AUTHOR_LOOKUP_WAIT)
    except Exception as exc:
        log.info("no name for %s: %s", user_id, exc)
        profile = None
    return (profile.person.name, profile.is_bot) if profile else (f"@{user_id}", False)


@dataclass
class QuotedMessage:
    """The message a shortcut was used on."""

    text: str
    author_id: str | None = None
    author_name: str | None = None  # when Slack sent the author's profile along
    permalink: str | None = None
    app_name: str | None = None  # posted by an app (`views.app_name`): filed for the person, naming it


def form_unavailable(system: str, why: str | None = None, *, what: str = "The ticket form",
                     title: str = "New ticket") -> dict[str, Any]:
    """The notice shown instead of a form that cannot be built, in plain words."""
    reason = f"{system} did not send the form's fields" + (f" ({views.escape(why)})" if why else "")
    return views.notice_modal(f":warning: {what} cannot be shown right now: {reason}.\n"
                              "Please try again in a minute.", title=title)


async def new_ticket_form(
    bot: Bot,
    *,
    source: str,
    user_id: str,
    channel_id: str | None,
    channel_name: str | None = None,
    title: str = "",
    thread_ts: str | None = None,
    message: QuotedMessage | None = None,
    message_ts: str | None = None,
) -> dict[str, Any]:
    """The ticket form; for a shortcut (`message`) prefilled from the message. The message's author
    is the requester only where the person may file for others (ON_BEHALF_OF); elsewhere the
    person is, and the description names the author. A message an app posted is filed for the
    person, and the description names the app."""
    route = await bot.router.route(channel_id)
    backend = bot.tickets.backend(route.backend)
    try:
        fields = shown_fields(await backend.form_fields_for(route.values), route.custom_fields)
    except BackendError as exc:  # e.g. the ticket system was unreachable since start-up
        log.warning("cannot build the %s form: %s", backend.name, exc.message)
        return form_unavailable(backend.display_name, exc.message)
    except Exception:  # an answer the client could not read: still an answer for the person
        log.exception("cannot build the %s form", backend.name)
        return form_unavailable(backend.display_name)
    on_behalf = await may_file_for_others(bot, user_id)
    requester_id = None
    description = ""
    description_max = min(backend.description_max_length, views.SLACK_TEXT_LIMIT)
    if message is not None:
        title = views.title_from_message(message.text)
        author_id = message.author_id
        header = None
        if message.app_name:
            header = views.alert_from(message.app_name, channel_id, channel_name)
        elif author_id and (on_behalf or author_id == user_id):
            requester_id = author_id
        elif author_id:
            # Slack sends a person's profile along; otherwise it is looked up (a bot user: an app)
            name, is_bot = (message.author_name, False) if message.author_name else await author(bot, author_id)
            header = (views.alert_from if is_bot else views.message_from)(name, channel_id, channel_name)
        description = views.description_from_message(message.text, message.permalink, description_max, header=header)
    origin = Origin(
        source=source,
        channel_id=channel_id,
        channel_name=channel_name,
        thread_ts=thread_ts,
        message_ts=message_ts,
        requester_id=requester_id,
        backend=backend.name,
        team_id=route.values.get("team_id"),
    )
    return views.ticket_modal(
        origin,
        fields,
        title=title,
        description=description,
        values=route.values,
        share_default=route.share,
        on_behalf=on_behalf,
        title_max_length=backend.title_max_length,
        description_max_length=backend.description_max_length,
    )


async def channel_config_form(bot: Bot, channel_id: str) -> dict[str, Any]:
    """`/ticket config`'s form for a channel, or a notice saying why it cannot be shown."""
    route = await bot.router.route(channel_id)
    backend = bot.tickets.backend(route.backend)
    try:
        fields = [f for f in await backend.form_fields_for(route.values) if f.id in CONFIG_FIELDS]
    except BackendError as exc:
        log.warning("cannot build the channel settings: %s", exc.message)
        return form_unavailable(backend.display_name, exc.message, what="The channel settings", title="Channel tickets")
    except Exception:
        log.exception("cannot build the channel settings")
        return form_unavailable(backend.display_name, what="The channel settings", title="Channel tickets")
    return views.config_modal(
        channel_id,
        [(name, b.display_name) for name, b in bot.backends.items()],
        route.backend,
        fields,
        values=route.values,
        share=route.share,
        intake=route.intake,
        reaction_emoji=route.reaction_emoji,
        default_emoji=bot.settings.reaction_emoji.strip(":"),
        workspace=_workspace_line(bot),
    )


def _workspace_line(bot: Bot) -> str | None:
    """With installs by OAuth, several workspaces share the bot: say whose channel this is, and
    where its defaults come from (the routing file's `workspaces:` section)."""
    here = Workspace.current()
    if bot.installations is None or here is None or not here.team_id:
        return None
    line = f"Workspace `{here.team_id}`" + (f" of the org `{here.enterprise_id}`" if here.enterprise_id else "")
    if here.is_enterprise_install:
        line += ", served by the app's org-wide install"
    own = next((key for key in (here.team_id, here.enterprise_id) if key and key in bot.router.workspaces), None)
    if own:
        line += f"; its defaults: the routing file's `workspaces: {own}`"
    return line + "."


async def parse_ticket_form(bot: Bot, view: dict[str, Any]) -> tuple[Origin, Form]:
    """The submitted ticket form as a validated `Form` (with inline errors if any)."""
    origin = Origin.load(view.get("private_metadata"))
    backend = bot.tickets.backend(origin.backend)
    block_ids = {b.get("block_id") for b in view.get("blocks") or [] if isinstance(b, dict)}

    async def parse(values: dict[str, Any]) -> Form:
        return parse_form(
            view.get("state"),
            await backend.form_fields_for(values),
            title_max_length=backend.title_max_length,
            description_max_length=backend.description_max_length,
            block_ids=block_ids,
        )

    try:
        # Twice: which fields exist (and their options) can depend on answers, like a team.
        return origin, await parse((await parse({})).values_json())
    except BackendError as exc:  # the form's fields cannot be loaded: keep the form open
        return origin, Form(errors={views.TITLE_BLOCK: f"Please try again in a minute: {exc.message}"[:150]})
    except Exception:  # an answer the client could not read: the same for the person
        log.exception("cannot read the %s form's fields", backend.name)
        return origin, Form(errors={views.TITLE_BLOCK: f"Please try again in a minute: {backend.display_name} did not send the form's fields."[:150]})


async def refreshed_ticket_form(bot: Bot, view: dict[str, Any]) -> dict[str, Any]:
    """The same form after a field that changes others (a team → its priorities) was changed;
    what the person typed so far is kept."""
    origin = Origin.load(view.get("private_metadata"))
    backend = bot.tickets.backend(origin.backend)
    block_ids = {b.get("block_id") for b in view.get("blocks") or [] if isinstance(b, dict)}
    form = parse_form(
        view.get("state"),
        await backend.form_fields_for({}),
        title_max_length=backend.title_max_length,
        description_max_length=backend.description_max_length,
        block_ids=block_ids,
    )
    values = form.values_json()
    route = await bot.router.route(origin.channel_id)
    return views.ticket_modal(
        origin,
        shown_fields(await backend.form_fields_for(values), route.custom_fields),  # a new team: its fields
        title=form.title,
        description=form.description,
        values=values,
        share_default=form.share,
        on_behalf=views.ON_BEHALF_BLOCK in block_ids,
        requester_id=form.requester_id,
        title_max_length=backend.title_max_length,
        description_max_length=backend.description_max_length,
    )

"""Building the ticket form for a person in a channel: the channel's route picks the ticket system
and the defaults; the person's rights decide whether they may file for someone else."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from clients.base import BackendError

from . import views
from .core import Bot
from .drafts import Form, parse_form
from .views import Origin

log = logging.getLogger(__name__)


async def may_file_for_others(bot: Bot, user_id: str) -> bool:
    """Bounded in time: a modal must open within Slack's 3 seconds, so in doubt the answer is no."""
    if bot.settings.on_behalf_of != "admins":  # "anyone" or "nobody": no lookup, no timer task
        return bot.settings.on_behalf_of == "anyone"
    try:
        return await asyncio.wait_for(bot.may_file_for_others(user_id), 1.0)
    except Exception as exc:
        log.info("could not check whether %s may file for others: %s", user_id, exc)
        return False


async def new_ticket_form(
    bot: Bot,
    *,
    source: str,
    user_id: str,
    channel_id: str | None,
    channel_name: str | None = None,
    title: str = "",
    description: str = "",
    thread_ts: str | None = None,
    requester_id: str | None = None,
) -> dict[str, Any]:
    route = await bot.router.route(channel_id)
    backend = bot.tickets.backend(route.backend)
    origin = Origin(
        source=source,
        channel_id=channel_id,
        channel_name=channel_name,
        thread_ts=thread_ts,
        requester_id=requester_id,
        backend=backend.name,
        team_id=route.values.get("team_id"),
    )
    try:
        fields = await backend.form_fields_for(route.values)
    except BackendError as exc:  # e.g. the ticket system was unreachable since start-up
        log.warning("cannot build the %s form: %s", backend.name, exc.message)
        return views.notice_modal(
            f":warning: The ticket form cannot be shown right now: {views.escape(exc.message)}\n"
            "Please try again in a minute."
        )
    return views.ticket_modal(
        origin,
        fields,
        title=title,
        description=description,
        values=route.values,
        share_default=route.share,
        on_behalf=await may_file_for_others(bot, user_id),
        title_max_length=backend.title_max_length,
        description_max_length=backend.description_max_length,
    )


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
    return views.ticket_modal(
        origin,
        await backend.form_fields_for(values),
        title=form.title,
        description=form.description,
        values=values,
        share_default=form.share,
        on_behalf=views.ON_BEHALF_BLOCK in block_ids,
        requester_id=form.requester_id,
        title_max_length=backend.title_max_length,
        description_max_length=backend.description_max_length,
    )

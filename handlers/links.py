"""Ticket links that unfold: `link_shared` → `chat.unfurl` with the ticket's card.

Slack sends `link_shared` for links to the domains in the manifest's `unfurl_domains`; the links
that are ticket links of a configured system (`bot.cards`) get a card, the others nothing. Unfurling
is a courtesy: a link that cannot be looked up (unknown ticket, over the rate budget, the system
down) stays a plain link, and nobody is told about it ([slack-native.md](../docs/slack-native.md)).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import Bot
from bot.slack import views

from .common import slack_error

log = logging.getLogger(__name__)
MAX_LINKS = 10  # links of one message looked up (Slack sends at most a handful)


def register(app: AsyncApp, bot: Bot) -> None:
    @app.event("link_shared")
    async def link_shared(event: dict[str, Any], client: AsyncWebClient) -> None:
        urls = list(dict.fromkeys(
            link["url"] for link in event.get("links") or [] if isinstance(link, dict) and link.get("url")
        ))[:MAX_LINKS]
        cards = await asyncio.gather(*(bot.cards.card(url) for url in urls))
        found = [(url, card, bot.tickets.backend(card.ticket.backend).display_name)
                 for url, card in zip(urls, cards) if card is not None]
        if not found:
            return
        unfurls = {url: views.ticket_unfurl(card, url, system) for url, card, system in found}
        args: dict[str, Any] = {"unfurls": unfurls}
        if bot.settings.unfurl_work_objects:  # the same tickets as Work Objects (their flexpane: below)
            args["metadata"] = {"entities": [views.ticket_entity(card, bot.cards.link(card.ticket) or url, system, url)
                                              for url, card, system in found]}
        if event.get("source") == "composer" and event.get("unfurl_id"):  # a link typed, not yet sent
            args.update(unfurl_id=event["unfurl_id"], source="composer")
        else:
            args.update(channel=event.get("channel"), ts=event.get("message_ts"))
        try:
            await client.chat_unfurl(**args)
        except Exception as exc:  # the link stays a plain link
            log.warning("chat.unfurl of %d ticket link(s) in %s failed: %s", len(unfurls), event.get("channel"),
                        slack_error(exc))

    @app.event("entity_details_requested")
    async def entity_details_requested(event: dict[str, Any], client: AsyncWebClient) -> None:
        """A Work Object's flexpane opens (or is refreshed): the ticket's details, looked up as for
        an unfurl, or "not found"."""
        trigger_id = event.get("trigger_id")
        if not trigger_id:
            return
        link = event.get("link") if isinstance(event.get("link"), dict) else {}
        url = next((u for u in (event.get("entity_url"), link.get("url"), event.get("app_unfurl_url"))
                    if isinstance(u, str) and bot.cards.match(u)), None)
        card = await bot.cards.card(url) if url else None
        try:
            if card is None:
                await client.entity_presentDetails(trigger_id=trigger_id, error={"status": "not_found"})
            else:
                system = bot.tickets.backend(card.ticket.backend).display_name
                await client.entity_presentDetails(trigger_id=trigger_id, metadata=views.ticket_entity(
                    card, bot.cards.link(card.ticket) or url, system))
        except Exception as exc:
            log.warning("entity.presentDetails for %s failed: %s", url, slack_error(exc))

    @app.action(views.VIEW_TICKET_ACTION)
    async def view_ticket(ack: AsyncAck) -> None:
        """The card's *View in …* button opens the ticket's page in the browser; Slack also tells the
        app, which has nothing to do."""
        await ack()
